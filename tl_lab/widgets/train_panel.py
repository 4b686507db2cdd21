"""TrainPanel: train on a small dataset with live curves, a Stop button that works mid-epoch, and a runs table.

Training runs :func:`tl_lab.fit` in the shared background :class:`~tl_lab.widgets.common.Worker`, so the notebook
stays usable; the buttons follow the worker's busy flag (one place decides them). Choosing the data loads it and
measures its raw-pixel baseline in the same worker (:mod:`.train_data`), so a run's table row arrives with the run
(after Stop too); a folder shows the files it skipped and offers only the shots it can give. The panel listens to
fit's events: epochs are drawn on one plotly ``FigureWidget`` (:mod:`.train_chart`: every run overlaid, one colour
each, at most a few redraws a second however fast epochs come); Stop sets the run's :class:`~tl_lab.StopToken`,
which fit checks after every batch, and the best checkpoint is kept. Every accuracy is shown beside the raw-pixel
baseline of the same data (:mod:`.runs_table`), and the "from scratch" plan trains the honest from-scratch baseline
(the recipe the experiments use). An error inside a run appears in the panel with its message and traceback.

"Keep old task" adds a forgetting remedy (LwF, EWC, L2-SP: ``fit(retain=...)``; :mod:`.keep_old_task`); a plan that
cannot use it is refused before the run starts. When a run ends its row is shown at once, and how much of the
ImageNet task its body kept (:func:`tl_lab.inside.old_task.old_task_agreement`, on the sample photos and the test
images) is measured in a background thread of its own and filled into the row when ready: the learner who clicked
Stop does not wait for it. :meth:`TrainPanel.wait` waits for both.

Example::

    >>> panel = TrainPanel(dataset="clipart", shots=10)
    >>> panel                      # in a notebook: click Train, watch, click Stop  # doctest: +SKIP
    >>> panel.train_button.click(); run = panel.wait()      # a frozen head: about 10 s  # doctest: +SKIP
    >>> run.best["test_acc"], panel.baseline_acc            # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as W

from tl_lab.data.baseline import baseline
from tl_lab.training.events import BatchEnd, EpochEnd, FitEnd, FitStart, Stopped, StopToken
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import data_config as data_cfg
from tl_lab.training.loop import fit
from tl_lab.training.retention import Retain
from tl_lab.training.run import Run
from tl_lab.widgets.common import StatusLine, Worker, fmt_acc, guarded
from tl_lab.widgets.keep_old_task import MEASURING, KeptMeasurer, kept_cells, measure_kept
from tl_lab.widgets.runs_table import runs_table
from tl_lab.widgets.state import LabState
from tl_lab.widgets.train_chart import LiveChart
from tl_lab.widgets.train_controls import RunSettings
from tl_lab.widgets.train_data import DataChoice
from tl_lab.widgets.train_options import (
    EPOCHS_RANGE,
    LR_RANGE,
    PLAN_CHOICES,
    chart_label,
    check_epochs,
    check_lr,
    check_shots,
    data_key,
    data_name,
    resumable,
    shot_options,
    stamp,
)

__all__ = ["TrainPanel", "PLAN_CHOICES", "check_shots", "shot_options", "EPOCHS_RANGE", "LR_RANGE"]


class TrainPanel(W.VBox):
    """Dataset, shots, recipe and plan controls; Train / Stop / Resume; live curves; a table of runs.

    Args:
        backbone, dataset, shots: the starting choices (``dataset="folder"`` with ``root=`` for your own images).
        plan: a FreezePlan to offer as the "custom" plan (the Freeze tab's plan when the panel shares a ``state``).
        epochs: None picks fit's default (100 for a cached frozen head, else 30; 40 for the scratch baseline).
        run_dir: the folder under which each run writes ``best.safetensors``, ``last.safetensors``, ``run.json``.
        state: the dashboard's shared :class:`LabState` (the backbone and plan chosen in other tabs).
        retain: the forgetting remedy chosen at the start (``"lwf"``, ``"ewc"``, ``"l2sp"`` or a
            :class:`~tl_lab.Retain` with its strength); None: no remedy.
        update_interval: the least time between two chart redraws, in seconds.

    After a Stop, ``stop_latency_s`` is the time from the click to fit's Stopped event and ``row_latency_s`` the
    time from the click to the run's row in the table.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", dataset: str = "clipart", shots: int | None = 10, *,
                 plan: FreezePlan | None = None, epochs: int | None = None, lr: float = 3e-3, batch_size: int = 16,
                 augment: bool = False, image_size: int | None = None, root: str = "",
                 run_dir: str | Path = "tl_lab_runs", state: LabState | None = None,
                 retain: Retain | str | None = None, update_interval: float = 0.3) -> None:
        check_shots(shots if state is None else state.shots)
        check_epochs(epochs)
        check_lr(lr)
        self.state = state if state is not None else LabState(backbone_name=backbone, dataset=dataset, shots=shots,
                                                              image_size=image_size, root=root)
        self.run_dir = Path(run_dir)
        self.runs: list[Run] = []
        self.baseline_acc: float | None = None
        self._baselines: dict[tuple, float] = {}
        self._baseline_lock = threading.Lock()
        self._table_lock = threading.RLock()
        self._stop: StopToken | None = None
        self._job: str | None = None  # what the worker is doing: "data" (loading, baseline) or "train"
        self._last_batch: BatchEnd | None = None
        self._epochs = 0
        self._finish_status: tuple[str, str] | None = None  # (run name, the status its end showed)
        self.stop_latency_s: float | None = None
        self.row_latency_s: float | None = None
        self._stop_clicked_at: float | None = None

        narrow = {"description_width": "110px"}
        self.data_choice = DataChoice(self.state)
        dc = self.data_choice
        self.dataset, self.folder, self.shots, self.skipped, self.skipped_list = (
            dc.dataset, dc.folder, dc.shots, dc.skipped, dc.skipped_list)
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
        self.settings = RunSettings(self.state, self.status, plan=plan, epochs=epochs, lr=lr, batch_size=batch_size,
                                    augment=augment, retain=retain)
        rs = self.settings
        self.plan_choice, self.keep, self.epochs, self.lr = rs.plan_choice, rs.keep, rs.epochs, rs.lr
        self.batch_size, self.augment = rs.batch_size, rs.augment
        self.kept = KeptMeasurer(lambda run: measure_kept(run, lambda: self.state.backbone(run.backbone.name)),
                                 guarded(self.status)(self._kept_measured))
        self.worker = Worker(self.status, on_busy=self._show_busy)
        self.live = LiveChart(update_interval)
        self.chart = self.live.slot
        self.table = W.HTML(runs_table([], {}))
        self.table.add_class("tl-run-table")

        self.train_button.on_click(guarded(self.status)(lambda _b: self.train()))
        self.stop_button.on_click(guarded(self.status)(lambda _b: self.stop()))
        self.resume_button.on_click(guarded(self.status)(lambda _b: self.resume()))
        for w in (self.dataset, self.folder, self.shots):
            w.observe(self._on_data_choice, names="value")

        super().__init__(children=[
            W.HTML("<b>Train.</b> Pick the data and a plan; curves update live. Stop works mid-epoch and keeps the "
                   "best checkpoint. Accuracies are on held-out images, next to the raw-pixel baseline."),
            self.data_choice, self.settings,
            W.HBox([self.train_button, self.stop_button, self.resume_button]), self.progress, self.status,
            self.chart,
            W.HTML("<b>Runs</b> (best checkpoint by validation accuracy; test accuracy at that checkpoint)"),
            self.table,
        ])
        self.add_class("tl-train-panel")
        if not self.data_choice.needs_folder:
            self._prepare()  # load the chosen data and measure its raw-pixel baseline now, not after a run

    # ---- public API -----------------------------------------------------------------------------------------
    @property
    def figure(self):
        """The live plotly FigureWidget (every run's train/val loss and accuracy, and any added loss terms)."""
        return self.chart.figure

    @property
    def busy(self) -> bool:
        return self.worker.busy

    @property
    def last_error(self) -> BaseException | None:
        """The exception of the last job (a run, or loading the data), None when it succeeded."""
        return self.worker.error

    def train(self) -> None:
        """Start a run with the current settings in a background thread (the Train button)."""
        self._start(resume=None)

    def stop(self, reason: str = "stopped from the panel") -> None:
        """Ask the running run to stop after its current batch (the Stop button)."""
        if self._stop is None or self._job != "train" or not self.busy:
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
        """Block until the current job (a run, or loading the data) ends and every run's "ImageNet kept" cells are
        measured; returns the newest run (None if none)."""
        self.worker.wait(timeout)
        self.kept.wait(timeout)
        return self.runs[-1] if self.runs else None

    def add_run(self, run: Run) -> None:
        """Overlay a run trained in code (``tl_lab.fit``) on the chart and add it to the table (measuring here how
        much of ImageNet it kept: one forward pass of the sample photos and its test images)."""
        self.live.add_history(run.name, chart_label(run.config), run.history)
        self.kept.now(run)
        self._record(run)

    # ---- the data -------------------------------------------------------------------------------------------
    def _on_data_choice(self, change: dict) -> None:
        self.data_choice.chosen(change)
        if self.worker.busy:  # a run or a load is going on: the next run loads (and measures) what was chosen
            return
        if self.data_choice.needs_folder:
            self.status.set("Type the path of your image folder (one sub-folder per class).", "info")
            return
        self._prepare()

    def _prepare(self) -> None:
        """Load the chosen data and measure its raw-pixel baseline in the background (so a Stop's table is quick)."""
        self._job = "data"
        self.worker.start("Loading the data and measuring the raw-pixel baseline…", self._load_data,
                          self._data_ready, error_prefix="Error loading the data")

    def _load_data(self) -> tuple[Any, str]:
        data, note = self.data_choice.load()
        self._baseline(data)
        return data, note

    def _data_ready(self, result: tuple[Any, str]) -> None:
        data, note = result
        self.status.set(f"Ready: {data_name(data_cfg(data))}, {len(data.classes)} classes, {len(data.train)} "
                        f"training images; raw pixels score {fmt_acc(self.baseline_acc)} on its test images. Choose "
                        f"a plan, then click Train.{note}", "warn" if note else "info")

    def _baseline(self, data) -> float:
        """The raw-pixel baseline of ``data`` (measured once per dataset and shots; thread-safe)."""
        key = data_key(data)
        with self._baseline_lock:
            if key not in self._baselines:
                self._baselines[key] = float(baseline(data)["test_acc"])
        self.baseline_acc = self._baselines[key]
        return self.baseline_acc

    def _show_busy(self, busy: bool) -> None:
        """The buttons, derived from one flag (the worker's) and the runs: never set anywhere else."""
        training = busy and self._job == "train"
        last = self.runs[-1] if self.runs else None
        with self.hold_sync():
            self.train_button.disabled = busy
            self.stop_button.disabled = not training
            self.resume_button.disabled = busy or not resumable(last)

    # ---- a run: start, events, end --------------------------------------------------------------------------
    def _start(self, *, resume: Run | None) -> None:
        if self.busy and self._job == "data":
            self.worker.wait()  # loading the chosen data takes seconds; the run needs it anyway
        if self.busy:
            self.status.set("A run is already training: Stop it first (or wait for it to finish).", "warn")
            return
        if resume is not None:
            self.kept.wait()  # the measurement reads the run's weights, which the resumed run is about to change
            backbone, data, cfg = resume.backbone, resume.data, resume.config
            plan = FreezePlan(**cfg["plan"])
            kwargs = dict(plan=plan, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                          augment=cfg["augment"], seed=cfg["seed"], resume=resume.run_dir,
                          retain=[Retain.from_label(label) for label in cfg.get("retain", [])] or None)
            label = self._label_of(resume)
        else:
            self.status.set("Loading the data…", "busy")
            data = self.data_choice.data()
            plan, pretrained, default_epochs = self.settings.chosen()
            backbone = self.state.backbone_name
            retain = self.keep.retain()
            if retain is not None:  # the retention module's own checks, before anything is built
                layout = plan.summary(self.state.backbone(backbone))
                try:
                    self.keep.check(layout, pretrained=pretrained)
                except ValueError as exc:
                    self.status.set(f"Not started: {exc}.", "warn")
                    return
            kwargs = self.settings.fit_kwargs(plan, pretrained, default_epochs, retain)
            label = None
        self._stop = StopToken()
        self.live.follow(label)
        self._stop_clicked_at = None
        self.stop_latency_s = self.row_latency_s = None
        self.progress.value = 0
        self._job = "train"
        self.worker.start("Training: building the network and caching frozen features…",
                          lambda: self._work(backbone, data, kwargs), self._finished, error_prefix="Error in the run")

    def _work(self, backbone: Any, data: Any, kwargs: dict) -> Run:
        """In the worker: the raw-pixel baseline (measured when the data was chosen; cached), then fit. After a
        Stop too, fit has measured the kept checkpoint on the test images; the old task is measured later."""
        self._baseline(data)
        return fit(backbone, data, callbacks=[self._on_event], stop=self._stop, progress=False,
                   run_dir=None if kwargs.get("resume") else self.run_dir / stamp(), **kwargs)

    def _on_event(self, event: Any) -> None:
        """fit's events, in the training thread: progress, status and the live chart."""
        if isinstance(event, FitStart):
            self._fit_start(event)
        elif isinstance(event, BatchEnd):
            self._last_batch = event
            if self.live.due():
                self._flush()
        elif isinstance(event, EpochEnd):
            self.live.queue(event.metrics)
            if self.live.due():
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
        if self.live.label is None:  # a new run: new traces
            self.live.follow(self.live.new_run(ev.run_name, chart_label(ev.config), epochs=ev.epochs))
        self.status.set(f"Training {self.live.label}: {ev.epochs} epochs × {ev.batches_per_epoch} batches "
                        f"(cache: {ev.cache})", "busy")

    def _flush(self) -> None:
        """Draw the epochs that arrived since the last redraw; progress and status from the last batch."""
        pending = self.live.flush()
        b = self._last_batch
        if b is not None:
            self.progress.value = min(self.progress.max, b.epoch * b.batches + b.batch + 1)
            if self._stop is not None and not self._stop.is_set():
                last = f", val acc {fmt_acc(pending[-1].get('val_acc'))}" if pending else ""
                self.status.set(f"Training {self.live.label}: epoch {b.epoch + 1}/{self._epochs}, batch "
                                f"{b.batch + 1}/{b.batches}, loss {b.loss:.3f}{last}", "busy")

    def _finished(self, run: Run) -> None:
        """In the worker, as the run ends: its row now; what it kept of ImageNet in the background."""
        self.kept.later(run)
        with self._table_lock:  # the measurement may end meanwhile: it then finds this end's status to update
            self._record(run)
            if self._stop_clicked_at is not None:
                self.row_latency_s = time.perf_counter() - self._stop_clicked_at
            self._show_end(run)

    def _kept_measured(self, run: Run) -> None:
        """In the measuring thread: fill the row's cells, and the run's end message if it is still shown."""
        with self._table_lock:
            self._render_table()
            shown = self._finish_status
            if shown is not None and shown[0] == run.name and self.status.text == shown[1]:
                self._show_end(run)

    def _show_end(self, run: Run) -> None:
        b = run.best
        base = f"; raw pixels {fmt_acc(self.baseline_acc)}" if self.baseline_acc is not None else ""
        scratch = [r for r in self.runs if not r.config.get("pretrained", True) and r.data is run.data]
        hint = "" if scratch or not run.config.get("pretrained", True) else \
            " For the from-scratch baseline, choose the 'from scratch' plan and Train."
        where = f" Best checkpoint: {run.checkpoint}." if run.checkpoint else ""
        result = self.kept.get(run)
        cells = kept_cells(result)
        if result == MEASURING:
            kept = "; ImageNet kept: measuring…"
        elif isinstance(cells["ImageNet kept (test images)"], float):
            kept = (f"; ImageNet kept {fmt_acc(cells['ImageNet kept (photos)'])} (photos), "
                    f"{fmt_acc(cells['ImageNet kept (test images)'])} (test images)")
        else:
            kept = ""
        if run.stopped_early:
            again = " Resume continues it." if resumable(run) else ""
            text, kind = (f"Stopped ({run.stop_reason}) after {len(run.history)} epochs; best val acc "
                          f"{fmt_acc(b.get('val_acc'))}{base}{kept}.{where}{again}", "warn")
        else:
            text, kind = (f"Finished {self._label_of(run)} in {run.timings.get('total_s', 0):.1f} s: best val acc "
                          f"{fmt_acc(b.get('val_acc'))} (epoch {b.get('epoch')}), test acc "
                          f"{fmt_acc(b.get('test_acc'))}{base}{kept}.{where}{hint}", "ok")
        self.status.set(text, kind)
        self._finish_status = (run.name, text)

    def _record(self, run: Run) -> None:
        with self._table_lock:
            self.runs = [r for r in self.runs if r.name != run.name] + [run]
        self.state.add_run(run)
        if run.data is not None:
            self.baseline_acc = self._baseline(run.data)
        self._render_table()

    def _render_table(self) -> None:
        """The runs table from the runs, their old-task results and the baselines (either thread; one at a time)."""
        with self._table_lock:
            for r in self.runs:  # one raw-pixel row per dataset listed (its own baseline)
                if r.data is not None and data_key(r.data) not in self._baselines:
                    with self._baseline_lock:
                        self._baselines[data_key(r.data)] = float(baseline(r.data)["test_acc"])
            entries = [(r, self._label_of(r), self.kept.get(r)) for r in self.runs]
            self.table.value = runs_table(entries, self._baselines)

    def _label_of(self, run: Run) -> str:
        return self.live.labels.get(run.name, chart_label(run.config))
