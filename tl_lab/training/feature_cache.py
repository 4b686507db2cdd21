"""Cache the frozen prefix's outputs once, so each epoch runs only the trainable part.

When a plan freezes stages ``stem … k`` and the inputs are deterministic (no random augmentation, frozen stages in
eval mode), the activations after stage ``k`` never change during training. Computing them once per split turns
a fixed-feature run from "full forward pass every batch" into "a linear layer on stored vectors": that is where
tl_lab's speed on a CPU comes from (see ``tl-lab bench``).

Where they live: first, a class's shared folder (``$TL_LAB_SHARED_DIR/features``, read-only, see
:mod:`tl_lab.shared_cache`) when it holds this exact prefix's outputs for these images; else in memory under
``memory_cap_mb`` (None: :func:`tl_lab.limits.cache_cap_mb`, a quarter of the hub's memory limit, at most 1 GB);
otherwise a memory-mapped file under ``cache_dir``; otherwise nowhere (the loop runs the full model and says why).
Files on disk are named by a key of everything the outputs depend on (the prefix's weights, the images, the stage,
the pooling, the device type and precision), so an instructor can fill the shared folder with
``fit(..., memory_cap_mb=0, cache_dir="/srv/data/features")`` once and every learner's identical run reads it.
"""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tl_lab._eval_mode import eval_mode
from tl_lab.backbones.registry import Backbone
from tl_lab.data.datasets import ImageSplit
from tl_lab.limits import cache_cap_mb
from tl_lab.shared_cache import shared_path
from tl_lab.training.freeze import FreezeSummary

__all__ = ["PrefixCache", "build_prefix_cache", "cache_key", "cache_plan"]


@dataclass
class PrefixCache:
    """Activations after ``last_frozen`` for each split (``features[split]``: (N, …) float tensor)."""

    last_frozen: str
    next_stage: str
    features: dict[str, torch.Tensor]
    where: str  # "memory", "disk: <path>" or "shared: <path>" (read-only, TL_LAB_SHARED_DIR)
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


def cache_key(backbone: Backbone, splits: dict[str, ImageSplit], last_frozen: str, *, pooled: bool,
              device: torch.device, autocast: torch.autocast | None) -> str:
    """A short hash of everything the prefix's outputs depend on: the parameters and buffers of every stage up to
    ``last_frozen``, each split's images, the stage, the pooling, the device type and the autocast precision."""
    h = hashlib.blake2b(digest_size=10)
    h.update(f"{backbone.name}|{last_frozen}|pooled={pooled}|{device.type}|"
             f"{getattr(autocast, 'fast_dtype', None) if autocast is not None else None}".encode())
    stages = backbone.stages[: backbone.stages.index(last_frozen) + 1]
    for stage in stages:
        for name, tensor in backbone.model.get_submodule(stage).state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    for name in sorted(splits):
        images = splits[name].images
        h.update(f"{name}{tuple(images.shape)}{images.dtype}".encode())
        h.update(images.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _file_name(last_frozen: str, key: str, split: str) -> str:
    return f"{last_frozen}-{key}-{split}.npy"


def _read_shared(folder: Path, last_frozen: str, key: str, splits: dict[str, ImageSplit], shape: tuple[int, ...],
                 ) -> dict[str, torch.Tensor] | None:
    """Every split's features from the shared folder, memory-mapped read-only; None unless all are there and fit."""
    store = {}
    for name, split in splits.items():
        path = folder / _file_name(last_frozen, key, name)
        if not path.is_file():
            return None
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if array.shape != (len(split), *shape) or array.dtype != np.float32:
            return None
        with warnings.catch_warnings():  # read-only on purpose: the tensors are only read
            warnings.filterwarnings("ignore", message=".*not writable.*")
            store[name] = torch.from_numpy(array)
    return store


@torch.no_grad()
def build_prefix_cache(
    backbone: Backbone,
    splits: dict[str, ImageSplit],
    last_frozen: str,
    *,
    device: torch.device,
    batch_size: int = 64,
    memory_cap_mb: float | None = None,
    cache_dir: str | Path | None = None,
    autocast: torch.autocast | None = None,
    pool: torch.nn.Module | None = None,
) -> PrefixCache | None:
    """Run ``stem … last_frozen`` once over each split. Returns None when even the disk can't hold the result.

    ``pool``: a parameter-free, deterministic module applied to the outputs before they are stored (the head's
    global pooling when only the classifier trains): each epoch then runs just the classifier on (N, C) vectors.
    ``memory_cap_mb``: MB of features kept in RAM (None: :func:`tl_lab.limits.cache_cap_mb`, which follows
    ``MEM_LIMIT``); larger caches go to a memory-mapped file under ``cache_dir`` (default: the temp folder).
    A shared folder (``TL_LAB_SHARED_DIR``) holding these exact features is read first and never written.
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
    if memory_cap_mb is None:
        memory_cap_mb = cache_cap_mb()
    shared = shared_path("features")
    to_disk = total > memory_cap_mb * 2**20
    key = cache_key(backbone, splits, last_frozen, pooled=pool is not None, device=device, autocast=autocast) \
        if shared is not None or to_disk else ""
    if shared is not None:
        found = _read_shared(shared, last_frozen, key, splits, tuple(shape))
        if found is not None:
            return PrefixCache(last_frozen, next_stage, found, f"shared: {shared}", total, time.perf_counter() - start,
                               pooled=pool is not None)
    if not to_disk:
        where, store = "memory", {name: torch.empty((len(s), *shape)) for name, s in splits.items()}
    else:
        root = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "tl_lab_cache"
        try:
            root.mkdir(parents=True, exist_ok=True)
            store = {}
            for name, s in splits.items():
                mm = np.lib.format.open_memmap(root / _file_name(last_frozen, key, name), mode="w+", dtype=np.float32,
                                               shape=(len(s), *shape))
                store[name] = torch.from_numpy(mm)
            where = f"disk: {root}"
        except OSError:
            return None
    with eval_mode(model):
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
    return PrefixCache(last_frozen, next_stage, store, where, total, time.perf_counter() - start, pooled=pool is not None)
