"""Pooled features of every stage from one forward pass, cached per model, split and state of the weights."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from tl_lab._memo import WeakMemo
from tl_lab.backbones.registry import Backbone

if TYPE_CHECKING:
    from tl_lab.data.datasets import ImageSplit

from tl_lab.data.datasets import ImageSplit
from tl_lab.inside.taps import _body_stages, tap

# ---- pooled stage features, cached -----------------------------------------------------------------------------


# per model (weakly: a deleted network's features go with it) and per images tensor and state of the weights:
# {stage: pooled features}, filled stage by stage as stages are asked for
_MEMO: WeakMemo[dict[str, np.ndarray]] = WeakMemo(per_owner=8)


def clear_feature_cache() -> None:
    """Forget every cached :func:`stage_features` result (e.g. after editing weights through ``.data``)."""
    _MEMO.clear()


def _weights_key(modules: Sequence[nn.Module]) -> tuple:
    """Changes whenever the body's weights do (not the head's): identity, storage and version counter of every
    tensor, plus a checksum of a strided sample of each (catches in-place edits through ``.data``, which skip the
    version counter)."""
    tensors = [t for m in modules for t in itertools.chain(m.parameters(), m.buffers())]
    ids = tuple((id(t), t.data_ptr(), t._version) for t in tensors)
    with torch.no_grad():
        sample = torch.cat([t.detach().reshape(-1)[:: max(1, t.numel() // 64)].double().cpu() for t in tensors])
    return ids + (hashlib.blake2b(sample.numpy().tobytes(), digest_size=16).hexdigest(),)


def stage_features(
    backbone: Backbone,
    split: ImageSplit | torch.Tensor,
    stages: str | Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> dict[str, np.ndarray]:
    """Pooled features (N, C) of every requested stage, all from one forward pass per batch.

    Pooling is the head's own (``backbone.pooled``: spatial mean for CNNs, class token for ViT). The model runs in
    eval mode under ``no_grad`` and only up to the last requested stage. Results are cached in memory per model,
    per split and per state of the weights, so asking again (another probe, another plot) is instant, and
    training the model invalidates them. The arrays are read-only; copy one to change it.

    ``split``: an ImageSplit or a uint8 tensor (N, 3, H, W). ``device``: where to run (the model is moved there,
    as ``fit`` does); default: where the model already is.

    Example::

        >>> bb, data = tl_lab.load_backbone(), tl_lab.load_dataset("digits", shots=10)
        >>> feats = stage_features(bb, data.train, ["stage3", "conv_head"])
        >>> feats["stage3"].shape, feats["conv_head"].shape        # 100 training images
        ((100, 40), (100, 1280))
    """
    names = _body_stages(backbone, stages)
    images = split if torch.is_tensor(split) else split.images
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    model = backbone.model
    if device is not None:
        model.to(torch.device(device))
    dev = next(model.parameters()).device
    key = (id(images), images.data_ptr(), tuple(images.shape), images._version,
           _weights_key([model.get_submodule(s) for s in backbone.body_stages]))
    features = _MEMO.get(model, key, dict, alive=(images,))
    missing = [s for s in names if s not in features]
    if missing:
        backbone.check_input_size(int(images.shape[-1]))
        chunks: dict[str, list[torch.Tensor]] = {s: [] for s in missing}
        with torch.no_grad(), tap(model, missing, transform=backbone.pooled) as acts:
            for lo in range(0, len(images), batch_size):
                model.forward_range(backbone.normalize(images[lo : lo + batch_size].to(dev)), end=missing[-1])
                for s in missing:
                    chunks[s].append(acts[s].float().cpu())
        for s in missing:
            array = torch.cat(chunks[s]).numpy() if chunks[s] else np.zeros((0, 0), np.float32)
            array.setflags(write=False)
            features[s] = array
    return {s: features[s] for s in names}
