"""Domain shifts as deterministic transforms of uint8 images: the same seed gives the same images."""

from __future__ import annotations

import math
import zlib
from dataclasses import replace

import torch
import torch.nn.functional as F

from tl_lab._checks import check_choice
from tl_lab.data.datasets import DatasetSplits, ImageSplit

SHIFTS = ("inverted", "rotated", "noisy", "textured")
ROTATION_DEGREES = (30.0, 90.0)  # |angle| range; the sign is random too
NOISE_STD = 0.2  # Gaussian noise, as a fraction of the 0..255 range


# ---- the shifts ------------------------------------------------------------------------------------------------


def shift_images(images: torch.Tensor, shift: str, *, seed: int = 0) -> torch.Tensor:
    """A shifted copy of uint8 images ``(N, 3, H, W)``, deterministic for a given ``seed``.

    ``inverted``: ``255 - x`` (a photographic negative). ``rotated``: each image turned by a random angle of
    30-90 degrees either way, the corners filled with its background colour (the median border pixel).
    ``noisy``: Gaussian noise of std 0.2 x 255, clipped. ``textured``: the background (pixels close to the border
    colour) replaced by random coloured stripes, the object kept: the shortcut Geirhos et al. 2019 (ICLR,
    "ImageNet-trained CNNs are biased towards texture") found ImageNet models rely on.

    >>> x = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    >>> shift_images(x, "inverted").unique().tolist()
    [255]
    """
    check_choice("shift", [shift], SHIFTS)
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W); got {images.dtype} {tuple(images.shape)}")
    if shift == "inverted":
        return 255 - images
    gen = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    x = images.float()
    if shift == "noisy":
        out = x + torch.randn(x.shape, generator=gen) * (NOISE_STD * 255.0)
    else:
        border = torch.cat([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], dim=2)
        bg = border.median(dim=2).values[:, :, None, None]  # (N, 3, 1, 1)
        if shift == "rotated":
            lo, hi = ROTATION_DEGREES
            sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
            angle = torch.deg2rad(sign * (lo + (hi - lo) * torch.rand(n, generator=gen)))
            cos, sin = angle.cos(), angle.sin()
            theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1),
                                 torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
            grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
            out = F.grid_sample(x - bg, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + bg
        else:
            alpha = ((x - bg).abs().amax(dim=1, keepdim=True) / 96.0).clamp(0.0, 1.0)
            out = alpha * x + (1.0 - alpha) * _stripes(n, h, w, gen)
    return out.round().clamp(0, 255).to(torch.uint8)


def _stripes(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """Random two-colour sinusoidal stripes (N, 3, H, W) in 0..255: orientation, period, phase, colours."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    angle = torch.rand(n, 1, 1, generator=gen) * math.pi
    period = h / 8 + torch.rand(n, 1, 1, generator=gen) * h / 4
    phase = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    wave = 0.5 + 0.5 * torch.sin(2 * math.pi * (xx * angle.cos() + yy * angle.sin()) / period + phase)
    a, b = (torch.rand(n, 3, 1, 1, generator=gen) * 255.0 for _ in range(2))
    return a + (b - a) * wave[:, None]


def shift_split(split: ImageSplit, shift: str, *, seed: int = 0) -> ImageSplit:
    """The same images and labels, shifted (rotation drops the object masks, which no longer fit)."""
    masks = None if shift == "rotated" else split.masks
    return ImageSplit(shift_images(split.images, shift, seed=seed), split.labels, split.classes, masks, split.ids)


def shift_data(data: DatasetSplits, shift: str, *, seed: int = 0) -> DatasetSplits:
    """Every split of ``data`` shifted, each split with its own deterministic draw; ``meta["shift"]`` says how."""
    def split_seed(split: str) -> int:
        return zlib.crc32(f"{shift}:{split}:{seed}".encode())

    splits = {s: shift_split(getattr(data, s), shift, seed=split_seed(s)) for s in ("train", "val", "test")}
    meta = {**data.meta, "shift": shift, "shift_seed": seed}
    return replace(data, **splits, name=f"{data.name} ({shift})", meta=meta)
