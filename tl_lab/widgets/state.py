"""The one state the dashboard's tabs share: which backbone, which plan, which data, which runs.

Why: traits are the single source of truth, wired one way (STYLE 9). The picker writes ``backbone_name``, the
freezer writes ``plan``, the training panel appends to ``runs``; every other view observes what it needs and
never writes back, so no two observers can ping-pong.

Example::

    >>> state = LabState(backbone_name="efficientnet_lite0", dataset="clipart", shots=10)
    >>> state.data().train.images.shape[0]                # 7 classes x 10 shots
    70
"""

from __future__ import annotations

import threading
from pathlib import Path

import traitlets as T

from tl_lab.backbones.registry import Backbone, load_backbone
from tl_lab.data.datasets import DatasetSplits, load_dataset
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.run import Run

__all__ = ["LabState", "OFFLINE_DATASETS"]

OFFLINE_DATASETS = ("clipart", "digits", "shapes", "textures")
"""Datasets that need no network (embedded or generated); ``folder`` reads the learner's own images."""


class LabState(T.HasTraits):
    """Shared choices: ``backbone_name``, ``plan``, ``dataset`` / ``root`` / ``shots`` / ``image_size``, ``runs``."""

    backbone_name = T.Unicode("efficientnet_lite0")
    plan = T.Instance(FreezePlan, kw={})
    dataset = T.Unicode("clipart")
    root = T.Unicode("")
    shots = T.Int(10, allow_none=True)
    image_size = T.Int(None, allow_none=True)
    runs = T.List()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._lock = threading.RLock()
        self._backbones: dict[str, Backbone] = {}
        self._data: dict[tuple, DatasetSplits] = {}

    def backbone(self, name: str | None = None) -> Backbone:
        """The pretrained ImageNet network ``name`` (default: the chosen one), loaded once and reused.

        Views that look inside the pretrained network use this copy; training always builds a fresh one, so a run
        never changes what the other tabs show.
        """
        name = name or self.backbone_name
        with self._lock:
            if name not in self._backbones:
                bb = load_backbone(name, pretrained=True)
                bb.model.eval()
                self._backbones[name] = bb
            return self._backbones[name]

    def data(self, dataset: str | None = None, *, shots: int | None | str = "state", root: str | None = None,
             image_size: int | None | str = "state") -> DatasetSplits:
        """The chosen dataset split (cached); arguments override the shared choice for one call."""
        dataset = dataset or self.dataset
        shots = self.shots if shots == "state" else shots
        image_size = self.image_size if image_size == "state" else image_size
        root = self.root if root is None else root
        if dataset == "folder" and not root:
            raise ValueError("dataset 'folder' needs the path of your image folder (one sub-folder per class)")
        key = (dataset, shots, image_size, str(Path(root).expanduser()) if root else "")
        with self._lock:
            if key not in self._data:
                kwargs = {"shots": shots, "image_size": image_size}
                if dataset == "folder":
                    kwargs["root"] = root
                self._data[key] = load_dataset(dataset, **kwargs)
            return self._data[key]

    def runs_with(self, given: list[Run]) -> list[Run]:
        """``given`` (runs handed to a widget) followed by the shared runs not among them, in training order."""
        return given + [r for r in self.runs if r not in given]

    def add_run(self, run: Run) -> None:
        """Append a finished (or stopped) run; observers of ``runs`` see a new list."""
        with self._lock:
            kept = [r for r in self.runs if r is not run and r.name != run.name]
            self.runs = [*kept, run]
