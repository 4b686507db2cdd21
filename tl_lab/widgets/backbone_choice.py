"""BackboneChooser: "Which one for my data?", scored in seconds, then verified by training.

"Score the backbones" runs :func:`tl_lab.rank_backbones` without training (LogME and LEEP from one forward pass
of every offline backbone and its random-init control) and shows the scores as bars with their seconds. "Verify
by training" trains every candidate with the frozen-head recipe (:func:`tl_lab.experiments.verify_ranking`) and
adds the measured accuracies, Kendall's tau between each score and them, and a cost-accuracy plot. The runs join
the dashboard's run list. Every number comes from the library; the widget only wires buttons to it.

Example::

    >>> chooser = BackboneChooser(dataset="clipart", shots=10)   # display it in a notebook cell
    >>> chooser.score_button.click(); chooser.wait()    # LogME and LEEP of each offline network: about 10 s  # doctest: +SKIP
    >>> chooser.verify_button.click(); chooser.wait()   # then train each: about a minute  # doctest: +SKIP
    >>> chooser.result.kendall_tau    # did the scores rank the networks as training did?  # doctest: +SKIP
    {'logme': 0.55..., 'leep': 0.92...}
"""

from __future__ import annotations

import ipywidgets as W
import plotly.graph_objects as go

from tl_lab.experiments.backbone_ranking import RankingResult, rank_backbones, verify_ranking
from tl_lab.plots.ranking import cost_vs_accuracy, score_vs_accuracy, transferability_scores
from tl_lab.widgets.common import FigureSlot, StatusLine, Worker, fmt_acc, guarded, html_table
from tl_lab.widgets.state import LabState

__all__ = ["BackboneChooser"]


class BackboneChooser(W.VBox):
    """Score every offline backbone on the shared dataset, then verify the ranking by training each one.

    ``result``: the last :class:`~tl_lab.experiments.RankingResult` (None before scoring).
    """

    def __init__(self, dataset: str | None = None, *, shots: int | None = 10, state: LabState | None = None,
                 backbones: list[str] | None = None, image_size: int | None = 64) -> None:
        self.state = state if state is not None else LabState(dataset=dataset or "clipart", shots=shots)
        self.backbones = backbones
        self.image_size = image_size
        self.result: RankingResult | None = None
        wide = W.Layout(width="auto", min_width="170px")
        # No FontAwesome icons on these buttons: in Notebook 7 (7.x here) the icon font's .woff2 files answered 403,
        # which the browser test's console check reports; the Backbone tab is the first one a learner sees.
        self.score_button = W.Button(description="Score the backbones", button_style="primary",
                                     layout=wide, tooltip="LogME and LEEP from one forward pass each: seconds, "
                                                          "no training")
        self.score_button.add_class("tl-score-backbones")
        self.verify_button = W.Button(description="Verify by training", layout=wide, disabled=True,
                                      tooltip="train every candidate (frozen backbone + new head) and compare")
        self.verify_button.add_class("tl-verify-backbones")
        self.status = StatusLine("Ready: click 'Score the backbones'.", css_class="tl-score-status")
        self.scores_fig = FigureSlot(css_class="tl-ranking-figure", placeholder="the scores appear here")
        self.table = W.HTML()
        self.check_fig = FigureSlot(css_class="tl-ranking-figure", placeholder="")
        self.cost_fig = FigureSlot(css_class="tl-ranking-figure", placeholder="")
        for slot in (self.check_fig, self.cost_fig):  # shown by a verification only
            slot.layout.display = "none"
        self.worker = Worker(self.status, self.score_button, self.verify_button)
        super().__init__(children=[
            W.HTML("<h4 style='margin:8px 0 2px'>Which one for my data?</h4>Predict which network will transfer "
                   "best to your dataset <i>before</i> training (LogME, You et al. 2021; LEEP, Nguyen et al. "
                   "2020), then check the prediction by training each one. Random-init copies are the negative "
                   "control."),
            W.HBox([self.score_button, self.verify_button]), self.status, self.scores_fig, self.table,
            self.check_fig, self.cost_fig,
        ])
        self.add_class("tl-backbone-chooser")
        self.score_button.on_click(guarded(self.status)(lambda _: self.score()))
        self.verify_button.on_click(guarded(self.status)(lambda _: self.verify()))

    def _data(self):
        return self.state.data(image_size=self.image_size if self.state.image_size is None else "state")

    def score(self) -> None:
        """Score every candidate in the background (the shared :class:`Worker`)."""
        def compute() -> RankingResult:
            return rank_backbones(self._data(), self.backbones, metrics=("logme", "leep"), verify=None,
                                  progress=False)

        def done(result: RankingResult) -> None:
            self.result = result
            records = result.to_records()
            self.scores_fig.show(transferability_scores(records))
            self.table.value = html_table(_rows(records))
            for slot in (self.check_fig, self.cost_fig):  # the last verification belongs to the last scores
                _hide(slot)
            self.verify_button.disabled = False
            seconds = sum(r["score_seconds"] for r in records)
            self.status.set(f"Scored {len(records)} candidates on {result.config['dataset']} in {seconds:.1f} s "
                            "(no training). Now 'Verify by training' to check the prediction.", "ok")

        self.worker.start(f"Scoring every offline backbone on {self.state.dataset} (one forward pass each)…",
                          compute, done)

    def verify(self) -> None:
        """Train each scored candidate with the frozen-head recipe; add accuracies, Kendall tau, cost plot."""
        if self.result is None:
            self.status.set("Score the backbones first.", "warn")
            return
        result = self.result
        if result.runs:
            self.status.set("These candidates are trained already: score again to start over.", "warn")
            return

        def compute() -> RankingResult:
            return verify_ranking(result, self._data(), "frozen_head")

        def done(result: RankingResult) -> None:
            records = result.to_records()
            base = result.config.get("raw_pixels_test_acc")
            self.table.value = html_table(_rows(records))
            _reveal(self.check_fig, score_vs_accuracy(records, tau=result.kendall_tau, baseline=base))
            _reveal(self.cost_fig, cost_vs_accuracy(records, cost="parameters", baseline=base))
            for run in result.runs:
                self.state.add_run(run)
            taus = ", ".join(f"{m} {t:+.2f}" for m, t in result.kendall_tau.items())
            trained = sum(r["train_seconds"] for r in records)
            self.status.set(f"Trained {len(records)} candidates in {trained:.0f} s. Kendall tau between score and "
                            f"measured accuracy: {taus}; raw pixels {fmt_acc(base)}.", "ok")

        self.worker.start("Training every candidate (frozen backbone + new head)…", compute, done)

    def wait(self, timeout: float | None = None) -> None:
        self.worker.wait(timeout)


def _hide(slot: FigureSlot) -> None:
    """Empty the slot's figure (so no stale chart reaches the page or a saved snapshot) and hide it, through
    ``show`` and the layout only: the slot keeps its one FigureWidget, which :func:`_reveal` refills."""
    if slot.widget is not None:
        slot.show(go.Figure())
    slot.layout.display = "none"


def _reveal(slot: FigureSlot, fig: go.Figure) -> None:
    slot.show(fig)
    slot.layout.display = ""


def _rows(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        rows.append({"backbone": r["label"], "parameters": r["parameters"],
                     "ImageNet top-1": r["imagenet_top1"] if r["imagenet_top1"] is not None else None,
                     "LogME": r.get("logme"), "LEEP": r.get("leep"),
                     "score s": round(r["score_seconds"], 2),
                     "train s": round(r["train_seconds"], 1) if r.get("train_seconds") is not None else None,
                     "test acc": r.get("test_acc")})
    return rows
