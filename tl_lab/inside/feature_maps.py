"""What the first convolution and later stages respond to: first-layer filters and per-stage feature maps.

Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks", arXiv:1311.2901. Both return plain
data (numpy arrays in frozen dataclasses) that :mod:`tl_lab.plots` draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tl_lab.backbones.registry import Backbone
from tl_lab.inside.taps import _body_stages, tap

# ---- first-layer filters ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FilterTiles:
    """The first convolution's filters as RGB tiles: ``tiles`` (K, h, w, 3) in [0, 1].

    Each filter is scaled on its own, symmetrically: 0.5 + w / (2 max|w|), so a zero weight is mid-grey and the
    strongest weight of that filter is pure black or white. ``scale`` (K,) holds each filter's max|w|.
    """

    tiles: np.ndarray
    layer: str
    shape: tuple[int, ...]  # the weight's own shape (K, 3, h, w)
    scale: np.ndarray

    def mosaic(self, *, columns: int = 8, pad: int = 1) -> np.ndarray:
        """All tiles in one (H, W, 3) image, ``columns`` per row, separated by ``pad`` white pixels."""
        k, h, w, _ = self.tiles.shape
        rows = -(-k // columns)
        out = np.ones((rows * (h + pad) - pad, columns * (w + pad) - pad, 3), dtype=np.float32)
        for i, tile in enumerate(self.tiles):
            r, c = divmod(i, columns)
            out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = tile
        return out


def filters(backbone: Backbone) -> FilterTiles:
    """The filters of the first convolution that reads the RGB image (ViT: the 16x16 patch embedding).

    Why: pretrained networks learn oriented edges and colour blobs here, random ones show noise; the contrast is
    the first thing a lesson on "what did ImageNet teach" shows.

    Example::

        >>> f = filters(load_backbone())
        >>> f.layer, f.tiles.shape          # Lite0: 32 filters of 3x3
        ('stem.0', (32, 3, 3, 3))
    """
    for name, module in backbone.model.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            w = module.weight.detach().float().cpu().numpy()  # (K, 3, h, w)
            scale = np.abs(w).reshape(len(w), -1).max(axis=1)
            tiles = 0.5 + w / (2 * np.maximum(scale, 1e-12)[:, None, None, None])
            return FilterTiles(
                tiles=np.ascontiguousarray(tiles.transpose(0, 2, 3, 1), dtype=np.float32),
                layer=name,
                shape=tuple(w.shape),
                scale=scale.astype(np.float32),
            )
    raise ValueError(
        f"{backbone.name} has no Conv2d reading 3 input channels; filters() needs a first convolution on RGB images"
    )


# ---- feature maps ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FeatureMaps:
    """One stage's spatial activations for a few images, with each image's strongest channels.

    ``activations`` (N, C, h, w); ``channel_means`` (N, C); ``top_channels`` (N, k) channel indices, strongest
    first; ``top_maps`` (N, k, h, w) those channels' maps. ``tokens`` is True for ViT stages, whose patch tokens
    (N, 1 + h*w, D) were laid back on their h x w grid (the class token is dropped).
    """

    stage: str
    activations: np.ndarray
    channel_means: np.ndarray
    top_channels: np.ndarray
    top_maps: np.ndarray
    tokens: bool


def feature_maps(
    backbone: Backbone, images: Any, stages: str | Sequence[str], *, top_k: int = 8
) -> dict[str, FeatureMaps]:
    """Activations of ``stages`` for a few images, and the ``top_k`` channels with the largest mean per image.

    ``images``: a tensor (N, 3, H, W) or (3, H, W), uint8 or float in [0, 1], normalised with
    ``backbone.normalize`` (as ``Run.predict`` does), or a list of PIL images, sent through ``backbone.transform``.

    Example::

        >>> bb, data = tl_lab.load_backbone(), tl_lab.load_dataset("digits", shots=10)
        >>> maps = feature_maps(bb, data.test.images[:4], ["stage1", "stage3"], top_k=4)
        >>> maps["stage3"].activations.shape, maps["stage3"].top_maps.shape   # digits at 64 px
        ((4, 40, 8, 8), (4, 4, 8, 8))
    """
    names = _body_stages(backbone, stages)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    x = _prepare(backbone, images)
    device = next(backbone.model.parameters()).device
    with torch.no_grad(), tap(backbone.model, names) as acts:
        backbone.model.forward_range(x.to(device), end=names[-1])
    out = {}
    for name in names:
        act, tokens = acts[name].float(), acts[name].dim() == 3
        if tokens:
            act = _tokens_to_grid(act, name)
        if act.dim() != 4:
            raise ValueError(f"stage {name!r} outputs {tuple(act.shape)}, not a spatial map; pick an earlier stage")
        means = act.mean(dim=(2, 3))
        k = min(top_k, act.shape[1])
        top = means.topk(k, dim=1).indices
        top_maps = torch.gather(act, 1, top[:, :, None, None].expand(-1, -1, *act.shape[2:]))
        out[name] = FeatureMaps(
            name, act.cpu().numpy(), means.cpu().numpy(), top.cpu().numpy(), top_maps.cpu().numpy(), tokens
        )
    return out


def _tokens_to_grid(tokens: torch.Tensor, stage: str) -> torch.Tensor:
    n, t, d = tokens.shape
    side = math.isqrt(t - 1)
    if side * side != t - 1:
        raise ValueError(f"stage {stage!r} has {t} tokens, not 1 class token + a square grid of patches")
    return tokens[:, 1:].reshape(n, side, side, d).permute(0, 3, 1, 2)


def _prepare(backbone: Backbone, images: Any) -> torch.Tensor:
    """Model input (N, 3, H, W) from uint8 / [0, 1] float tensors or arrays, or from a list of PIL images."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not torch.is_tensor(images):
        images = list(images)
        if not images:
            raise ValueError("no images given")
        x = torch.stack([backbone.transform(im) for im in images])
    else:
        x = images[None] if images.dim() == 3 else images
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) or (3, H, W), got shape {tuple(images.shape)}")
        x = backbone.normalize(x)
    backbone.check_input_size(int(x.shape[-1]))
    return x
