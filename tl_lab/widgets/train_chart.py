"""The Train tab's live chart: every run's curves on one plotly FigureWidget, redrawn at most a few times a second.

Why: epochs of a frozen head on cached features arrive dozens a second; redrawing at each one would flood the
browser. The chart queues each epoch's metrics as fit reports them (in the training thread) and draws what is queued
in one batched update when :meth:`LiveChart.flush` is called (at most once per ``interval`` from events, always at
the end). Runs are overlaid, one colour each, the legend naming each run's plan and data. The figure is
:func:`tl_lab.plots.training.empty_training_figure` extended by :func:`~tl_lab.plots.training.append_epochs`: the
training curve is the task's loss alone and any added loss term (LwF, domain confusion …) gets its own panel.

Example::

    >>> chart = LiveChart()
    >>> label = chart.new_run("run-1", "frozen head, digits", epochs=10)
    >>> chart.queue({"epoch": 1, "train_loss": 1.2, "val_loss": 1.0, "train_acc": 0.6, "val_acc": 0.7})
    >>> chart.flush()[-1]["val_acc"]
    0.7
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tl_lab.plots.training import add_run, append_epochs, empty_training_figure
from tl_lab.widgets.common import FigureSlot, Throttle

__all__ = ["LiveChart"]


class LiveChart:
    """One FigureSlot with every run's curves; ``labels`` maps a run's name to its (unique) label on the chart."""

    def __init__(self, interval: float = 0.3) -> None:
        self.slot = FigureSlot(empty_training_figure("your first run", note="no run yet: click Train to start one"),
                               css_class="tl-train-chart")
        self.labels: dict[str, str] = {}
        self.throttle = Throttle(interval)
        self._lock = threading.Lock()
        self._pending: list[dict] = []
        self._label: str | None = None  # the run being drawn live
        self._drawn = 0  # runs drawn (the first replaces the placeholder)

    @property
    def figure(self):
        """The live plotly FigureWidget."""
        return self.slot.figure

    @property
    def label(self) -> str | None:
        """The label of the run drawn live (None before its FitStart for a new run)."""
        return self._label

    def unique_label(self, label: str) -> str:
        taken = set(self.labels.values())
        out, k = label, 2
        while out in taken:
            out, k = f"{label} #{k}", k + 1
        return out

    def new_run(self, name: str, label: str, *, epochs: int) -> str:
        """Give run ``name`` its traces under a unique version of ``label`` (returned); later epochs extend them."""
        label = self.unique_label(label)
        self.labels[name] = label
        if self._drawn == 0:
            self.slot.show(empty_training_figure(label, epochs=epochs))
        else:
            with self.slot.batch_update():
                add_run(self.figure, label, epochs=epochs)
        self._drawn += 1
        return label

    def follow(self, label: str | None) -> None:
        """Draw the epochs queued from now on as the run ``label`` (a resumed run continues its own curve)."""
        with self._lock:
            self._pending.clear()
            self._label = label

    def queue(self, metrics: Mapping[str, Any]) -> None:
        """One epoch's metrics (an EpochEnd's), drawn at the next :meth:`flush`. Thread-safe."""
        with self._lock:
            self._pending.append(dict(metrics))

    def due(self) -> bool:
        """Whether a redraw is allowed now (at most one per interval)."""
        return self.throttle.ready()

    def flush(self) -> list[dict]:
        """Draw the queued epochs in one batched update; returns them."""
        with self._lock:
            pending, self._pending = self._pending, []
            label = self._label
        if pending and label is not None:
            with self.slot.batch_update():
                append_epochs(self.figure, pending, label=label)
        return pending

    def add_history(self, name: str, label: str, history: Sequence[Mapping[str, Any]]) -> str:
        """Overlay a finished run's whole history (a run trained in code); returns its unique label."""
        label = self.new_run(name, label, epochs=max(1, len(history)))
        with self.slot.batch_update():
            append_epochs(self.figure, history, label=label)
        return label
