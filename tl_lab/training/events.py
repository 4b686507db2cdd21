"""Training events and the stop token.

The training loop announces what happens through a handful of small, immutable events; listeners (progress bars,
live charts, loggers) are plain callables that receive them and never change the loop. Stopping is the one way in:
a :class:`StopToken` that any thread may set and that the loop checks after every batch.

Example::

    >>> from tl_lab.training.events import EpochEnd
    >>> seen = []
    >>> def log(event):
    ...     if isinstance(event, EpochEnd):
    ...         seen.append(event.metrics["val_acc"])
    >>> # fit(backbone, data, callbacks=[log])
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

__all__ = ["FitStart", "BatchEnd", "EpochEnd", "Stopped", "FitEnd", "Event", "Callback", "StopToken", "StopCause"]


class StopCause(str, Enum):
    """Why a run ended before its last epoch: what code branches on (the reason text is for people)."""

    REQUESTED = "requested"  # a StopToken / threading.Event was set (the Stop button)
    INTERRUPTED = "interrupted"  # KeyboardInterrupt (Ctrl-C, the notebook's interrupt)
    NON_FINITE_LOSS = "non_finite_loss"  # the loss became nan or inf: the weights are no longer usable


@dataclass(frozen=True)
class FitStart:
    run_name: str
    epochs: int
    start_epoch: int
    batches_per_epoch: int
    config: dict
    cache: str


@dataclass(frozen=True)
class BatchEnd:
    epoch: int  # 0-based
    batch: int  # 0-based within the epoch
    batches: int
    loss: float
    acc: float  # on this batch
    images: int  # images seen so far in this epoch
    lr: float  # learning rate of the last parameter group (the head)


@dataclass(frozen=True)
class EpochEnd:
    epoch: int  # 0-based
    epochs: int
    metrics: dict  # train_loss, train_acc, val_loss, val_acc, seconds, images_per_s, lr
    is_best: bool


@dataclass(frozen=True)
class Stopped:
    reason: str  # for people, e.g. "the loss became nan at epoch 1, batch 3; lower the learning rate (e.g. lr=0.003 …)"
    epoch: int
    batch: int
    cause: StopCause = StopCause.REQUESTED


@dataclass(frozen=True)
class FitEnd:
    run: Any = field(repr=False)  # tl_lab.training.run.Run


Event = FitStart | BatchEnd | EpochEnd | Stopped | FitEnd
Callback = Callable[[Event], None]


class StopToken:
    """A thread-safe request to stop a run at the end of the current batch.

    ``token.stop("reason")`` from a button callback or another thread; the training loop checks ``token.requested``
    after every batch and returns normally with what it has (history so far, best checkpoint kept). A plain
    ``threading.Event`` works as a token too.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "stop requested"

    def stop(self, reason: str = "stop requested") -> None:
        self.reason = reason
        self._event.set()

    set = stop  # threading.Event-style alias

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()


def stop_requested(token: StopToken | threading.Event | None) -> bool:
    return token is not None and token.is_set()
