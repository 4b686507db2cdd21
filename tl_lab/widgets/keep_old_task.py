"""The Train tab's "keep the old task" control, and how its runs table shows what each run kept of ImageNet.

Why: fine-tuning forgets the old task; :mod:`tl_lab.training.retention` offers three remedies (LwF, EWC, L2-SP),
each with a strength. This control picks one for ``fit(retain=...)``; the strength box refuses what
:class:`~tl_lab.training.retention.Retain` refuses and says so, like the panel's other boxes, and
:func:`~tl_lab.training.retention.check_remedies` says before a run starts when its plan cannot use the remedy.
The numbers in the table come from :func:`tl_lab.inside.old_task.old_task_agreement`; this module formats them and
measures them in a background thread of their own (:class:`KeptMeasurer`), so a run's row reaches the table first
and its "ImageNet kept" cells fill in a moment later (the measurement is a forward pass of the sample photos and the
test images: about a second on 2 cores, which a learner waiting after Stop would otherwise wait for too).

Example::

    >>> keep = KeepOldTask(StatusLine())
    >>> keep.method.value = "ewc"; keep.retain()
    Retain(method='ewc', strength=100.0, temperature=2.0)
"""

from __future__ import annotations

import html
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W

from tl_lab.inside.old_task import PHOTOS, TEST, old_task_agreement, old_task_unavailable
from tl_lab.training.freeze import FreezeSummary
from tl_lab.training.retention import DEFAULT_STRENGTH, REMEDY_NAMES, Retain, check_remedies
from tl_lab.training.run import Run
from tl_lab.widgets.common import StatusLine, background, error_message

__all__ = ["KeepOldTask", "KeptMeasurer", "REMEDY_CHOICES", "KEPT_COLUMNS", "MEASURING", "remedy_label",
           "kept_cells", "kept_note", "measure_kept"]

MEASURING = "measuring…"
"""The old-task cells of a run whose agreement is being measured in the background."""

REMEDY_CHOICES = (
    ("none", "none"),
    ("LwF: learning without forgetting", "lwf"),
    ("EWC: elastic weight consolidation", "ewc"),
    ("L2-SP: pull back to pretrained", "l2sp"),
)
_WHAT = {
    "none": "the new task's loss alone; fine-tuning may forget ImageNet",
    "lwf": "keeps the original network's ImageNet outputs on the new images (distillation; Li & Hoiem 2016)",
    "ewc": "pulls body weights back to their pretrained values, hardest where ImageNet relies on them "
           "(Kirkpatrick et al. 2017)",
    "l2sp": "pulls every body weight back to its pretrained value (Li, Grandvalet & Davoine 2018)",
}
KEPT_COLUMNS = {
    "keep old task": "the forgetting remedy and its strength used in the run ('none': the new task's loss alone)",
    "ImageNet kept (photos)": "share of the 4 sample photos whose ImageNet top-1 class, with the original ImageNet "
                              "head put back on the trained body, is still the original network's (1.000: nothing "
                              "forgotten)",
    "ImageNet kept (test images)": "the same on this run's test images",
}
"""The runs table's old-task columns and what each means (the header's tooltip)."""


def remedy_label(config: dict) -> str:
    """How the table names a run's remedy: ``"LwF 1"``, ``"EWC 100"`` … or ``"none"``."""
    remedies = [Retain.from_label(label) for label in config.get("retain") or []]
    return " + ".join(f"{REMEDY_NAMES[r.method]} {r.strength:g}" for r in remedies) or "none"


def kept_cells(kept: dict | str | None) -> dict[str, Any]:
    """The two agreement cells of a run: numbers, :data:`MEASURING` (given it), ``"n/a"`` (``kept`` is the reason
    there is none, see :func:`kept_note`) or None (a row that is no run)."""
    if isinstance(kept, dict):
        return {"ImageNet kept (photos)": kept.get(PHOTOS, {}).get("top1_agreement"),
                "ImageNet kept (test images)": kept.get(TEST, {}).get("top1_agreement")}
    value = (MEASURING if kept == MEASURING else "n/a") if isinstance(kept, str) else None
    return {"ImageNet kept (photos)": value, "ImageNet kept (test images)": value}


def kept_note(reasons: dict[str, str], *, measuring: Sequence[str] = ()) -> str:
    """The line under the table: what "ImageNet kept" means, why a run shows n/a (``{run label: reason}``), and
    which runs are still being measured."""
    text = ("ImageNet kept: the share of images whose ImageNet top-1 class is still the original network's once the "
            "original ImageNet head is put back on the run's body (1.000: nothing of the old task was forgotten).")
    lines = [html.escape(text)] + [f"n/a for {html.escape(run)}: {html.escape(why)}." for run, why in reasons.items()]
    lines += [f"{html.escape(run)}: measuring what it kept of ImageNet in the background; its cells fill in "
              "shortly." for run in measuring]
    return f'<div class="tl-kept-note" style="color:#555;font-size:12px;line-height:1.4">{"<br>".join(lines)}</div>'


