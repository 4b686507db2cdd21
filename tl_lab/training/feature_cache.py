"""Cache the frozen prefix's outputs once, so each epoch runs only the trainable part.

When a plan freezes stages ``stem … k`` and the inputs are deterministic (no random augmentation, frozen stages in
eval mode), the activations after stage ``k`` never change during training. Computing them once per split turns
a fixed-feature run from "full forward pass every batch" into "a linear layer on stored vectors": that is where
tl_lab's speed on a CPU comes from (see ``tl-lab bench``).

Where they live: in memory under ``memory_cap_mb``; otherwise a memory-mapped file under ``cache_dir``; otherwise
nowhere (the loop runs the full model and says why).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tl_lab.backbones.registry import Backbone
from tl_lab.data.datasets import ImageSplit
from tl_lab.training.freeze import FreezeSummary

__all__ = ["PrefixCache", "build_prefix_cache", "cache_plan"]


@dataclass
class PrefixCache:
    """Activations after ``last_frozen`` for each split (``features[split]``: (N, …) float tensor)."""

    last_frozen: str
    next_stage: str
    features: dict[str, torch.Tensor]
    where: str  # "memory" or "disk: <path>"
    nbytes: int
    seconds: float
    pooled: bool = False  # the head's (parameter-free) pooling was applied too: features are (N, C)

    def describe(self) -> str:
        what = f"pooled '{self.last_frozen}' features" if self.pooled else f"'{self.last_frozen}' outputs"
        return f"{self.where}, {self.nbytes / 2**20:.1f} MB of {what}, built in {self.seconds:.1f} s"


def cache_plan(layout: FreezeSummary, *, augment: bool) -> tuple[str | None, str]:
    """Decide whether a prefix can be cached: returns ``(last_frozen_stage or None, reason)``.

    The prefix is every stage before the first trainable one; it can be cached when its outputs never change:
    no random augmentation, and no BatchNorm statistics moving inside it (``bn="train"``). Both facts come from
    ``layout`` (``plan.summary(backbone)``), where the plan's decisions are made once.
    """
    stages = tuple(r.stage for r in layout.rows)
    trainable = layout.trainable_stages
    if not trainable or trainable[0] == stages[0]:
        return None, "off: every stage trains, so there is no frozen prefix"
    if augment:
        return None, "off: random augmentation changes the inputs every epoch"
    prefix = layout.rows[: stages.index(trainable[0])]
    if any(r.bn_train for r in prefix):
        return None, "off: bn='train' lets the frozen stages' BatchNorm statistics change every batch"
    return prefix[-1].stage, "on"


@torch.no_grad()
def build_prefix_cache(
    backbone: Backbone,
    splits: dict[str, ImageSplit],
    last_frozen: str,
    *,
    device: torch.device,
    batch_size: int = 64,
    memory_cap_mb: float = 1024.0,
    cache_dir: str | Path | None = None,
    autocast: torch.autocast | None = None,
    pool: torch.nn.Module | None = None,
) -> PrefixCache | None:
    """Run ``stem … last_frozen`` once over each split. Returns None when even the disk can't hold the result.

    ``pool``: a parameter-free, deterministic module applied to the outputs before they are stored (the head's
    global pooling when only the classifier trains): each epoch then runs just the classifier on (N, C) vectors.
    """
    import time

    model = backbone.model
    stages = backbone.stages
    next_stage = stages[stages.index(last_frozen) + 1]
    size = splits["train"].images.shape[-1]
    shape = backbone.stage_shapes(size)[last_frozen]
    if pool is not None:
        shape = tuple(pool(torch.zeros(1, *shape)).shape[1:])
    per_image = int(np.prod(shape)) * 4
    total = per_image * sum(len(s) for s in splits.values())
    start = time.perf_counter()
    if total <= memory_cap_mb * 2**20:
        where, store = "memory", {name: torch.empty((len(s), *shape)) for name, s in splits.items()}
    else:
        root = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "tl_lab_cache"
        try:
            root.mkdir(parents=True, exist_ok=True)
            store = {}
            for name, s in splits.items():
                mm = np.lib.format.open_memmap(root / f"{last_frozen}-{name}.npy", mode="w+", dtype=np.float32,
                                               shape=(len(s), *shape))
                store[name] = torch.from_numpy(mm)
            where = f"disk: {root}"
        except OSError:
            return None
    was_training = model.training
    model.eval()
    try:
        for name, split in splits.items():
            for lo in range(0, len(split), batch_size):
                x = backbone.normalize(split.images[lo : lo + batch_size].to(device, non_blocking=True))
                if autocast is not None:
                    with autocast:
                        out = model.forward_range(x, end=last_frozen)
                else:
                    out = model.forward_range(x, end=last_frozen)
                out = out.float()
                if pool is not None:
                    out = pool(out)
                store[name][lo : lo + len(x)] = out.cpu()
    finally:
        model.train(was_training)
    return PrefixCache(last_frozen, next_stage, store, where, total, time.perf_counter() - start, pooled=pool is not None)
