"""MistakesView: what the latest run gets wrong, image by image, and why (each mistake with its attribution).

Shows, for one run and one split: per-class accuracy with counts, the confusion matrix, the most-confused pairs
and a gallery of the highest-loss images, each with the attribution map (one captum method, chosen in the
widget) of the class the model predicted. Every number comes from :meth:`tl_lab.training.run.Run.mistakes`,
every figure from :mod:`tl_lab.plots.mistakes`; the work runs in the background (:class:`LatestJob`: a new
choice replaces a waiting one), and the widget leaves a static snapshot like every tl_lab widget.

Example::

    >>> data = tl_lab.load_dataset("clipart", shots=5)
    >>> run = tl_lab.fit("efficientnet_lite0", data, epochs=2, progress=False)   # doctest: +SKIP
    >>> view = MistakesView(run)                   # or MistakesView(state=lab.state): the latest run  # doctest: +SKIP
    >>> view.wait(); print(view.mistakes.table())  # doctest: +SKIP
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as W

from tl_lab.inside.attribution import list_methods
from tl_lab.inside.mistakes import Mistakes, explain_mistakes, top_loss_images
from tl_lab.plots.mistakes import confusion_figure, top_loss_figure
from tl_lab.training.run import Run
from tl_lab.widgets.common import FigureSlot, LatestJob, StatusLine, guarded, html_table
from tl_lab.widgets.state import LabState

__all__ = ["MistakesView", "NO_MAP"]

NO_MAP = "none"  # the method menu's "no attribution" entry (a faster gallery)


class MistakesView(W.VBox):
    """Per-class accuracy, confusion matrix, most-confused pairs and the top-loss gallery of one run.

    ``run``: the run to look at; without it, the latest run of ``state`` (the dashboard's runs), following new runs
    as they are trained. ``method``: the attribution method shown beside each image (a name from
    :func:`~tl_lab.inside.attribution.list_methods`, or ``"none"``). ``split``: "test", "val" or "train".
    """

    def __init__(self, run: Run | None = None, *, state: LabState | None = None, method: str = "grad_cam",
                 split: str = "test", top: int = 12) -> None:
        self.state = state if state is not None else LabState()
        self._given = run
        options = [(m.display_name, m.name) for m in list_methods()] + [("no map (faster)", NO_MAP)]
        if method not in [v for _, v in options]:
            raise ValueError(f"unknown attribution method {method!r}; choose one of: "
                             f"{', '.join(v for _, v in options)}")
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        narrow = {"description_width": "70px"}
        self.method = W.Dropdown(options=options, value=method, description="map", style=narrow,
                                 layout=W.Layout(width="260px"))
        self.split = W.Dropdown(options=["test", "val", "train"], value=split, description="split", style=narrow,
                                layout=W.Layout(width="170px"))
        self.top = int(top)
        self.run_label = W.HTML()
        self.status = StatusLine("Train a run (Train tab) to see its mistakes.")
        self.table = W.HTML()
        self.pairs = W.HTML()
        self.confusion = FigureSlot(css_class="tl-mistakes-confusion", placeholder="the confusion matrix appears here")
        self.gallery = FigureSlot(css_class="tl-mistakes-gallery", placeholder="the highest-loss images appear here")
        self.mistakes: Mistakes | None = None
        self._job = LatestJob()
        self._generation = 0
        self._lock = threading.Lock()
        self.method.observe(guarded(self.status)(lambda _c: self.update()), names="value")
        self.split.observe(guarded(self.status)(lambda _c: self.update()), names="value")
        self.state.observe(guarded(self.status)(lambda _c: self._on_runs()), names="runs")
        super().__init__(children=[
            W.HTML("<b>What does the model get wrong?</b> Per-class accuracy, which classes it confuses, and the "
                   "images with the highest loss (the most confident mistakes), each with the pixels its prediction "
                   "relied on."),
            self.run_label, W.HBox([self.split, self.method]), self.status, self.table, self.pairs,
            self.confusion, self.gallery,
        ])
        self.add_class("tl-mistakes")
        self.update()

    @property
    def run(self) -> Run | None:
        """The run shown: the given one, else the latest of the shared runs."""
        if self._given is not None:
            return self._given
        return self.state.runs[-1] if self.state.runs else None

    def _on_runs(self) -> None:
        if self._given is None:
            self.update()

    def wait(self, timeout: float | None = 300) -> bool:
        """Block until the background work is done (tests, scripts); False when ``timeout`` passed first."""
        return self._job.wait(timeout)

    def update(self) -> None:
        """Recompute for the current run, split and method (in the background; the newest choice wins)."""
        run = self.run
        if run is None:
            self.run_label.value = "<span style='color:#777'>no run yet</span>"
            return
        with self._lock:
            self._generation += 1
            generation = self._generation
        split, method = self.split.value, self.method.value
        self.run_label.value = f"run: <b>{html.escape(run.label)}</b> <span style='color:#777'>({html.escape(run.name)})</span>"
        self.status.set(f"Finding the mistakes on the {split} split"
                        + ("" if method == NO_MAP else f" and computing {self.method.label} for each") + "…", "busy")

        def job() -> None:
            try:
                result = self._compute(run, split, method)
            except Exception as exc:  # noqa: BLE001 - shown to the learner
                if generation == self._generation:
                    self.status.error(exc)
                return
            if generation == self._generation:  # a newer choice was made meanwhile: drop this one
                self._show(*result)

        self._job.submit(job)

    def _compute(self, run: Run, split: str, method: str) -> tuple[Mistakes, Any, Any, str]:
        m = run.mistakes(split, top=self.top)
        part = getattr(run.data, split)
        attribution = None
        if method != NO_MAP and m.top_losses:
            attribution = explain_mistakes(run, m, part, method=method)
        gallery = top_loss_figure(m, top_loss_images(m, part), attribution) if m.top_losses else None
        note = ""
        if attribution is not None and attribution.diagnostics.get("layer_note"):
            note = f" ({attribution.diagnostics['layer_note']})"
        return m, confusion_figure(m), gallery, note

    def _show(self, m: Mistakes, confusion: Any, gallery: Any, note: str) -> None:
        self.mistakes = m
        self.table.value = html_table(
            [{"class": r["class"], "images": r["count"], "correct": r["correct"], "accuracy": r["accuracy"]}
             for r in m.per_class] + [{"class": "all", "images": m.n, "correct": m.n - _wrong(m), "accuracy": m.accuracy}],
            css_class="tl-mistakes-table", titles={"accuracy": "correct / images of the class (its recall)"})
        pairs = m.confused_pairs[:5]
        self.pairs.value = ("<div class='tl-mistakes-pairs'><b>Most confused</b> (true → predicted: images): "
                            + html.escape("; ".join(f"{t} → {p}: {c}" for t, p, c in pairs)) + "</div>"
                            if pairs else "<div class='tl-mistakes-pairs'>No class was confused with another.</div>")
        self.confusion.show(confusion)
        if gallery is not None:
            self.gallery.show(gallery)
        else:
            self.gallery.clear()
        self.status.set(f"{_wrong(m)} of {m.n} {m.split} images wrong (accuracy {m.accuracy:.3f}); the gallery shows "
                        f"the {len(m.top_losses)} with the highest loss{note}.", "ok")


def _wrong(m: Mistakes) -> int:
    return m.n - int(m.confusion.trace())
