"""How much of the old (ImageNet) task a trained network kept: one run, one number per image set.

Why: fine-tuning on a new task moves the pretrained body and the ImageNet task is partly forgotten (McCloskey &
Cohen 1989; Kirkpatrick et al. 2017, PNAS). With no ImageNet images offline, the old task is measured as agreement
with the pretrained network itself: the original 1000-class head is put back on the trained body
(:func:`reattach_head`) and its predictions are compared with the untouched network's on images the run never
trained on: the shipped sample photos (at the backbone's input size, ImageNet's evaluation crop) and the run's
test images. A body that did not change agrees exactly (1.0); :func:`tl_lab.forgetting` runs this for several plans
and remedies, and the Train tab for each run it trains.

The original network's probabilities are computed once per image set and kept (the cache of
:func:`tl_lab.inside.zero_shot.imagenet_probabilities`, per model, images tensor and state of the weights), so each
measured run costs one forward pass of the probe images. Everything runs on the reference network's device.

Example::

    >>> import tl_lab
    >>> run = tl_lab.fit("efficientnet_lite0", tl_lab.load_dataset("digits", shots=5), plan=tl_lab.FreezePlan.fine_tune(),
    ...                  epochs=3, progress=False)
    >>> kept = old_task_agreement(run)
    >>> kept["sample photos"]["top1_agreement"] < 1.0, kept["test images"]["top1_agreement"] < 1.0   # answers moved
    (True, True)
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

import torch

from tl_lab.backbones.registry import Backbone, load_backbone
from tl_lab.backbones.samples import sample_photos
from tl_lab.inside.zero_shot import imagenet_probabilities
from tl_lab.training.peft_params import is_lora_layer, merge_lora

if TYPE_CHECKING:
    from tl_lab.training.run import Run

__all__ = ["PHOTOS", "TEST", "old_task_agreement", "old_task_unavailable", "photo_images", "reattach_head",
           "body_change"]

PHOTOS = "sample photos"
"""The image set of the shipped sample photos (:func:`tl_lab.backbones.samples.sample_photos`)."""
TEST = "test images"
"""The image set of a run's own test images (``run.data.test``), when :func:`old_task_agreement` is given a run."""


def old_task_unavailable(trained: "Run | Backbone") -> str | None:
    """Why a run (or trained backbone) has no old task to compare with, in a learner's words; None when it has."""
    backbone = trained if isinstance(trained, Backbone) else trained.backbone
    config = {} if isinstance(trained, Backbone) else trained.config
    if not config.get("pretrained", True) or not backbone.meta.get("pretrained", True):
        return "trained from scratch: it started from random weights and never learnt ImageNet, so it had nothing to keep"
    if backbone.meta.get("cut_at"):
        return f"cut after {backbone.meta['cut_at']!r}: its body lost the stages the ImageNet head reads"
    return None


