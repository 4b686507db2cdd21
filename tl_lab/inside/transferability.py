"""Transferability scores: predict, from one forward pass and no training, which backbone will transfer best.

Three scores of a pretrained network on the learner's labelled training images (``data.train``), all computed on
the pooled output of the last body stage (:func:`tl_lab.inside.stage_features`, the features a frozen head sees):

- ``"logme"``: the evidence of a Bayesian linear model on those features (You et al. 2021, ICML;
  :func:`tl_lab.inside.logme.logme`).
- ``"leep"``: the log-likelihood of the source head's ImageNet predictions re-mapped to the target labels
  (Nguyen et al. 2020, ICML; :func:`tl_lab.inside.leep.leep`).
- ``"probe"``: the validation accuracy of a linear probe on the same features (:func:`tl_lab.probe_stages`):
  the empirical reference, which costs a small logistic-regression fit instead of nothing.

Higher is better for every score; compare scores of one metric across backbones on the same data, never across
metrics. Why it matters: fine-tuning every candidate to pick one costs hours; LogME was up to 3000x cheaper with
a rank correlation to fine-tuned accuracy that beat LEEP's on their benchmarks.

Example::

    >>> data = tl_lab.load_dataset("clipart", shots=10, image_size=64)
    >>> tl_lab.transferability("efficientnet_lite0", data, metric="logme")       # one float, higher = better
    -0.325...
    >>> tl_lab.transferability(tl_lab.load_backbone("efficientnet_lite0", pretrained=False), data, "logme")
    -0.394...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from tl_lab._eval_mode import eval_mode
from tl_lab.backbones.registry import Backbone, load_backbone
from tl_lab.backbones.staged import TokenPool
from tl_lab.inside.leep import leep
from tl_lab.inside.logme import logme
from tl_lab.inside.stage_features import stage_features

if TYPE_CHECKING:
    from tl_lab.data.datasets import DatasetSplits

__all__ = ["METRICS", "transferability", "source_probabilities"]

Metric = Literal["logme", "leep", "probe"]
METRICS: tuple[str, ...] = ("logme", "leep", "probe")


def transferability(backbone: Backbone | str, data: DatasetSplits, metric: Metric = "logme") -> float:
    """One number saying how well ``backbone`` is expected to transfer to ``data`` (higher = better).

    ``backbone``: a loaded Backbone (pretrained or random init) or a registered name (loaded pretrained, with its
    ImageNet head). ``metric``: ``"logme"``, ``"leep"`` or ``"probe"`` (module docstring). Features come from
    ``data.train`` (``"probe"`` also uses ``data.val``), pooled at the last body stage, in one cached forward pass.

    Raises ValueError naming the fix for: an unknown metric, a training split with fewer than two classes or
    fewer than two images in some class, LEEP on a backbone whose ImageNet head was replaced, a probe without a
    validation split.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    check_labels(data)
    bb = load_backbone(backbone) if isinstance(backbone, str) else backbone
    last = bb.body_stages[-1]
    if metric == "probe":
        if len(data.val) == 0:
            raise ValueError("the 'probe' score is a validation accuracy, but data.val is empty; load the data with "
                             "val_per_class > 0, or use metric='logme'")
        from tl_lab.inside.probes import probe_stages

        return float(probe_stages(bb, data, [last], baseline=False).probes[0].val_acc)
    labels = data.train.labels.numpy()
    if metric == "leep":
        return leep(source_probabilities(bb, data.train.images), labels)
    return logme(stage_features(bb, data.train, [last])[last], labels)


def check_labels(data: DatasetSplits) -> None:
    """The training split must have at least two classes and at least two images in each class it uses."""
    counts = {c: n for c, n in data.train.counts().items() if n > 0}
    if len(counts) < 2:
        only = ", ".join(repr(c) for c in counts) or "none"
        raise ValueError(f"transferability needs at least two classes in the training split (found {only}); "
                         "add images of another class to your folder or load another dataset")
    few = {c: n for c, n in counts.items() if n < 2}
    if few:
        names = ", ".join(f"{c!r} ({n})" for c, n in few.items())
        raise ValueError(f"transferability needs at least two training images per class; too few in {names}: "
                         "load the data with shots >= 2 (or add images to those classes)")


@torch.no_grad()
def source_probabilities(backbone: Backbone, images: torch.Tensor) -> np.ndarray:
    """The source (ImageNet) head's softmax probabilities (N, 1000) for uint8 images (N, 3, H, W).

    The head is applied to the cached pooled features of the last body stage when its pooling is global (average
    pooling, or the class token): then this is exact and costs no second forward pass. Other heads (VGG's 7x7
    pooling) get a full forward pass.
    """
    meta = backbone.meta
    if meta.get("num_classes", 1000) != 1000 or meta.get("categories") is None:
        raise ValueError(
            f"LEEP needs the source head's ImageNet probabilities, but this {backbone.name} has a new "
            f"{meta.get('num_classes')}-class head; score load_backbone({backbone.name!r}) (keep num_classes=None) "
            "or use metric='logme'")
    head = backbone.model.get_submodule(backbone.head)
    last = backbone.body_stages[-1]
    model = backbone.model
    dev = next(model.parameters()).device
    with eval_mode(model):
        pool = head.pool
        if isinstance(pool, TokenPool) or _global_average(pool):
            pooled = torch.from_numpy(np.array(stage_features(backbone, images, [last])[last])).to(dev)
            x = pooled[:, None, :] if isinstance(pool, TokenPool) else pooled[:, :, None, None]
            logits = torch.cat([head(x[i:i + 256]).float() for i in range(0, len(x), 256)])
        else:
            backbone.check_input_size(int(images.shape[-1]))
            logits = torch.cat([model(backbone.normalize(images[i:i + 64].to(dev))).float()
                                for i in range(0, len(images), 64)])
    return torch.softmax(logits.double(), dim=1).cpu().numpy()


def _global_average(pool: torch.nn.Module) -> bool:
    """True when ``pool`` starts with a global average pool (to 1x1): then head(mean) == head(activation)."""
    first = next((m for m in pool.modules() if not isinstance(m, torch.nn.Sequential)), None)
    return isinstance(first, torch.nn.AdaptiveAvgPool2d) and first.output_size in (1, (1, 1))
