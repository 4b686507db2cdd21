"""Domain shifts as deterministic transforms of uint8 images: the same seed gives the same images.

Pixel operations (``inverted``, ``rotated``, ``noisy``, ``textured``) and two changes of domain: ``blended``
(digits blended onto crops of natural photos, as MNIST -> MNIST-M in Ganin & Lempitsky 2015) and ``sketch``
(grayscale line drawings: an edge map of the image, as photo/clip art -> sketch in DomainNet, Peng et al. 2019).
:func:`unlabelled_target` draws unlabelled images of a shifted domain from the images a few-shot split left over.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import replace
from functools import lru_cache

import torch
import torch.nn.functional as F

from tl_lab._checks import check_choice
from tl_lab.data.datasets import DatasetSplits, ImageSplit

SHIFTS = ("inverted", "rotated", "noisy", "textured", "blended", "sketch")
ROTATION_DEGREES = (30.0, 90.0)  # |angle| range; the sign is random too
NOISE_STD = 0.2  # Gaussian noise, as a fraction of the 0..255 range
SKETCH_GAIN = 2.0  # edge strength per unit of Sobel gradient (gradients of 128 and more draw a black line)


# ---- the shifts ------------------------------------------------------------------------------------------------


def shift_images(images: torch.Tensor, shift: str, *, seed: int = 0) -> torch.Tensor:
    """A shifted copy of uint8 images ``(N, 3, H, W)``, deterministic for a given ``seed``.

    ``inverted``: ``255 - x`` (a photographic negative). ``rotated``: each image turned by a random angle of
    30-90 degrees either way, the corners filled with its background colour (the median border pixel).
    ``noisy``: Gaussian noise of std 0.2 x 255, clipped. ``textured``: the background (pixels close to the border
    colour) replaced by random coloured stripes, the object kept: the shortcut Geirhos et al. 2019 (ICLR,
    "ImageNet-trained CNNs are biased towards texture") found ImageNet models rely on.
    ``blended``: ``|patch - x|`` per channel, ``patch`` a random crop (side 1-3x the image's, resized) of one of the
    shipped natural photos: the MNIST-M construction of Ganin & Lempitsky 2015 (ICML, "Unsupervised Domain
    Adaptation by Backpropagation"; they cropped BSDS500 photos). Strokes keep their shape, colour and background
    become a photo's. ``sketch``: a grayscale line drawing, ``255 - min(255, 2 |Sobel(gray)|)`` (dark edges on white):
    shape kept, colour and texture removed; no randomness.

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
    elif shift == "blended":
        out = (_photo_patches(n, h, w, gen) - x).abs()
    elif shift == "sketch":
        out = _edge_map(x)
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


def _edge_map(x: torch.Tensor) -> torch.Tensor:
    """Dark edges on white, (N, 3, H, W) in 0..255: 255 - min(255, SKETCH_GAIN * Sobel magnitude of the gray image)."""
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4.0
    k = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    grad = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), k)
    edges = (SKETCH_GAIN * grad.pow(2).sum(1, keepdim=True).sqrt()).clamp(0.0, 255.0)
    return (255.0 - edges).expand(-1, 3, -1, -1)


@lru_cache(maxsize=1)
def _photos() -> tuple[torch.Tensor, ...]:
    """The shipped natural photos as float (3, H, W) tensors in 0..255: the texture source of ``blended``."""
    import numpy as np

    from tl_lab.backbones.samples import sample_photos

    return tuple(torch.from_numpy(np.asarray(p.image(), dtype=np.float32).copy()).permute(2, 0, 1)
                 for p in sample_photos())


def _photo_patches(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random crops of the shipped photos, each resized to (h, w): (N, 3, H, W) in 0..255."""
    photos = _photos()
    out = torch.empty(n, 3, h, w)
    for i in range(n):
        photo = photos[int(torch.randint(len(photos), (1,), generator=gen))]
        side = min(photo.shape[1], photo.shape[2])
        crop = int(min(side, h + torch.rand(1, generator=gen).item() * 2 * h))
        top = int(torch.randint(photo.shape[1] - crop + 1, (1,), generator=gen))
        left = int(torch.randint(photo.shape[2] - crop + 1, (1,), generator=gen))
        patch = photo[None, :, top : top + crop, left : left + crop]
        out[i] = F.interpolate(patch, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0]
    return out


def unlabelled_target(data: DatasetSplits, shift: str, *, n: int = 200, seed: int = 0) -> ImageSplit:
    """Up to ``n`` unlabelled images of the shifted domain, none of them in ``data``'s train, val or test splits.

    Why: unsupervised domain adaptation uses many unlabelled target images beside few labelled ones (the realistic
    case: a new camera records plenty, nobody labels them). They come from the dataset's pool images that a few-shot
    split left unused (e.g. 1058 digits beside 10-shot train + val), shifted with their own seed; the labels kept in
    the returned split are for analysis only and no adaptation method reads them. Fewer than ``n`` come back when the
    pool is smaller (``len()`` says how many).

    >>> data = load_dataset("digits", shots=10)
    >>> len(unlabelled_target(data, "inverted", n=200))
    200
    """
    from tl_lab.data.datasets import load_dataset

    check_choice("shift", [shift], SHIFTS)
    if n < 1:
        raise ValueError(f"n must be >= 1 unlabelled target images; got {n}")
    args = {k: v for k, v in (data.meta.get("load_args") or {}).items() if k not in ("shots", "name")}
    full = load_dataset(data.meta.get("load_args", {}).get("name", data.meta.get("name", data.name)),
                        **{**args, "shots": None})
    used = set(torch.cat([data.train.ids, data.val.ids, data.test.ids]).tolist()) if data.train.ids is not None else set()
    free = torch.tensor([i for i, j in enumerate(full.train.ids.tolist()) if j not in used], dtype=torch.long)
    if len(free) < 2:
        raise ValueError(f"{data.name} has no images left beyond its splits to serve as unlabelled target images; "
                         f"load it with fewer shots")
    pick = free[torch.randperm(len(free), generator=torch.Generator().manual_seed(seed))[:n]].sort().values
    pool = full.train
    split = ImageSplit(pool.images[pick], pool.labels[pick], pool.classes, None, pool.ids[pick])
    return shift_split(split, shift, seed=zlib.crc32(f"{shift}:unlabelled:{seed}".encode()))


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
