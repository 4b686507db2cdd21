"""ShiftLab: pick a domain shift, see the drop, and win it back without target labels (AdaBN, domain confusion).

Four buttons, each a library call run in the shared background :class:`~tl_lab.widgets.common.Worker`:

1. **Train on source**: fine-tune on clean images with BatchNorm in train mode (the ``fine_tune_bn`` recipe of
   :func:`tl_lab.domain_shift`, its statistics then re-estimated on the source images), then test on clean and
   shifted images: the drop, beside raw pixels.
2. **Adapt BatchNorm** (seconds): :func:`tl_lab.adapt_bn` with the unlabelled target images; no label is read.
3. **Domain confusion**: :func:`tl_lab.fit` with ``adapt_to=`` the unlabelled images (DANN); its domain classifier's
   accuracy per epoch is drawn.
4. **Labelled oracle**: the source model fine-tuned on the labelled target images, and the from-scratch recipe on
   them: what labels would buy.

Every result becomes a record shaped like ``domain_shift``'s, drawn by :func:`tl_lab.plots.adaptation_bars`.

Example::

    >>> lab = ShiftLab(dataset="digits", shift="inverted")
    >>> lab.source_button.click(); lab.wait(); lab.adabn_button.click(); lab.wait()
    >>> [(r["training"], round(r["test_acc"], 2)) for r in lab.records]     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import replace

import ipywidgets as W

from tl_lab.data.baseline import baseline
from tl_lab.data.shifts import SHIFTS, shift_data, unlabelled_target
from tl_lab.experiments.domain_shift import DANN_BASE, FINE_TUNE_BN, copy_backbone, source_statistics
from tl_lab.plots.adaptation import adaptation_bars, domain_accuracy_curves
from tl_lab.training.adapt_bn import adapt_bn
from tl_lab.training.loop import fit
from tl_lab.training.recipes import RECIPES, train_run
from tl_lab.training.run import Run, evaluate_model
from tl_lab.widgets.common import FigureSlot, StatusLine, Worker, fmt_acc, guarded, html_table
from tl_lab.widgets.state import LabState

__all__ = ["ShiftLab", "SHIFT_DATASETS"]

SHIFT_DATASETS = {"digits": 32, "clipart": 64}  # dataset -> image size (small: every button runs on a laptop CPU)


class ShiftLab(W.VBox):
    """The Shift tab: source model, the drop under a shift, AdaBN, domain confusion, the labelled oracle."""

    def __init__(self, dataset: str = "digits", shift: str = "inverted", *, shots: int = 10, unlabelled: int = 200,
                 epochs: int = 8, state: LabState | None = None) -> None:
        if dataset not in SHIFT_DATASETS:
            raise ValueError(f"unknown dataset {dataset!r} for the Shift tab; choose from: {', '.join(SHIFT_DATASETS)}")
        if shift not in SHIFTS:
            raise ValueError(f"unknown shift {shift!r}; choose from: {', '.join(SHIFTS)}")
        self.state = state if state is not None else LabState(dataset=dataset)
        self.records: list[dict] = []
        self.source: Run | None = None
        self.dann: Run | None = None
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
        self.worker = Worker(self.status, *buttons)
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

    # ---- what the buttons do -----------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        self.worker.wait(timeout)

    def _data(self):
        name = self.dataset.value
        data = self.state.data(name, shots=self.shots.value, image_size=SHIFT_DATASETS[name])
        return data, shift_data(data, self.shift.value), unlabelled_target(data, self.shift.value, n=self.unlabelled.value)

    def train_source(self) -> None:
        data, target, _ = self._data()
        s, epochs = self.shift.value, self.epochs.value

        def compute():
            run = source_statistics(train_run(self.state.backbone_name, data, FINE_TUNE_BN, epochs=epochs, seed=0,
                                              run_dir=None, name="shift-source"))
            device = next(run.model.parameters()).device
            shifted = evaluate_model(run.backbone, target.test, device=device)["acc"]
            return run, shifted, baseline(replace(data, test=target.test))["test_acc"]

        def done(result):
            run, shifted, raw = result
            self.source, self.dann = run, None
            self.records = [self._record("fine_tune_bn", "none", "clean", run.best["test_acc"]),
                            self._record("fine_tune_bn", s, "clean", shifted), self._record("raw_pixels", s, "clean", raw)]
            for b in (self.adabn_button, self.dann_button, self.oracle_button):
                b.disabled = False
            self._show(f"Source model: {run.best['test_acc']:.3f} on clean test images, {shifted:.3f} on {s} ones "
                       f"({shifted - run.best['test_acc']:+.3f}). Now adapt without labels.")

        self.worker.start(f"Fine-tuning on clean {self.dataset.value} ({epochs} epochs, BatchNorm in train mode)…",
                          compute, done)

    def adapt_batchnorm(self) -> None:
        run = self._need_source()
        _, target, pool = self._data()

        def compute():
            adapted = adapt_bn(run, pool)
            return evaluate_model(adapted, target.test, device=next(adapted.model.parameters()).device)["acc"]

        def done(acc):
            self.records.append(self._record("fine_tune_bn", self.shift.value, "adabn", acc, len(pool)))
            self._show(f"AdaBN with {len(pool)} unlabelled images: {acc:.3f} (before: {self._acc('fine_tune_bn', 'clean')}).")

        self.worker.start(f"Re-estimating BatchNorm statistics on {len(pool)} unlabelled images…", compute, done)

    def domain_confusion(self) -> None:
        self._need_source()
        data, target, pool = self._data()
        r, epochs = RECIPES[DANN_BASE], self.epochs.value

        def compute():
            run = fit(self.state.backbone_name, data, plan=r.plan, epochs=epochs, lr=r.lr, seed=0, adapt_to=pool,
                      progress=False, save_checkpoints=False, name="shift-dann")
            source_only = train_run(self.state.backbone_name, data, r, epochs=epochs, seed=0, run_dir=None,
                                    name="shift-source-fine_tune")
            device = next(run.model.parameters()).device
            return (run, evaluate_model(run.backbone, target.test, device=device)["acc"],
                    evaluate_model(source_only.backbone, target.test, device=device)["acc"])

        def done(result):
            run, acc, before = result
            self.dann = run
            s = self.shift.value
            self.records += [self._record(DANN_BASE, s, "clean", before),
                             self._record(DANN_BASE, s, "dann", acc, len(pool))]
            self.curves.show(domain_accuracy_curves({s: [h["domain_acc"] for h in run.history]}))
            self._show(f"Domain confusion with {len(pool)} unlabelled images: {acc:.3f} (the same recipe without it: "
                       f"{before:.3f}).")

        self.worker.start(f"Training with domain confusion ({epochs} epochs), then the same recipe without it…",
                          compute, done)

    def labelled_oracle(self) -> None:
        run = self._need_source()
        data, target, _ = self._data()
        epochs = self.epochs.value

        def compute():
            model = copy_backbone(run.backbone, num_classes=len(data.classes))
            oracle = train_run(model, target, RECIPES["fine_tune"], epochs=epochs, seed=0, run_dir=None,
                               name="shift-oracle")
            scratch = train_run(self.state.backbone_name, target, RECIPES["scratch"], epochs=2 * epochs, seed=0,
                                run_dir=None, name="shift-scratch")
            return oracle.best["test_acc"], scratch.best["test_acc"], baseline(target)["test_acc"]

        def done(result):
            oracle, scratch, raw = result
            s = self.shift.value
            self.records += [self._record("fine_tune", s, "adapted", oracle),
                             self._record("scratch", s, "target_only", scratch),
                             self._record("raw_pixels", s, "target_only", raw)]
            self._show(f"With {len(target.train)} labelled target images: fine-tuned {oracle:.3f}, from scratch "
                       f"{scratch:.3f}, raw pixels {raw:.3f}.")

        self.worker.start("Fine-tuning on the labelled target images, and the from-scratch recipe…", compute, done)

    # ---- helpers -----------------------------------------------------------------------------------------------
    def _record(self, strategy: str, shift: str, training: str, acc: float, unlabelled: int = 0) -> dict:
        return {"strategy": strategy, "shift": shift, "training": training, "test_acc": float(acc),
                "unlabelled_images": unlabelled}

    def _acc(self, strategy: str, training: str) -> str:
        found = [r["test_acc"] for r in self.records
                 if (r["strategy"], r["training"], r["shift"]) == (strategy, training, self.shift.value)]
        return fmt_acc(found[-1]) if found else "-"

    def _need_source(self) -> Run:
        if self.source is None:
            raise ValueError("train on the source first (button 1): adaptation starts from the source model")
        return self.source

    def _reset(self) -> None:
        self.source, self.dann, self.records = None, None, []
        for b in (self.adabn_button, self.dann_button, self.oracle_button):
            b.disabled = True
        self.table.value = ""
        self.status.set("Settings changed: train on the source again (button 1).", "info")

    def _show(self, message: str) -> None:
        shifted = [r for r in self.records if r["shift"] != "none"]
        if shifted:
            self.figure.show(adaptation_bars(shifted, shifts=[self.shift.value],
                                             title=f"{self.dataset.value}, {self.shift.value}: what wins the loss back?"))
        rows = [{"strategy": r["strategy"], "training": r["training"], "tested on": r["shift"],
                 "unlabelled images": r["unlabelled_images"], "test acc": r["test_acc"]} for r in self.records]
        self.table.value = html_table(rows)
        self.status.set(message, "ok")
