"""The Train tab's choices and how it names things: plans, shots, epochs and LR ranges, data and run labels.

Why a module of its own: these are plain functions and constants (no widget), shared by the panel's controls, its
runs table and its chart, and a test can call each one directly.

Example::

    >>> shot_options(10, most=4)
    [('1', 1), ('2', 2), ('4', 4), ('all', None)]
    >>> data_label({"data": {"name": "digits", "shots": 5}})
    'digits, 5-shot'
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tl_lab.data.datasets import NotEnoughImages
from tl_lab.training.run import Run, run_label

__all__ = ["PLAN_CHOICES", "EPOCHS_RANGE", "LR_RANGE", "check_shots", "check_epochs", "check_lr", "shot_options",
           "data_name", "data_key", "data_label", "chart_label", "in_widget_words", "resumable", "stamp"]

PLAN_CHOICES = (
    ("frozen head: train only a new classifier on ImageNet features", "frozen_head"),
    ("fine-tune all: body at 0.1× the head's LR, BatchNorm fixed", "fine_tune"),
    ("from scratch (baseline): random init, every layer trains", "scratch"),
)
_USUAL_SHOTS = (1, 2, 5, 10, 20)
EPOCHS_RANGE = (1, 1000)
"""Epochs a learner may type (0 in the box means automatic: fit's default)."""
LR_RANGE = (1e-5, 1.0)
"""Head learning rates the panel accepts: below, nothing moves in a lesson's time; above, the loss blows up."""


def check_shots(shots: Any) -> int | None:
    """``shots`` as given, or a ValueError naming ``shots`` and the values it may take (as ``load_dataset``)."""
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
        raise ValueError(f"shots must be a whole number of training images per class (e.g. 1, 2, 5, 10, 20; any "
                         f"number >= 1 the data has) or None for all of them; got {shots!r}")
    return shots


def check_epochs(epochs: Any) -> int | None:
    """``epochs`` as given (None: fit's default), or a ValueError with the allowed range."""
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or not EPOCHS_RANGE[0] <= epochs <= EPOCHS_RANGE[1]):
        raise ValueError(f"epochs must be a whole number from {EPOCHS_RANGE[0]} to {EPOCHS_RANGE[1]}, or None "
                         f"for fit's default; got {epochs!r}")
    return epochs


def check_lr(lr: Any) -> float:
    """``lr`` as given, or a ValueError with the allowed range."""
    if not (isinstance(lr, int | float) and not isinstance(lr, bool) and LR_RANGE[0] <= lr <= LR_RANGE[1]):
        raise ValueError(f"lr must be between {LR_RANGE[0]:g} and {LR_RANGE[1]:g}; got {lr!r}")
    return float(lr)


def shot_options(shots: int | None, most: int | None = None) -> list[tuple[str, int | None]]:
    """The "shots per class" choices: the usual counts, the value given, and "all"; with ``most`` (the most
    training images per class the data has, e.g. a small folder) only counts up to it, and ``most`` itself.

    >>> shot_options(3)
    [('1', 1), ('2', 2), ('3', 3), ('5', 5), ('10', 10), ('20', 20), ('all', None)]
    >>> shot_options(10, most=4)
    [('1', 1), ('2', 2), ('4', 4), ('all', None)]
    """
    values = {v for v in _USUAL_SHOTS if most is None or v <= most}
    if shots is not None and (most is None or shots <= most):
        values.add(shots)
    if most is not None and most >= 1:
        values.add(most)
    return [(str(v), v) for v in sorted(values)] + [("all", None)]


def data_name(cfg: dict) -> str:
    """How legends and the table name a dataset: its name, or the folder's name for one's own images."""
    if cfg.get("name") == "folder" and cfg.get("root"):
        return f"folder {Path(str(cfg['root'])).name}"
    return str(cfg.get("name", "?"))


def data_key(data) -> tuple:
    """One key per loaded dataset and shots (its load arguments): the raw-pixel baseline is measured once per key."""
    return tuple(sorted((k, str(v)) for k, v in data.meta.get("load_args", {}).items()))


def data_label(config: dict) -> str:
    """The runs table's "data" cell of a run's config: ``"digits, 5-shot"``, ``"folder mine, all images"``."""
    cfg = config.get("data", {})
    shots = cfg.get("shots")
    return f"{data_name(cfg)}, {f'{shots}-shot' if shots else 'all images'}"


def chart_label(config: dict) -> str:
    """run_label (backbone, plan, shots) and the dataset: runs on several datasets share one chart."""
    return f"{run_label(config)}, {data_name(config.get('data', {}))}"


def in_widget_words(exc: BaseException) -> BaseException:
    """load_dataset's advice names its arguments (``shots=None``, ``val_per_class``); the panel's learner sees
    the "shots per class" menu, so the same facts (from :class:`~tl_lab.data.datasets.NotEnoughImages`'s fields)
    are said in its words. Any other exception is returned as it is."""
    if isinstance(exc, NotEnoughImages):
        return ValueError(f"this data has only {exc.most_shots} training images per class (smallest class: "
                          f"{exc.smallest_class!r}): choose 'shots per class' {exc.most_shots} or fewer, or 'all'")
    return exc


def resumable(run: Run | None) -> bool:
    """Resume continues a stopped run from its last saved epoch (with its forgetting remedy, if it had one)."""
    return run is not None and run.stopped_early and run.last_checkpoint is not None


def stamp() -> str:
    """A run folder's name: the time to the millisecond."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
