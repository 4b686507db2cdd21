"""How each batch reaches the trainable part of the network: the one place ``fit`` uses the feature cache.

A :class:`Feed` is built once per run. When the plan freezes a deterministic prefix (see
:func:`~tl_lab.training.feature_cache.cache_plan`), the prefix's outputs are computed once per split and every
batch is a slice of them; otherwise a batch is the images, normalised for the backbone and, under
``augment=True``, flipped and shifted (:class:`~tl_lab.training.augment.BatchAugment`). Either way
``feed.suffix`` is the module that runs forward and backward each batch: the stages after the cached prefix.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from tl_lab.backbones.registry import Backbone
from tl_lab.backbones.staged import ClassifierHead
from tl_lab.data.datasets import DatasetSplits
from tl_lab.training.augment import BatchAugment
from tl_lab.training.feature_cache import PrefixCache, build_prefix_cache
from tl_lab.training.run import evaluate_model
from tl_lab.training.terms import CrossEntropy, Objective

__all__ = ["Feed", "Precision"]


@dataclass(frozen=True)
class Precision:
    """Mixed precision, decided once per run: an autocast context and, for float16, a GradScaler.

    ``amp``: ``"auto"`` turns it on on CUDA only (bfloat16 where the GPU supports it, else float16 with a scaler);
    ``True`` also on a CPU (bfloat16 autocast: oneDNN runs it fast on CPUs with AVX-512 BF16 or AMX, slower than
    float32 elsewhere); ``"bfloat16"`` or ``"float16"`` choose the type on any device (float16 always with a
    ``torch.amp.GradScaler`` for that device, which scales the loss so small float16 gradients do not flush to 0).

        >>> Precision.choose(torch.device("cpu"), True).autocast.fast_dtype
        torch.bfloat16
    """

    autocast: torch.autocast | None
    scaler: torch.amp.GradScaler | None

    @classmethod
    def choose(cls, device: torch.device, amp: bool | str) -> Precision:
        use = (device.type == "cuda") if amp == "auto" else bool(amp)
        if not use:
            return cls(None, None)
        if amp in ("bfloat16", "float16"):
            dtype = getattr(torch, str(amp))
        else:
            dtype = torch.bfloat16 if device.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
        return cls(torch.autocast(device.type, dtype=dtype), scaler)

    @property
    def enabled(self) -> bool:
        return self.autocast is not None

    def context(self) -> AbstractContextManager:
        return self.autocast if self.autocast is not None else nullcontext()


class Feed:
    """Batches for the trainable suffix: cached prefix features, or (augmented) normalised images.

    Args:
        cache_after: the last frozen stage whose outputs may be cached (None: no cache), and ``why`` says why not.
        augment: a :class:`BatchAugment` for training batches (only without a cache: augmented inputs change).
        objective: what the labels ask for (:mod:`tl_lab.training.terms`): it reads the labels (``(N, tasks)`` in a
            multi-task run) and sums up evaluation (each task's accuracy too).
    """

    def __init__(self, backbone: Backbone, data: DatasetSplits, *, cache_after: str | None, why: str,
                 device: torch.device, precision: Precision, augment: BatchAugment | None = None,
                 memory_cap_mb: float = 1024.0, cache_dir: str | Path | None = None,
                 objective: Objective | None = None) -> None:
        self.backbone, self.data, self.device, self.precision, self.augment = backbone, data, device, precision, augment
        self.objective = objective if objective is not None else CrossEntropy()
        self.notes: list[str] = []
        self.prefix: PrefixCache | None = None
        if cache_after is None:
            self.description = why
        else:
            splits = {"train": data.train, "val": data.val, "test": data.test}
            self.prefix = build_prefix_cache(backbone, splits, cache_after, device=device, memory_cap_mb=memory_cap_mb,
                                             cache_dir=cache_dir, autocast=precision.autocast,
                                             pool=_cacheable_pool(backbone, cache_after))
            if self.prefix is None:
                self.description = "off: no room in memory or on disk for the cached features"
                self.notes.append("feature cache did not fit in memory or on disk; running the full network every batch")
            else:
                self.description = self.prefix.describe()
        start = self.prefix.next_stage if self.prefix else None
        self.suffix = _Suffix(backbone.model, start, pooled=bool(self.prefix and self.prefix.pooled), head=backbone.head)
        # The stages that run each batch: only these need switching between train and eval mode around evaluation.
        self.running = backbone.stages[backbone.stages.index(start):] if start else None

    @property
    def cache_seconds(self) -> float:
        return self.prefix.seconds if self.prefix else 0.0

    def inputs(self, split: str, index: torch.Tensor, *, step: int | None = None) -> torch.Tensor:
        """The suffix's input for rows ``index`` of ``split``; ``step`` (the global batch number) seeds augmentation."""
        if self.prefix is not None:
            return self.prefix.features[split][index].to(self.device, non_blocking=True)
        x = self.backbone.normalize(getattr(self.data, split).images[index].to(self.device, non_blocking=True))
        if self.augment is not None and split == "train":
            x = self.augment(x, step=step or 0)
        return x.contiguous(memory_format=torch.channels_last)

    def labels(self, split: str, index: torch.Tensor) -> torch.Tensor:
        """Labels ``(B,)`` of rows ``index``; ``(B, tasks)`` in a multi-task run."""
        return self.objective.labels(getattr(self.data, split), index).to(self.device, non_blocking=True)

    @torch.no_grad()
    def evaluate(self, split: str) -> dict:
        """``{"loss", "acc", "n"}`` on ``split`` in eval mode (NaNs when the split is empty)."""
        if not len(getattr(self.data, split)):
            return {"loss": float("nan"), "acc": float("nan"), "n": 0}
        if self.prefix is None:
            return evaluate_model(self.backbone, getattr(self.data, split), device=self.device,
                                  tasks=self.objective.tasks)
        model = self.backbone.model
        model.train(False, stages=self.running)
        try:
            n = len(getattr(self.data, split))
            batches = ((self._logits(self.inputs(split, idx)), self.labels(split, idx))
                       for idx in torch.arange(n).split(256))
            return self.objective.evaluate_batches(batches)
        finally:
            model.train(True, stages=self.running)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with self.precision.context():
            return self.suffix(x).float()


class _Suffix(torch.nn.Module):
    """The part of the model that trains: stages from ``start`` (after the cached prefix) to the head.

    A module of its own so DistributedDataParallel can wrap exactly what runs forward and backward each batch.
    """

    def __init__(self, model: torch.nn.Module, start: str | None, *, pooled: bool = False, head: str = "head") -> None:
        super().__init__()
        self.model = model
        self.start = start
        # With pooled cached features only the head's classifier runs (its pooling was applied when caching).
        self.classifier = model.get_submodule(head).classifier if pooled else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.classifier is not None:
            return self.classifier(x)
        return self.model.forward_range(x, start=self.start)


def _cacheable_pool(backbone: Backbone, last_frozen: str) -> torch.nn.Module | None:
    """The head's pooling when only the head trains and its pooling is parameter-free and deterministic."""
    stages = backbone.stages
    if stages[stages.index(last_frozen) + 1] != backbone.head:
        return None
    head = backbone.model.get_submodule(backbone.head)
    pool = getattr(head, "pool", None)
    if not isinstance(head, ClassifierHead) or pool is None:
        return None
    if any(True for _ in pool.parameters()) or any(isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in pool.modules()):
        return None
    return pool
