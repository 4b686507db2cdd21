"""The settings every multi-run experiment shares, defined once: seed, image size, epochs, fast, validation size,
a callback per record and a folder for the runs' files.

Each experiment takes its own arguments (what it compares) and then these as keywords,
``**options: Unpack[ExperimentOptions]``, which it reads through :meth:`Options.of`: unknown keywords are refused
with the list of known ones, and the helpers here (:meth:`Options.emit`, :meth:`Options.epochs_for`,
:meth:`Options.files`) do what every experiment did by hand.

Example::

    >>> o = Options.of("freeze_sweep", {"seed": 1, "fast": True})
    >>> o.seed, o.fast, o.image_size
    (1, True, None)
    >>> Options.of("freeze_sweep", {"epoch": 3})
    Traceback (most recent call last):
    TypeError: freeze_sweep() got an unexpected option 'epoch'; options: seed, image_size, epochs, fast, val_per_class, callback, run_dir
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypedDict

from tl_lab.training.recipes import RecordCallback, Records, recipe_epochs

__all__ = ["ExperimentOptions", "Options"]


class ExperimentOptions(TypedDict, total=False):
    """The shared keywords, for ``**options: Unpack[ExperimentOptions]`` (see :class:`Options` for each one)."""

    seed: int
    image_size: int | None
    epochs: int | Mapping[str, int] | None
    fast: bool
    val_per_class: int | None
    callback: RecordCallback | None
    run_dir: str | Path | None


@dataclass(frozen=True)
class Options:
    """The shared settings of one experiment call.

    Attributes:
        seed: picks the training and validation images and seeds every run.
        image_size: square side in pixels (None: the dataset's default).
        epochs: an int for every run, a mapping keyed by recipe (``"frozen_head"``, ``"fine_tune"``,
            ``"scratch"``), or None for the recipes' own.
        fast: the recipes' short epochs and the experiment's smaller sweep (lessons under ``TL_LAB_FAST=1``).
        val_per_class: validation images per class (None: the loader's default).
        callback: called with each record as soon as it is measured (live tables in widgets and lessons).
        run_dir: a folder for each run's checkpoints and ``run.json`` (None: nothing is written).
    """

    seed: int = 0
    image_size: int | None = None
    epochs: int | Mapping[str, int] | None = None
    fast: bool = False
    val_per_class: int | None = None
    callback: RecordCallback | None = None
    run_dir: str | Path | None = None

    @classmethod
    def of(cls, experiment: str, options: Mapping[str, Any], **defaults: Any) -> Options:
        """The options ``experiment`` was called with; ``defaults`` replace this class's own where not given."""
        known = [f.name for f in fields(cls)]
        unknown = [k for k in options if k not in known]
        if unknown:
            s = "s" if len(unknown) > 1 else ""
            raise TypeError(f"{experiment}() got an unexpected option{s} {', '.join(map(repr, unknown))}; "
                            f"options: {', '.join(known)}")
        return cls(**{**defaults, **options})

    def emit(self, records: Records, record: dict) -> None:
        """Keep ``record`` and hand it to the callback."""
        records.append(record)
        if self.callback is not None:
            self.callback(record)

    def epochs_for(self, recipe: str) -> int:
        """Epochs for a run of ``recipe`` (see ``epochs`` and ``fast``)."""
        return recipe_epochs(recipe, self.epochs, self.fast)

    def files(self, name: str) -> dict:
        """``fit`` keywords that write run ``name``'s files under ``run_dir`` (nothing without one)."""
        folder = Path(self.run_dir) / name if self.run_dir is not None else None
        return {"save_checkpoints": folder is not None, "run_dir": folder, "name": name}
