"""ShiftLab: pick a domain shift, see the drop, and win it back without target labels (AdaBN, domain confusion).

Four buttons, each one or two steps of :class:`tl_lab.experiments.domain_shift.ShiftSteps` (the protocol
:func:`tl_lab.domain_shift` runs in one call) run in the shared background :class:`~tl_lab.widgets.common.Worker`;
the widget only displays the records the steps return:

1. **Train on source**: ``raw_pixels`` and ``train_source("fine_tune_bn")``: fine-tune on clean images with
   BatchNorm in train mode (its statistics then re-estimated on the source images), tested on clean and shifted
   images: the drop, beside raw pixels.
2. **Adapt BatchNorm** (seconds): ``adapt_bn("fine_tune_bn")`` with the unlabelled target images; no label is read.
3. **Domain confusion**: ``train_source("fine_tune")`` (once) and ``domain_confusion()`` (DANN); its domain
   classifier's accuracy per epoch is drawn.
4. **Labelled oracle**: ``adapt_labelled("fine_tune")`` and ``target_only()``: what labels would buy.

One :class:`ShiftSteps` object belongs to one setting (dataset, shift, shots, unlabelled images). Changing any of
them while a step runs asks the running step to stop and **drops its result** when it arrives (the status line
says so): a result belongs to the setting it was computed for and is never mixed into another's table or chart.
(Dropping rather than locking the dropdowns, because a setting can change from code, e.g. a linked widget or a
lesson cell, where a disabled dropdown protects nothing.)

Example::

    >>> lab = ShiftLab(dataset="digits", shift="inverted")
    >>> lab.source_button.click(); lab.wait(); lab.adabn_button.click(); lab.wait()   # doctest: +SKIP
    >>> [(r["training"], round(r["test_acc"], 2)) for r in lab.records]     # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import ipywidgets as W
import plotly.graph_objects as go

from tl_lab.data.shifts import SHIFTS
from tl_lab.experiments.domain_shift import DANN_BASE, ShiftSteps
from tl_lab.experiments.options import Options
from tl_lab.plots.adaptation import adaptation_bars, domain_accuracy_curves
from tl_lab.training.events import StopToken
from tl_lab.training.recipes import Records
from tl_lab.training.run import Run
from tl_lab.widgets.common import FigureSlot, StatusLine, Worker, fmt_acc, guarded, html_table
from tl_lab.widgets.state import LabState

__all__ = ["ShiftLab", "SHIFT_DATASETS"]

SHIFT_DATASETS = {"digits": 32, "clipart": 64}  # dataset -> image size (small: every button runs on a laptop CPU)
SOURCE = "fine_tune_bn"  # the source model AdaBN adapts (BatchNorm statistics of the source: the sound protocol)


class ShiftLab(W.VBox):
    """The Shift tab: source model, the drop under a shift, AdaBN, domain confusion, the labelled oracle."""

    def __init__(self, dataset: str = "digits", shift: str = "inverted", *, shots: int = 10, unlabelled: int = 200,
                 epochs: int = 8, state: LabState | None = None) -> None:
        if dataset not in SHIFT_DATASETS:
            raise ValueError(f"unknown dataset {dataset!r} for the Shift tab; choose from: {', '.join(SHIFT_DATASETS)}")
        if shift not in SHIFTS:
            raise ValueError(f"unknown shift {shift!r}; choose from: {', '.join(SHIFTS)}")
        self.state = state if state is not None else LabState(dataset=dataset)
        self.steps: ShiftSteps | None = None  # the current setting's steps; None until button 1 or after a change
        self._lock = threading.Lock()  # a step's result is checked against the current setting and shown atomically
        wide = {"description_width": "110px"}
        self.dataset = W.Dropdown(options=list(SHIFT_DATASETS), value=dataset, description="dataset", style=wide)
        self.shift = W.Dropdown(options=list(SHIFTS), value=shift, description="shift (target)", style=wide)
        self.shots = W.IntSlider(value=shots, min=2, max=20, description="labelled shots", style=wide)
        self.unlabelled = W.IntSlider(value=unlabelled, min=20, max=500, step=20, description="unlabelled", style=wide)
        self.epochs = W.IntSlider(value=epochs, min=1, max=30, description="fine-tune epochs", style=wide)
        self.source_button = W.Button(description="1 Train on source", button_style="primary")
        self.adabn_button = W.Button(description="2 Adapt BatchNorm", disabled=True)
        self.dann_button = W.Button(description="3 Domain confusion", disabled=True)
        self.oracle_button = W.Button(description="4 Labelled oracle", disabled=True)
        buttons = (self.source_button, self.adabn_button, self.dann_button, self.oracle_button)
        for b in buttons:
            b.layout = W.Layout(width="190px")
        self.status = StatusLine("Ready: train on the clean source images first (about a minute on a CPU).")
        self.figure = FigureSlot(css_class="tl-shift-figure", placeholder="accuracy per method appears here")
        self.curves = FigureSlot(css_class="tl-shift-domain", placeholder="the domain classifier's accuracy "
                                 "appears here after domain confusion")
        self.table = W.HTML()
        self._busy = False  # the worker's flag (its thread is still alive when it reports the end)
        self.worker = Worker(self.status, on_busy=self._on_busy)
        self.source_button.on_click(guarded(self.status)(lambda _b: self.train_source()))
        self.adabn_button.on_click(guarded(self.status)(lambda _b: self.adapt_batchnorm()))
        self.dann_button.on_click(guarded(self.status)(lambda _b: self.domain_confusion()))
        self.oracle_button.on_click(guarded(self.status)(lambda _b: self.labelled_oracle()))
        for control in (self.dataset, self.shift, self.shots, self.unlabelled):
            control.observe(lambda _c: self._reset(), names="value")
        super().__init__(children=[
            W.HTML("<b>Adapt to a new domain without its labels.</b> Train on clean images, test on shifted ones, "
                   "then win accuracy back with unlabelled shifted images only: re-estimate BatchNorm statistics "
                   "(AdaBN) or train features a domain classifier cannot tell apart (DANN). The labelled oracle "
                   "shows what target labels would buy."),
            W.HBox([W.VBox([self.dataset, self.shift]), W.VBox([self.shots, self.unlabelled, self.epochs])]),
            W.HBox(list(buttons)), self.status, self.figure, self.table, self.curves,
        ])
        self.add_class("tl-shift-lab")

    # ---- what the widget shows comes from the current steps ---------------------------------------------------
    @property
    def records(self) -> Records:
        """The current setting's records (``domain_shift``'s shape); empty before button 1 and after a change."""
        return list(self.steps.records) if self.steps is not None else []

    @property
    def source(self) -> Run | None:
        """The current setting's source model (button 1), or None."""
        return self.steps.runs.get(SOURCE) if self.steps is not None else None

    @property
    def dann(self) -> Run | None:
        """The current setting's domain-confusion run (button 3), or None."""
        return self.steps.dann.get(self.steps.shifts[0]) if self.steps is not None else None

    # ---- what the buttons do -----------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        self.worker.wait(timeout)

    def train_source(self) -> None:
        if self._still_busy():
            return
        name = self.dataset.value
        data = self.state.data(name, shots=self.shots.value, image_size=SHIFT_DATASETS[name])
        steps = ShiftSteps(self.state.backbone_name, data, shifts=(self.shift.value,), shots=self.shots.value,
                           unlabelled=self.unlabelled.value, options=self._options(), stop=StopToken())
        with self._lock:
            self.steps = steps  # a fresh start: the previous source model and records are gone
        self.table.value = ""

        def step() -> Records:
            return steps.raw_pixels(target_only=False) + steps.train_source(SOURCE)

        def show(new: Records) -> str:
            clean, shifted = (r["test_acc"] for r in new if r["strategy"] == SOURCE)
            return (f"Source model: {clean:.3f} on clean test images, {shifted:.3f} on {steps.shifts[0]} ones "
                    f"({shifted - clean:+.3f}). Now adapt without labels.")

        self._run(steps, "Train on source", f"Fine-tuning on clean {name} ({self.epochs.value} epochs, BatchNorm in "
                  "train mode)…", step, show)

    def adapt_batchnorm(self) -> None:
        steps = self._need_source()

        def show(new: Records) -> str:
            [r] = new
            return (f"AdaBN with {r['unlabelled_images']} unlabelled images: {r['test_acc']:.3f} "
                    f"(before: {self._acc(steps, SOURCE, 'clean')}).")

        self._run(steps, "Adapt BatchNorm", f"Re-estimating BatchNorm statistics on {self.unlabelled.value} "
                  "unlabelled images…", lambda: steps.adapt_bn(SOURCE), show)

    def domain_confusion(self) -> None:
        steps = self._need_source()

        def step() -> Records:
            before = steps.train_source(DANN_BASE) if DANN_BASE not in steps.runs else []
            return before + steps.domain_confusion()

        def show(new: Records) -> str:
            [r] = [r for r in new if r["training"] == "dann"]
            self.curves.show(domain_accuracy_curves({r["shift"]: r["domain_acc"]}))
            return (f"Domain confusion with {r['unlabelled_images']} unlabelled images: {r['test_acc']:.3f} (the same "
                    f"recipe without it: {self._acc(steps, DANN_BASE, 'clean')}).")

        self._run(steps, "Domain confusion", f"Training with domain confusion ({self.epochs.value} epochs), and the "
                  "same recipe without it…", step, show)

    def labelled_oracle(self) -> None:
        steps = self._need_source()

        def step() -> Records:
            before = steps.train_source(DANN_BASE) if DANN_BASE not in steps.runs else []
            return before + steps.adapt_labelled(DANN_BASE) + steps.target_only() + steps.raw_pixels(source=False)

        def show(new: Records) -> str:
            acc = {(r["strategy"], r["training"]): r["test_acc"] for r in new}
            n = len(steps.targets[steps.shifts[0]].train)
            return (f"With {n} labelled target images: fine-tuned {acc[(DANN_BASE, 'adapted')]:.3f}, from scratch "
                    f"{acc[('scratch', 'target_only')]:.3f}, raw pixels {acc[('raw_pixels', 'target_only')]:.3f}.")

        self._run(steps, "Labelled oracle", "Fine-tuning on the labelled target images, and the from-scratch recipe…",
                  step, show)

    # ---- helpers -----------------------------------------------------------------------------------------------
    def _options(self) -> Options:
        e = self.epochs.value
        return Options(seed=0, image_size=SHIFT_DATASETS[self.dataset.value], run_dir=None,
                       epochs={"fine_tune": e, "fine_tune_bn": e, "scratch": 2 * e})

    def _run(self, steps: ShiftSteps, label: str, busy_text: str, step: Callable[[], Records],
             show: Callable[[Records], str]) -> None:
        """Run ``step`` in the worker; show its records only if ``steps`` is still the current setting's."""
        if self._still_busy():
            return
        steps.options = self._options()  # the epochs slider applies to the next step

        def done(new: Records) -> None:
            with self._lock:
                if steps is not self.steps:
                    self.status.set(f"Dropped the result of '{label}': it was computed for {_describe(steps)}, and "
                                    "the settings changed while it ran. Train on the source again (button 1).", "warn")
                    return
                self._show(steps, show(new))

        self.worker.start(busy_text, step, done)

    def _still_busy(self) -> bool:
        if self.worker.busy:
            self.status.set("Still working on the last request; wait for it to finish.", "warn")
        return self.worker.busy

    def _acc(self, steps: ShiftSteps, strategy: str, training: str) -> str:
        found = [r["test_acc"] for r in steps.records
                 if (r["strategy"], r["training"], r["shift"]) == (strategy, training, steps.shifts[0])]
        return fmt_acc(found[-1]) if found else "-"

    def _need_source(self) -> ShiftSteps:
        steps = self.steps
        if steps is None or SOURCE not in steps.runs:
            raise ValueError("train on the source first (button 1): adaptation starts from the source model")
        return steps

    def _on_busy(self, busy: bool) -> None:
        self._busy = busy
        self._refresh_buttons()

    def _refresh_buttons(self) -> None:
        """Button state from two facts: is a step running, is there a source model for the current setting."""
        busy, ready = self._busy, self.source is not None
        self.source_button.disabled = busy
        for b in (self.adabn_button, self.dann_button, self.oracle_button):
            b.disabled = busy or not ready

    def _reset(self) -> None:
        with self._lock:
            old, self.steps = self.steps, None
            running = self._busy
            if old is not None and running:
                old.stop.set("the settings changed")  # the running step ends at its next batch; its result is dropped
            self.table.value = ""
            for slot in (self.figure, self.curves):  # a chart of the old setting would sit under the new dropdowns
                if slot.widget is not None:
                    slot.show(go.Figure(layout={"title": "settings changed: train on the source again (button 1)"}))
            self._refresh_buttons()
            self.status.set("Settings changed: train on the source again (button 1)." + (
                " The running step was stopped; its result will be dropped." if running else ""), "info")

    def _show(self, steps: ShiftSteps, message: str) -> None:
        dataset, shift = steps.data.name, steps.shifts[0]
        shifted = [r for r in steps.records if r["shift"] != "none"]
        if shifted:
            self.figure.show(adaptation_bars(shifted, shifts=[shift],
                                             title=f"{dataset}, {shift}: what wins the loss back?"))
        rows = [{"strategy": r["strategy"], "training": r["training"], "tested on": r["shift"],
                 "unlabelled images": r["unlabelled_images"], "test acc": r["test_acc"]} for r in steps.records]
        self.table.value = html_table(rows)
        self.status.set(message, "ok")


def _describe(steps: ShiftSteps) -> str:
    return (f"{steps.data.name}, {steps.shifts[0]}, {steps.context['shots']} shots, "
            f"{steps.unlabelled} unlabelled images")