def measure_kept(run: Run, reference: Callable[[], Any]) -> dict | str:
    """The run's old-task agreement (:func:`~tl_lab.inside.old_task.old_task_agreement`), or why it has none.

    ``reference``: returns the pretrained backbone to compare with (called only when the run can be measured).
    Never raises: a failure becomes its reason, shown under the table, so the run's row still arrives.
    """
    why = old_task_unavailable(run)
    if why is None:
        try:
            return old_task_agreement(run, reference=reference())
        except Exception as exc:  # noqa: BLE001 - the reason is shown under the table
            why = f"it could not be measured ({error_message(exc)})"
    return why


class KeptMeasurer:
    """Measures runs' old-task agreement one at a time in a background thread (``tl-lab-old-task``).

    ``measure(run)`` returns what :func:`measure_kept` returns; ``done(run)`` is called in that thread after each
    run's result is in :attr:`results` (a widget re-renders its table there). :meth:`wait` blocks until every
    requested measurement ended.
    """

    def __init__(self, measure: Callable[[Run], dict | str], done: Callable[[Run], None]) -> None:
        self.measure = measure
        self.done = done
        self.results: dict[str, dict | str] = {}
        self._lock = threading.Lock()
        self._serial = threading.Lock()  # one measurement at a time: they share the 2 cores with training
        self._threads: list[threading.Thread] = []

    def get(self, run: Run) -> dict | str | None:
        """The run's result, :data:`MEASURING` while it is measured, None when never asked."""
        with self._lock:
            return self.results.get(run.name)

    def now(self, run: Run) -> dict | str:
        """Measure in the calling thread (a run added in code: its table is complete when the call returns)."""
        result = self.measure(run)
        with self._lock:
            self.results[run.name] = result
        return result

    def later(self, run: Run) -> None:
        """Start measuring ``run`` in the background; until done its result reads :data:`MEASURING`."""
        with self._lock:
            self.results[run.name] = MEASURING
            self._threads = [t for t in self._threads if t.is_alive()]

        def work() -> None:
            with self._serial:
                try:
                    result = self.measure(run)
                except Exception as exc:  # noqa: BLE001 - measure_kept never raises; a custom measure might
                    result = f"it could not be measured ({error_message(exc)})"
                with self._lock:
                    self.results[run.name] = result
            self.done(run)

        thread = background(work, name="tl-lab-old-task")
        with self._lock:
            self._threads.append(thread)

    @property
    def busy(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._threads)

    def wait(self, timeout: float | None = None) -> None:
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout)


class KeepOldTask(W.VBox):
    """A remedy menu (none, LwF, EWC, L2-SP) and its strength; :meth:`retain` is what the next run uses.

    ``status``: the panel's status line, where a refused strength is explained.
    """

    def __init__(self, status: StatusLine, retain: Retain | str | None = None) -> None:
        retain = Retain(retain) if isinstance(retain, str) else retain
        self.status = status
        narrow = {"description_width": "110px"}
        self.method = W.Dropdown(options=REMEDY_CHOICES, value=retain.method if retain else "none",
                                 description="keep old task", style=narrow, layout=W.Layout(width="400px"))
        self.strength = W.FloatText(value=retain.strength if retain else 1.0, description="strength",
                                    style={"description_width": "60px"}, layout=W.Layout(width="170px"),
                                    tooltip="how hard the remedy pulls towards the old task: a number >= 0")
        self.hint = W.HTML()
        self.method.add_class("tl-keep-old-task")
        self.strength.add_class("tl-remedy-strength")
        self.method.observe(self._on_method, names="value")
        self.strength.observe(self._on_strength, names="value")
        self._show()
        super().__init__(children=[W.HBox([self.method, self.strength]), self.hint])
        self.add_class("tl-keep-old-task-box")

    def retain(self) -> Retain | None:
        """The chosen remedy and strength (None for "none")."""
        if self.method.value == "none":
            return None
        return Retain(self.method.value, float(self.strength.value))

    def check(self, layout: FreezeSummary, *, pretrained: bool) -> Retain | None:
        """:meth:`retain`, or the retention module's ValueError when this plan (``layout``) cannot use it."""
        retain = self.retain()
        if retain is not None:
            check_remedies([retain], layout, pretrained=pretrained)
        return retain

    def _show(self) -> None:
        method = self.method.value
        self.strength.disabled = method == "none"
        default = f" Default strength {DEFAULT_STRENGTH[method]:g}." if method != "none" else ""
        self.hint.value = (f'<div style="color:#666;font-size:12px;margin-left:114px">'
                           f'{html.escape(REMEDY_NAMES.get(method, "No remedy"))}: {html.escape(_WHAT[method])}.'
                           f"{default}</div>")

    def _on_method(self, change: dict) -> None:
        if change["new"] != "none":
            self.strength.value = DEFAULT_STRENGTH[change["new"]]  # each remedy's scale differs by orders
        self._show()

    def _on_strength(self, change: dict) -> None:
        value, method = change["new"], self.method.value
        if method == "none":
            return
        try:
            Retain(method, value)
        except ValueError:
            self.strength.value = change["old"]  # refused, and said so: never trained with something else
            shown = f"{value:g}" if math.isfinite(value) else str(value)
            self.status.set(f"strength {shown} is not allowed: type a number of 0 or more ({REMEDY_NAMES[method]}'s "
                            f"default is {DEFAULT_STRENGTH[method]:g}). Kept {change['old']:g}.", "warn")
