"""Random flips and shifts of a training batch, with torchvision.transforms.v2, on the batch's device.

``fit(..., augment=True)`` passes every training batch through :class:`BatchAugment`: a random horizontal flip,
then a random crop of the reflection-padded batch (a shift of up to 1/8 of the side). The transform runs once on
the whole ``(N, C, H, W)`` batch where it lies (GPU or CPU), with no Python loop over images.

Why one draw per batch: a v2 transform draws its random parameters once per call and applies them to every image
it is given, so all images of a batch share one flip and one shift. Batches are reshuffled every epoch, so each
image still meets a different flip and shift each time it is seen. The draw is seeded by ``(seed, step)`` in a
forked random state: the same run gives the same augmented batches, a resumed run continues with the ones an
uninterrupted run would have drawn, and the global random state (dropout) is left alone.

Example::

    >>> aug = BatchAugment(64, seed=0)
    >>> x = torch.rand(16, 3, 64, 64)
    >>> aug(x, step=0).shape
    torch.Size([16, 3, 64, 64])
    >>> torch.equal(aug(x, step=0), aug(x, step=0))
    True
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

__all__ = ["BatchAugment"]


class BatchAugment:
    """Flip and shift a batch with ``torchvision.transforms.v2``; ``aug(x, step=k)`` is a function of (seed, k)."""

    def __init__(self, size: int, *, seed: int = 0, max_shift: float = 1 / 8) -> None:
        self.pad = max(1, int(size * max_shift))
        self.seed = int(seed)
        self.transform = v2.Compose([
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomCrop(size, padding=self.pad, padding_mode="reflect"),
        ])

    def __call__(self, x: torch.Tensor, *, step: int) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):  # v2 draws on the CPU's generator; restore it afterwards
            torch.manual_seed(self.seed * 100_003 + step)
            return self.transform(x)

    def __repr__(self) -> str:
        return f"BatchAugment(pad={self.pad}, seed={self.seed}, transform={self.transform})"
