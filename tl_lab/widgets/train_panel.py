"""TrainPanel: train on a small dataset with live curves, a Stop button that works mid-epoch, and a runs table.

Training runs :func:`tl_lab.fit` in a background thread, so the notebook stays usable. The panel listens to fit's
events: epochs are drawn on one plotly ``FigureWidget`` (every run overlaid, one colour each, the legend naming its
plan), at most a few redraws a second however fast epochs come; Stop sets the run's :class:`~tl_lab.StopToken`,
which fit checks after every batch, and the best checkpoint is kept. Every accuracy is shown beside the raw-pixel
baseline of the same data, and the "from scratch" plan trains the honest from-scratch baseline (the recipe the
experiments use). An error inside a run appears in the panel with its message and traceback.

Example::

    >>> panel = TrainPanel(dataset="clipart", shots=10)
    >>> panel                      # in a notebook: click Train, watch, click Stop
    >>> panel.train_button.click(); run = panel.wait()
    >>> run.best["test_acc"], panel.baseline_acc
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as W

from tl_lab.data.baseline import baseline
from tl_lab.plots.training import add_run, append_epochs, empty_training_figure
from tl_lab.training.events import (
    BatchEnd,
    EpochEnd,
    FitEnd,
    FitStart,
    Stopped,
    StopToken,
)
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit
from tl_lab.training.recipes import RECIPES
from tl_lab.training.run import Run, run_label
from tl_lab.widgets.common import (
    FigureSlot,
    StatusLine,
    Throttle,
    fmt_acc,
    guarded,
    html_table,
)
from tl_lab.widgets.state import OFFLINE_DATASETS, LabState

__all__ = ["TrainPanel", "PLAN_CHOICES"]

PLAN_CHOICES = (
    ("frozen head: train only a new classifier on ImageNet features", "frozen_head"),
    ("fine-tune all: body at 0.1× the head's LR, BatchNorm fixed", "fine_tune"),
    ("from scratch (baseline): random init, every layer trains", "scratch"),
)
_SHOTS = (("1", 1), ("2", 2), ("5", 5), ("10", 10), ("20", 20), ("all", None))


class TrainPanel(W.VBox):
    """Dataset, shots, recipe and plan controls; Train / Stop / Resume; live curves; a table of runs.

    Args:
        backbone, dataset, shots: the starting choices (``dataset="folder"`` with ``root=`` for your own images).
        plan: a FreezePlan to offer as the "custom" plan (the Freeze tab's plan when the panel shares a ``state``).
        epochs: None picks fit's default (100 for a cached frozen head, else 30; 40 for the scratch baseline).
        run_dir: the folder under which each run writes ``best.safetensors``, ``last.safetensors``, ``run.json``.
        state: the dashboard's shared :class:`LabState` (the backbone and plan chosen in other tabs).
        update_interval: the least time between two chart redraws, in seconds.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", dataset: str = "clipart", shots: int | None = 10, *,
                 plan: FreezePlan | None = None, epochs: int | None = None, lr: float = 3e-3, batch_size: int = 16,
                 augment: bool = False, image_size: int | None = None, root: str = "",
                 run_dir: str | Path = "tl_lab_runs", state: LabState | None = None,
                 update_interval: float = 0.3) -> None:
        self.state = state if state is not None else LabState(backbone_name=backbone, dataset=dataset, shots=shots,
                                                              image_size=image_size, root=root)
        self._custom_plan = plan
        self.run_dir = Path(run_dir)
        self.runs: list[Run] = []
        self.baseline_acc: float | None = None
        self._baselines: dict[tuple, float] = {}
        self._stop: StopToken | None = None
        self._thread: threading.Thread | None = None
        self._throttle = Throttle(update_interval)
        self._lock = threading.Lock()
        self._pending: list[dict] = []
        self._label: str | None = None
        self._labels: dict[str, str] = {}  # run name -> its label on the chart (unique)
        self._drawn = 0  # runs drawn on the chart (the first replaces the placeholder)
        self._last_batch: BatchEnd | None = None
        self._epochs = 0
        self.last_error: BaseException | None = None
        self.stop_latency_s: float | None = None
        self._stop_clicked_at: float | None = None

        s = self.state
        narrow = {"description_width": "110px"}
        self.dataset = W.Dropdown(options=[*OFFLINE_DATASETS, "folder"], value=s.dataset, description="dataset",
                                  style=narrow)
        self.folder = W.Text(value=s.root, description="image folder", placeholder="path with one sub-folder per class",
                             style=narrow, layout=W.Layout(width="520px"))
        self.shots = W.Dropdown(options=_SHOTS, value=s.shots, description="shots per class", style=narrow)
        self.plan_choice = W.Dropdown(options=self._plan_options(), description="plan", style=narrow,
                                      layout=W.Layout(width="620px"))
        self.epochs = W.BoundedIntText(value=epochs or 0, min=0, max=1000, description="epochs", style=narrow,
                                       layout=W.Layout(width="190px"),
                                       tooltip="0 = fit's default: 100 for a head on cached features, else 30")
        self.epochs_hint = W.HTML("<span style='color:#666'>0 = auto</span>", layout=W.Layout(width="70px"))
        self.lr = W.FloatLogSlider(value=lr, base=10, min=-5, max=-1, step=0.25, description="head LR",
                                   readout_format=".1e", style=narrow)
        self.batch_size = W.Dropdown(options=[4, 8, 16, 32, 64], value=batch_size if batch_size in (4, 8, 16, 32, 64) else 16,
                                     description="batch size", style=narrow, layout=W.Layout(width="220px"))
        self.augment = W.Checkbox(value=augment, description="augment (random flips and shifts; slower: no feature cache)",
                                  indent=False, layout=W.Layout(width="520px"))
        self.train_button = W.Button(description="Train", button_style="primary", icon="play",
                                     tooltip="start a run with these settings")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True,
                                    tooltip="stop after the current batch; the best checkpoint is kept")
        self.resume_button = W.Button(description="Resume", icon="forward", disabled=True,
                                      tooltip="continue the last stopped run from its last checkpoint")
        self.train_button.add_class("tl-train")
        self.stop_button.add_class("tl-stop")
        self.resume_button.add_class("tl-resume")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="progress", style=narrow,
                                      layout=W.Layout(width="520px"))
        self.progress.add_class("tl-train-progress")
        self.status = StatusLine("Ready: choose the data and a plan, then click Train.", css_class="tl-train-status")
        self.chart = FigureSlot(empty_training_figure("your first run"), css_class="tl-train-chart")
        self.table = W.HTML(html_table([], css_class="tl-run-table", empty="no runs yet: click Train"))
        self.table.add_class("tl-run-table")

        self.train_button.on_click(guarded(self.status)(lambda _b: self.train()))
        self.stop_button.on_click(guarded(self.status)(lambda _b: self.stop()))
        self.resume_button.on_click(guarded(self.status)(lambda _b: self.resume()))
        self.dataset.observe(self._on_data_choice, names="value")
        self.folder.observe(self._on_data_choice, names="value")
        self.shots.observe(self._on_data_choice, names="value")
        self.state.observe(self._on_state_plan, names="plan")
        self._show_folder()

        super().__init__(children=[
            W.HTML("<b>Train.</b> Pick the data and a plan; curves update live. Stop works mid-epoch and keeps the "
                   "best checkpoint. Accuracies are on held-out images, next to the raw-pixel baseline."),
            W.HBox([self.dataset, self.shots]), self.folder, self.plan_choice,
            W.HBox([self.epochs, self.epochs_hint, self.batch_size]), self.lr, self.augment,
            W.HBox([self.train_button, self.stop_button, self.resume_button]), self.progress, self.status,
            self.chart, W.HTML("<b>Runs</b> (best checkpoint by validation accuracy; test accuracy at that checkpoint)"),
            self.table,
        ])
        self.add_class("tl-train-panel")

    # ---- public API -----------------------------------------------------------------------------------------
    @property
    def figure(self):
        """The live plotly FigureWidget (every run's train/val loss and accuracy)."""
        return self.chart.figure

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def train(self) -> None:
        """Start a run with the current settings in a background thread (the Train button)."""
        self._start(resume=None)

    def stop(self, reason: str = "stopped from the panel") -> None:
        """Ask the running run to stop after its current batch (the Stop button)."""
        if self._stop is None or not self.busy:
            self.status.set("Nothing is training.", "warn")
            return
        self._stop_clicked_at = time.perf_counter()
        self._stop.stop(reason)
        self.stop_button.disabled = True
        self.status.set("Stopping after the current batch…", "busy")

    def resume(self) -> None:
        """Continue the last stopped run from its last checkpoint (the Resume button)."""
        run = self.runs[-1] if self.runs else None
        if run is None or not run.stopped_early or run.run_dir is None or run.last_checkpoint is None:
            raise ValueError("no stopped run with a saved epoch to resume; Resume continues a run stopped after at "
                             "least one finished epoch")
        self._start(resume=run)

    def wait(self, timeout: float | None = None) -> Run | None:
        """Block until the current run ends; returns the newest run (None if none finished)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.runs[-1] if self.runs else None

    def add_run(self, run: Run) -> None:
        """Overlay a run trained in code (``tl_lab.fit``) on the chart and add it to the table."""
        label = self._unique_label(run.label)
        self._labels[run.name] = label
        self._new_traces(label, max(1, len(run.history)))
        with self.figure.batch_update():
            append_epochs(self.figure, run.history, label=label)
        self._record(run)

    def _new_traces(self, label: str, epochs: int) -> None:
        if self._drawn == 0:
            self.chart.show(empty_training_figure(label, epochs=epochs))
        else:
            with self.figure.batch_update():
                add_run(self.figure, label, epochs=epochs)
        self._drawn += 1

    # ---- starting a run -------------------------------------------------------------------------------------
    def _plan_options(self) -> list[tuple[str, str]]:
        options = list(PLAN_CHOICES)
        if self._custom_plan is not None:
            options.insert(0, (f"as given: {self._custom_plan.describe()}", "custom"))
        elif self.state.plan != FreezePlan():
            options.insert(0, (f"from the Freeze tab: {self.state.plan.describe()}", "custom"))
        return options

    def _on_state_plan(self, change: dict) -> None:
        if self._custom_plan is not None:
            return
        # The learner just set a plan in the Freeze tab: that is the plan the next run uses.
        self.plan_choice.options = [(f"from the Freeze tab: {change['new'].describe()}", "custom"), *PLAN_CHOICES]
        self.plan_choice.value = "custom"

    def _chosen(self) -> tuple[FreezePlan, bool, int | None]:
        """(plan, pretrained, default epochs) of the selected plan choice."""
        choice = self.plan_choice.value
        if choice == "custom":
            return (self._custom_plan or self.state.plan), True, None
        recipe = RECIPES[choice]
        return recipe.plan, recipe.pretrained, (recipe.epochs if choice == "scratch" else None)

    def _on_data_choice(self, _change: dict) -> None:
        self._show_folder()
        s = self.state
        s.dataset, s.root, s.shots = self.dataset.value, self.folder.value.strip(), self.shots.value

    def _show_folder(self) -> None:
        self.folder.layout.display = "" if self.dataset.value == "folder" else "none"

    def _start(self, *, resume: Run | None) -> None:
        if self.busy:
            self.status.set("A run is already training: Stop it first (or wait for it to finish).", "warn")
            return
        self.last_error = None
        if resume is not None:
            backbone, data, cfg = resume.backbone, resume.data, resume.config
            plan = FreezePlan(**cfg["plan"])
            kwargs = dict(plan=plan, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                          augment=cfg["augment"], seed=cfg["seed"], resume=resume.run_dir)
            label = self._label_of(resume)
        else:
            self.status.set("Loading the data…", "busy")
            data = self.state.data()
            plan, pretrained, default_epochs = self._chosen()
            backbone = self.state.backbone_name
            epochs = self.epochs.value or default_epochs
            kwargs = dict(plan=plan, epochs=epochs, lr=float(self.lr.value), batch_size=int(self.batch_size.value),
                          augment=bool(self.augment.value), pretrained=pretrained)
            label = None
        self._stop = StopToken()
        self._pending.clear()
        self._label = label
        self._stop_clicked_at = None
        self.stop_latency_s = None
        self.train_button.disabled = True
        self.resume_button.disabled = True
        self.stop_button.disabled = False
        self.progress.value = 0
        self.status.set("Training: building the network and caching frozen features…", "busy")
        self._thread = threading.Thread(target=self._work, args=(backbone, data, kwargs), daemon=True,
                                        name="tl-lab-train")
        self._thread.start()

    def _work(self, backbone: Any, data: Any, kwargs: dict) -> None:
        """The background thread: run fit, then the raw-pixel baseline of the same data (cached)."""
        try:
            run = fit(backbone, data, callbacks=[self._on_event], stop=self._stop, progress=False,
                      run_dir=None if kwargs.get("resume") else self.run_dir / _stamp(), **kwargs)
            if run.stopped_early and run.best and "test_acc" not in run.best:
                # fit leaves test accuracy to the caller when stopped; the table shows the kept checkpoint's
                self.status.set("Stopping: measuring the kept checkpoint on the test images…", "busy")
                test = run.evaluate("test")
                run.best.update(test_acc=test["acc"], test_loss=test["loss"])
            self._baseline(data)
            self._finished(run)
        except Exception as exc:  # noqa: BLE001 - shown in the panel, never only in a log
            self.last_error = exc
            self.status.error(exc, prefix="Error in the run")
        finally:
            self.train_button.disabled = False
            self.stop_button.disabled = True
            self.resume_button.disabled = not (self.runs and self.runs[-1].stopped_early and
                                               self.runs[-1].last_checkpoint is not None)

    def _baseline(self, data) -> None:
        key = tuple(sorted((k, str(v)) for k, v in data.meta.get("load_args", {}).items()))
        if key not in self._baselines:
            self._baselines[key] = float(baseline(data)["test_acc"])
        self.baseline_acc = self._baselines[key]

    # ---- events from the training thread --------------------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        if isinstance(event, FitStart):
            self._fit_start(event)
        elif isinstance(event, BatchEnd):
            self._last_batch = event
            if self._throttle.ready():
                self._flush()
        elif isinstance(event, EpochEnd):
            with self._lock:
                self._pending.append(dict(event.metrics))
            if self._throttle.ready():
                self._flush()
        elif isinstance(event, Stopped):
            if self._stop_clicked_at is not None:
                self.stop_latency_s = time.perf_counter() - self._stop_clicked_at
            self._flush()
        elif isinstance(event, FitEnd):
            self._flush()

    def _fit_start(self, ev: FitStart) -> None:
        self._epochs = ev.epochs
        self.progress.max = max(1, ev.epochs * ev.batches_per_epoch)
        self.progress.value = ev.start_epoch * ev.batches_per_epoch
        if self._label is None:  # a new run: new traces
            self._label = self._unique_label(run_label(ev.config))
            self._labels[ev.run_name] = self._label
            self._new_traces(self._label, ev.epochs)
        self.status.set(f"Training {self._label}: {ev.epochs} epochs × {ev.batches_per_epoch} batches "
                        f"(cache: {ev.cache})", "busy")

    def _flush(self) -> None:
        """Draw the epochs that arrived since the last redraw, in one batched update."""
        with self._lock:
            pending, self._pending = self._pending, []
        if pending and self._label is not None:
            with self.figure.batch_update():
                append_epochs(self.figure, pending, label=self._label)
        b = self._last_batch
        if b is not None:
            self.progress.value = min(self.progress.max, b.epoch * b.batches + b.batch + 1)
            if self._stop is not None and not self._stop.is_set():
                last = f", val acc {fmt_acc(pending[-1]['val_acc'])}" if pending else ""
                self.status.set(f"Training {self._label}: epoch {b.epoch + 1}/{self._epochs}, batch "
                                f"{b.batch + 1}/{b.batches}, loss {b.loss:.3f}{last}", "busy")

    # ---- the end of a run -----------------------------------------------------------------------------------
    def _finished(self, run: Run) -> None:
        self._record(run)
        b = run.best
        base = f"; raw pixels {fmt_acc(self.baseline_acc)}" if self.baseline_acc is not None else ""
        scratch = [r for r in self.runs if not r.config.get("pretrained", True) and r.data is run.data]
        hint = "" if scratch or not run.config.get("pretrained", True) else \
            " For the from-scratch baseline, choose the 'from scratch' plan and Train."
        where = f" Best checkpoint: {run.checkpoint}." if run.checkpoint else ""
        if run.stopped_early:
            self.status.set(f"Stopped ({run.stop_reason}) after {len(run.history)} epochs; best val acc "
                            f"{fmt_acc(b.get('val_acc'))}{base}.{where} Resume continues it.", "warn")
        else:
            self.status.set(f"Finished {self._label_of(run)} in {run.timings.get('total_s', 0):.1f} s: best val acc "
                            f"{fmt_acc(b.get('val_acc'))} (epoch {b.get('epoch')}), test acc "
                            f"{fmt_acc(b.get('test_acc'))}{base}.{where}{hint}", "ok")

    def _record(self, run: Run) -> None:
        self.runs = [r for r in self.runs if r.name != run.name] + [run]
        self.state.add_run(run)
        rows = []
        for r in self.runs:
            row = r.table_row()
            row["run"] = self._label_of(r)
            rows.append(row)
        if self.baseline_acc is not None:
            rows.append({"run": "raw pixels (logistic regression, same data)", "best val acc": None,
                         "test acc": self.baseline_acc, "best epoch": None, "epochs run": None, "seconds": None,
                         "trainable params": None, "stopped": ""})
        self.table.value = html_table(rows, css_class="tl-run-table")

    # ---- labels ---------------------------------------------------------------------------------------------
    def _unique_label(self, label: str) -> str:
        taken = set(self._labels.values())
        out, k = label, 2
        while out in taken:
            out, k = f"{label} #{k}", k + 1
        return out

    def _label_of(self, run: Run) -> str:
        return self._labels.get(run.name, run.label)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