def old_task_agreement(trained: "Run | Backbone", images: Mapping[str, torch.Tensor] | None = None, *,
                       reference: Backbone | None = None) -> dict[str, dict[str, float]]:
    """Old-task (ImageNet) agreement of a trained body, per image set.

    Args:
        trained: a :class:`~tl_lab.training.run.Run` (its ``backbone``) or a trained :class:`Backbone` whose body
            started from the pretrained weights (any new head; LoRA factors are merged into a copy first).
        images: ``{name: uint8 images (N, 3, H, W)}``; default :data:`PHOTOS` (the sample photos at the backbone's
            input size) and, for a run, :data:`TEST` (its test images). Keep the same tensors between calls: the
            original network's probabilities are cached per tensor.
        reference: the original pretrained network (default: ``load_backbone(name)``, loaded once and kept).

    Returns ``{set name: {"n_images", "top1_agreement", "kl_mean", "p_top_before", "p_top_after", "body_change"}}``:
    ``top1_agreement`` is the share of images whose top-1 ImageNet class is the original network's; ``kl_mean`` the
    mean ``KL(original || after)`` in nats; ``p_top_*`` the mean probability of the original top class before and
    after; ``body_change`` ``||w - w0|| / ||w0||`` over every body parameter (the same for every set).
    """
    why = old_task_unavailable(trained)
    if why is not None:
        raise ValueError(f"no old task to measure: this network was {why}")
    backbone = trained if isinstance(trained, Backbone) else trained.backbone
    reference = reference if reference is not None else _pretrained(backbone.name)
    meta = reference.meta
    if reference.name != backbone.name or not meta.get("pretrained", True) or meta.get("categories") is None \
            or meta.get("cut_at"):
        raise ValueError(f"the reference must be the original pretrained {backbone.name} with its ImageNet head; "
                         f"pass reference=tl_lab.load_backbone({backbone.name!r}) or leave it out")
    if images is None:
        images = {PHOTOS: photo_images(reference)}
        if not isinstance(trained, Backbone) and getattr(trained, "data", None) is not None:
            images[TEST] = trained.data.test.images
    after = reattach_head(backbone, reference)
    change = body_change(reference, after)
    out = {}
    for name, x in images.items():
        p0 = torch.tensor(imagenet_probabilities(reference, x), dtype=torch.float64)  # cached: computed once
        p1 = torch.tensor(imagenet_probabilities(after, x), dtype=torch.float64)
        top = p0.argmax(1)
        out[name] = {
            "n_images": len(x),
            "top1_agreement": (p1.argmax(1) == top).double().mean().item(),
            "kl_mean": (p0 * (p0.clamp_min(1e-12).log() - p1.clamp_min(1e-12).log())).sum(1).mean().item(),
            "p_top_before": p0.gather(1, top[:, None]).mean().item(),
            "p_top_after": p1.gather(1, top[:, None]).mean().item(),
            "body_change": change,
        }
    return out


def photo_images(backbone: Backbone) -> torch.Tensor:
    """The sample photos as uint8 ``(4, 3, S, S)`` at ``backbone``'s input size (its evaluation crop,
    :meth:`~tl_lab.backbones.registry.Backbone.make_crop`); one tensor per network, kept, so the original
    network's probabilities on it are computed once."""
    key = (backbone.name, backbone.input_size)
    with _PHOTOS_LOCK:
        if key not in _PHOTOS:
            crop = backbone.make_crop()
            _PHOTOS[key] = torch.stack([crop(p.image()).as_subclass(torch.Tensor) for p in sample_photos()])
        return _PHOTOS[key]


_PHOTOS: dict[tuple[str, int], torch.Tensor] = {}
_PHOTOS_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _pretrained(name: str) -> Backbone:
    """The original network, loaded once (its probabilities are cached on this model object)."""
    bb = load_backbone(name)
    bb.model.eval()
    return bb


def reattach_head(trained: Backbone, reference: Backbone) -> Backbone:
    """A copy of ``reference`` (with its original head) whose body stages hold ``trained``'s weights.

    The copy lives on ``reference``'s device; LoRA layers of ``trained`` are merged into copies of their stages
    first (``W + B A``), so the copy is a plain network.
    """
    model = copy.deepcopy(reference.model)
    for stage in reference.body_stages:
        module = trained.model.get_submodule(stage)
        if any(is_lora_layer(m) for m in module.modules()):
            module = merge_lora(copy.deepcopy(module))
        model.get_submodule(stage).load_state_dict(module.state_dict())
    model.eval()
    return dataclasses.replace(reference, model=model, meta=dict(reference.meta))


@torch.no_grad()
def body_change(before: Backbone, after: Backbone) -> float:
    """``||w_after - w_before|| / ||w_before||`` over every body parameter (0.0 when nothing moved)."""
    num = den = 0.0
    for stage in before.body_stages:
        pa = dict(after.model.get_submodule(stage).named_parameters())
        for name, w0 in before.model.get_submodule(stage).named_parameters():
            w0 = w0.detach().cpu().double()
            num += (pa[name].detach().cpu().double() - w0).pow(2).sum().item()
            den += w0.pow(2).sum().item()
    return math.sqrt(num / max(den, 1e-30))

