"""The recipe of one run, checked once: :class:`FitSettings` holds every number ``fit``'s loop reads.

``fit`` keeps its keyword arguments (lessons and widgets call it that way) and builds one frozen
:class:`FitSettings` from them; the loop's steps then read ``s.lr``, ``s.epochs`` … from that one object. Each
argument is checked on its own, so a wrong value gets a message naming that argument and what it may be:

    >>> FitSettings(epochs=-1)
    Traceback (most recent call last):
    ValueError: epochs must be an int >= 1, or None for automatic (100 for a head on cached features, else 30); got -1
    >>> FitSettings(lr=3e-3, epochs=None).resolved(head_on_cached_features=True, train_images=100)[0].epochs
    100
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from tl_lab.backbones.registry import Backbone
    from tl_lab.data.datasets import DatasetSplits

__all__ = ["FitSettings", "DEFAULT_LR", "MAX_SANE_LR", "suggest_lr", "check_data", "check_switches", "Schedule",
           "OptimizerName"]

Schedule = Literal["onecycle", "cosine", "constant", "step"]
OptimizerName = Literal["adamw", "adam", "sgd"]
DEFAULT_LR = 3e-3
MAX_SANE_LR = 0.1  # the largest head rate the TrainPanel offers; above it AdamW and SGD diverge on these nets
AUTO_EPOCHS_CACHED_HEAD = 100  # each epoch of a head on cached features costs milliseconds (10-shot digits: 0.816 vs 0.796 at 30)
AUTO_EPOCHS = 30


@dataclass(frozen=True)
class FitSettings:
    """What one run trains with (the recipe), as stored in ``Run.config``.

    ``epochs=None`` means automatic until :meth:`resolved` picks 100 for a head on cached features, else 30.
    """

    epochs: int | None = None
    lr: float = DEFAULT_LR
    batch_size: int = 16
    weight_decay: float = 0.01
    optimizer: OptimizerName = "adamw"
    momentum: float = 0.9
    schedule: Schedule = "onecycle"
    step_size: int = 7
    gamma: float = 0.1
    augment: bool = False
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs is not None and not _is_int(self.epochs, at_least=1):
            raise ValueError("epochs must be an int >= 1, or None for automatic (100 for a head on cached features, "
                             f"else 30); got {self.epochs!r}")
        if not _is_number(self.lr) or not self.lr > 0:
            raise ValueError(f"lr must be a finite number > 0 (the default is {DEFAULT_LR:g}); got {self.lr!r}")
        if not _is_int(self.batch_size, at_least=1):
            raise ValueError(f"batch_size must be an int >= 1 (the default is 16); got {self.batch_size!r}")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a number >= 0 (the default is 0.01); got {self.weight_decay!r}")
        if self.optimizer not in get_args(OptimizerName):
            raise ValueError(f"optimizer must be 'adamw', 'adam' or 'sgd'; got {self.optimizer!r}")
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1) (used by optimizer='sgd'); got {self.momentum!r}")
        if self.schedule not in get_args(Schedule):
            raise ValueError(f"schedule must be 'onecycle', 'cosine', 'constant' or 'step'; got {self.schedule!r}")
        if not _is_int(self.step_size, at_least=1):
            raise ValueError(f"step_size must be an int >= 1 (epochs between decays of schedule='step'); got {self.step_size!r}")
        if not _is_number(self.gamma) or not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be a number in (0, 1] (schedule='step' multiplies the LR by it); got {self.gamma!r}")
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be True or False; got {self.augment!r}")
        if not _is_number(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be a number in [0, 1); got {self.label_smoothing!r}")
        if not _is_int(self.seed, at_least=0):
            raise ValueError(f"seed must be an int >= 0; got {self.seed!r}")

    def resolved(self, *, head_on_cached_features: bool, train_images: int) -> tuple[FitSettings, list[str]]:
        """Fill in the automatic choices: ``epochs=None`` and a batch larger than the data. Returns ``(settings, notes)``."""
        notes = []
        epochs = self.epochs
        if epochs is None:
            epochs = AUTO_EPOCHS_CACHED_HEAD if head_on_cached_features else AUTO_EPOCHS
        batch_size = self.batch_size
        if batch_size > train_images:
            notes.append(f"batch_size {batch_size} is larger than the {train_images} training images; using {train_images}")
            batch_size = train_images
        return replace(self, epochs=int(epochs), batch_size=int(batch_size)), notes

    def to_config(self) -> dict[str, Any]:
        """The JSON-able recipe part of ``Run.config`` (``fit(**settings.to_config())`` repeats it)."""
        return asdict(self)


def suggest_lr(diverged_lr: float) -> float:
    """A learning rate to try after the loss became non-finite at ``diverged_lr``.

    A tenth of what diverged when that is a sane rate (at most :data:`MAX_SANE_LR`), else the default: after
    ``lr=1e5`` "try lr=10000" would diverge again.

        >>> suggest_lr(0.3), suggest_lr(1e5)
        (0.03, 0.003)
    """
    tenth = diverged_lr / 10
    return round(tenth, 12) if tenth <= MAX_SANE_LR else DEFAULT_LR


def check_data(backbone: Backbone, data: DatasetSplits) -> None:
    """Refuse data the backbone cannot train on, naming the fix."""
    if len(data.train) == 0:
        raise ValueError("the training split is empty; load the data with shots >= 1 or add images to the folder")
    present = sorted(set(data.train.labels.tolist()))
    if len(present) < 2:
        only = data.classes[present[0]] if present else "none"
        raise ValueError(
            f"the training split has only one class ({only}); a classifier needs at least two classes with images"
        )
    backbone.check_input_size(int(data.train.images.shape[-1]))
    import torch

    head = backbone.model.get_submodule(backbone.head)
    outputs = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1].out_features
    if outputs != len(data.classes):
        raise ValueError(
            f"{backbone.name}'s head has {outputs} outputs but the data have {len(data.classes)} classes; "
            f"load it with load_backbone({backbone.name!r}, num_classes={len(data.classes)})"
        )


def check_switches(*, cache: Any, amp: Any, memory_cap_mb: Any, min_batch_size: Any) -> None:
    if cache not in (True, False, "auto"):
        raise ValueError(f"cache must be True, False or 'auto'; got {cache!r}")
    if not any(amp is ok or (isinstance(amp, str) and amp == ok) for ok in (True, False, "auto", "bfloat16", "float16")):
        raise ValueError(f"amp must be True, False, 'auto', 'bfloat16' or 'float16'; got {amp!r}")
    if isinstance(memory_cap_mb, bool) or not isinstance(memory_cap_mb, (int, float)) or memory_cap_mb < 0:
        raise ValueError(f"memory_cap_mb must be a number >= 0 (0 keeps the cache on disk); got {memory_cap_mb!r}")
    if isinstance(min_batch_size, bool) or not isinstance(min_batch_size, int) or min_batch_size < 1:
        raise ValueError(f"min_batch_size must be an int >= 1; got {min_batch_size!r}")


def _is_int(value: Any, *, at_least: int) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= at_least


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
