"""CompareRuns: how much did fine-tuning change each stage? Per-stage CKA between two networks.

Pick two models (the pretrained network, or any run you trained) and compare: the chart shows linear CKA
(Kornblith et al. 2019) between their features on the same held-out images, stage by stage, and a table sets the
two runs' accuracies side by side with the raw-pixel baseline. After fine-tuning, low stages stay near 1 and the top
ones fall: general features low, task-specific features high.

Example::

    >>> data = tl_lab.load_dataset("digits", shots=10)
    >>> run_ft = tl_lab.fit("efficientnet_lite0", data, plan=tl_lab.FreezePlan.fine_tune())  # doctest: +SKIP
    >>> cmp = CompareRuns(runs=[run_ft])          # pretrained vs the fine-tuned run  # doctest: +SKIP
    >>> cmp.compare_button.click(); cmp.wait(); cmp.result.per_stage["stem"]  # doctest: +SKIP
    0.99...
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W

from tl_lab.data.baseline import baseline
from tl_lab.inside.cka import StageSimilarity, compare_stages
from tl_lab.plots.stages import cka_by_stage
from tl_lab.training.run import Run
from tl_lab.widgets.attributions import PRETRAINED, model_options
from tl_lab.widgets.common import FigureSlot, StatusLine, Worker, guarded, html_table
from tl_lab.widgets.state import LabState

__all__ = ["CompareRuns"]


class CompareRuns(W.VBox):
    """Per-stage CKA between two runs (or the pretrained network and a run), with the plot from ``tl_lab.plots``."""

    def __init__(self, runs: list[Run] | None = None, *, dataset: str | None = None, max_images: int = 300,
                 state: LabState | None = None) -> None:
        self.state = state if state is not None else LabState(dataset=dataset or "clipart")
        self._runs: list[Run] = list(runs or [])
        self.max_images = max_images
        self.result: StageSimilarity | None = None
        narrow = {"description_width": "60px"}
        self.a = W.Dropdown(description="model A", style=narrow, layout=W.Layout(width="480px"))
        self.b = W.Dropdown(description="model B", style=narrow, layout=W.Layout(width="480px"))
        self.compare_button = W.Button(description="Compare", button_style="primary", icon="exchange")
        self.compare_button.add_class("tl-show")
        self.status = StatusLine("Ready: train a run (Train tab), then compare it with the pretrained network.")
        self.figure = FigureSlot(css_class="tl-compare-figure", placeholder="per-stage CKA appears here")
        self.table = W.HTML()
        self.worker = Worker(self.status, self.compare_button)
        self.compare_button.on_click(guarded(self.status)(lambda _b: self.compare()))
        self.state.observe(lambda _c: self._refresh(), names="runs")
        self._refresh()
        super().__init__(children=[
            W.HTML("<b>Compare representations.</b> CKA = 1: the two networks' features at that stage are the same "
                   "up to rotation and scale; lower: the stage changed."),
            self.a, self.b, self.compare_button, self.status, self.figure, self.table,
        ])
        self.add_class("tl-compare-runs")

    @property
    def runs(self) -> list[Run]:
        return self.state.runs_with(self._runs)

    def wait(self, timeout: float | None = None) -> None:
        self.worker.wait(timeout)

    def _refresh(self) -> None:
        options = model_options(self.runs)
        values = [v for _, v in options]
        a, b, old = self.a.value, self.b.value, set(self.b.options and [v for _, v in self.b.options])
        self.a.options = options
        self.b.options = options
        self.a.value = a if a in values else PRETRAINED
        # B follows the newest run, unless the learner chose another run by hand
        self.b.value = values[-1] if (b not in values or b == PRETRAINED or values[-1] not in old) else b

    def _pick(self, key: str) -> tuple[str, Any, Run | None]:
        if key == PRETRAINED:
            return "pretrained", self.state.backbone(self.runs[0].config["backbone"] if self.runs else None), None
        run = next(r for r in self.runs if r.name == key)
        return run.label, run.backbone, run

    def compare(self) -> None:
        if self.a.value == self.b.value:
            raise ValueError("model A and model B are the same; pick two different models")
        (name_a, bb_a, run_a), (name_b, bb_b, run_b) = self._pick(self.a.value), self._pick(self.b.value)
        data = (run_b or run_a).data if (run_a or run_b) else self.state.data()

        def compute():
            sim = compare_stages(bb_a, bb_b, data, max_images=self.max_images, names=(name_a, name_b))
            return sim, baseline(data)["test_acc"]

        def done(result):
            sim, raw = result
            self.result = sim
            self.figure.show(cka_by_stage(sim.per_stage, title=f"How much did each stage change? {name_a} vs {name_b}"))
            rows = [{"model": name, "best val acc": r.best.get("val_acc") if r else None,
                     "test acc": r.best.get("test_acc") if r else None}
                    for name, r in ((name_a, run_a), (name_b, run_b))]
            rows.append({"model": "raw pixels (logistic regression)", "best val acc": None, "test acc": raw})
            self.table.value = html_table(rows)
            low, high = sim.stages[0], sim.stages[-1]
            self.status.set(f"CKA on {sim.n_images} test images: {low} {sim.per_stage[low]:.2f} … {high} "
                            f"{sim.per_stage[high]:.2f}.", "ok")

        self.worker.start("Comparing features stage by stage (a few seconds)…", compute, done)
