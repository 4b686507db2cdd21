"""TrainPanel: train on a small dataset with live curves, a Stop button that works mid-epoch, and a runs table.

Training runs :func:`tl_lab.fit` in the shared background :class:`~tl_lab.widgets.common.Worker`, so the notebook
stays usable; the buttons follow the worker's busy flag (one place decides them). Choosing the data loads it and
measures its raw-pixel baseline in the same worker, so a run's table row arrives with the run (after Stop too);
a folder shows the files it skipped and offers only the shots it can give. The panel listens to fit's
events: epochs are drawn on one plotly ``FigureWidget`` (every run overlaid, one colour each, the legend naming its
plan), at most a few redraws a second however fast epochs come; Stop sets the run's :class:`~tl_lab.StopToken`,
which fit checks after every batch, and the best checkpoint is kept. Every accuracy is shown beside the raw-pixel
baseline of the same data, and the "from scratch" plan trains the honest from-scratch baseline (the recipe the
experiments use). An error inside a run appears in the panel with its message and traceback.

"Keep old task" adds a forgetting remedy (LwF, EWC, L2-SP: ``fit(retain=...)``; :mod:`.keep_old_task`); a plan that
cannot use it is refused before the run starts. When a run ends, the same worker measures how much of the ImageNet
task its body kept (:func:`tl_lab.inside.old_task.old_task_agreement`, on the sample photos and the test images) and
the table shows it beside the remedy.

Example::

    >>> panel = TrainPanel(dataset="clipart", shots=10)
    >>> panel                      # in a notebook: click Train, watch, click Stop
    >>> panel.train_button.click(); run = panel.wait()
    >>> run.best["test_acc"], panel.baseline_acc
"""

from __future__ import annotations

import html
import math
import re
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as W

from tl_lab.data.baseline import baseline
from tl_lab.inside.old_task import old_task_agreement, old_task_unavailable
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
from tl_lab.training.loop import data_config as data_cfg
from tl_lab.training.loop import fit
from tl_lab.training.recipes import RECIPES
from tl_lab.training.retention import Retain
from tl_lab.training.run import Run, run_label
from tl_lab.widgets.common import (
    FigureSlot,
    StatusLine,
    Throttle,
    Worker,
    error_message,
    fmt_acc,
    guarded,
    html_table,
)
from tl_lab.widgets.keep_old_task import KEPT_COLUMNS, KeepOldTask, kept_cells, kept_note, remedy_label
from tl_lab.widgets.state import OFFLINE_DATASETS, LabState

__all__ = ["TrainPanel", "PLAN_CHOICES", "check_shots", "shot_options", "EPOCHS_RANGE", "LR_RANGE"]

PLAN_CHOICES = (
    ("frozen head: train only a new classifier on ImageNet features", "frozen_head"),
    ("fine-tune all: body at 0.1× the head's LR, BatchNorm fixed", "fine_tune"),
    ("from scratch (baseline): random init, every layer trains", "scratch"),
)
_USUAL_SHOTS = (1, 2, 5, 10, 20)
EPOCHS_RANGE = (1, 1000)
"""Epochs a learner may type (0 in the box means automatic: fit's default)."""
LR_RANGE = (1e-5, 1.0)
"""Head learning rates the panel accepts: below, nothing moves in a lesson's time; above, the loss blows up."""


def check_shots(shots: Any) -> int | None:
    """``shots`` as given, or a ValueError naming ``shots`` and the values it may take (as ``load_dataset``)."""
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
        raise ValueError(f"shots must be a whole number of training images per class (e.g. 1, 2, 5, 10, 20; any "
                         f"number >= 1 the data has) or None for all of them; got {shots!r}")
    return shots


def shot_options(shots: int | None, most: int | None = None) -> list[tuple[str, int | None]]:
    """The "shots per class" choices: the usual counts, the value given, and "all"; with ``most`` (the most
    training images per class the data has, e.g. a small folder) only counts up to it, and ``most`` itself.

    >>> shot_options(3)
    [('1', 1), ('2', 2), ('3', 3), ('5', 5), ('10', 10), ('20', 20), ('all', None)]
    >>> shot_options(10, most=4)
    [('1', 1), ('2', 2), ('4', 4), ('all', None)]
    """
    values = {v for v in _USUAL_SHOTS if most is None or v <= most}
    if shots is not None and (most is None or shots <= most):
        values.add(shots)
    if most is not None and most >= 1:
        values.add(most)
    return [(str(v), v) for v in sorted(values)] + [("all", None)]


def _data_name(cfg: dict) -> str:
    """How legends and the table name a dataset: its name, or the folder's name for one's own images."""
    if cfg.get("name") == "folder" and cfg.get("root"):
        return f"folder {Path(str(cfg['root'])).name}"
    return str(cfg.get("name", "?"))


def _data_key(data) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in data.meta.get("load_args", {}).items()))


def _in_widget_words(exc: BaseException) -> BaseException:
    """load_dataset's advice names its arguments (``shots=None``, ``val_per_class``); the panel's learner sees
    the "shots per class" menu, so the same facts are said in its words."""
    text = str(exc)
    most = re.search(r"use shots <= (\d+)", text)
    if isinstance(exc, ValueError) and most:
        smallest = re.search(r"smallest class: ('[^']*')", text)
        which = f" (smallest class: {smallest.group(1)})" if smallest else ""
        return ValueError(f"this data has only {most.group(1)} training images per class{which}: choose "
                          f"'shots per class' {most.group(1)} or fewer, or 'all'")
    return exc


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
    """

    def __init__(self, backbone: str = "efficientnet_lite0", dataset: str = "clipart", shots: int | None = 10, *,
                 plan: FreezePlan | None = None, epochs: int | None = None, lr: float = 3e-3, batch_size: int = 16,
                 augment: bool = False, image_size: int | None = None, root: str = "",
                 run_dir: str | Path = "tl_lab_runs", state: LabState | None = None,
                 retain: Retain | str | None = None, update_interval: float = 0.3) -> None:
        check_shots(shots if state is None else state.shots)
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                                   or not EPOCHS_RANGE[0] <= epochs <= EPOCHS_RANGE[1]):
            raise ValueError(f"epochs must be a whole number from {EPOCHS_RANGE[0]} to {EPOCHS_RANGE[1]}, or None "
                             f"for fit's default; got {epochs!r}")
        if not (isinstance(lr, int | float) and LR_RANGE[0] <= lr <= LR_RANGE[1]):
            raise ValueError(f"lr must be between {LR_RANGE[0]:g} and {LR_RANGE[1]:g}; got {lr!r}")
        self.state = state if state is not None else LabState(backbone_name=backbone, dataset=dataset, shots=shots,
                                                              image_size=image_size, root=root)
        self._custom_plan = plan
        self.run_dir = Path(run_dir)
        self.runs: list[Run] = []
        self.baseline_acc: float | None = None
        self._baselines: dict[tuple, float] = {}
        self._kept: dict[str, dict | str] = {}  # run name -> old_task_agreement, or why it has none (n/a)
        self._baseline_lock = threading.Lock()
        self._stop: StopToken | None = None
        self._job: str | None = None  # what the worker is doing: "data" (loading, baseline) or "train"
        self._folder_most: int | None = None  # the most shots per class the chosen folder allows
        self._throttle = Throttle(update_interval)
        self._lock = threading.Lock()
        self._pending: list[dict] = []
        self._label: str | None = None
        self._labels: dict[str, str] = {}  # run name -> its label on the chart (unique)
        self._drawn = 0  # runs drawn on the chart (the first replaces the placeholder)
        self._last_batch: BatchEnd | None = None
        self._epochs = 0
        self.stop_latency_s: float | None = None
        self._stop_clicked_at: float | None = None

        s = self.state
        narrow = {"description_width": "110px"}
        self.dataset = W.Dropdown(options=[*((n, n) for n in OFFLINE_DATASETS), ("your folder", "folder")],
                                  value=s.dataset, description="dataset",
                                  style=narrow)
        # read when the path is complete (Enter or leaving the box), not at every keystroke
        self.folder = W.Text(value=s.root, description="image folder", placeholder="path with one sub-folder per class",
                             style=narrow, layout=W.Layout(width="520px"), continuous_update=False)
        self.shots = W.Dropdown(options=shot_options(s.shots), value=s.shots, description="shots per class",
                                style=narrow)
        self.plan_choice = W.Dropdown(options=self._plan_options(), description="plan", style=narrow,
                                      layout=W.Layout(width="620px"))
        self.plan_choice.add_class("tl-plan-choice")
        # plain text boxes, checked here: a bounded box or a slider would silently clamp what was typed
        self.epochs = W.IntText(value=epochs or 0, description="epochs", style=narrow, layout=W.Layout(width="190px"),
                                tooltip=f"0 = fit's default (100 for a head on cached features, else 30); "
                                        f"else {EPOCHS_RANGE[0]} to {EPOCHS_RANGE[1]}")
        self.epochs_hint = W.HTML("<span style='color:#666'>0 = auto</span>", layout=W.Layout(width="70px"))
        self.lr = W.FloatText(value=lr, description="head LR", style=narrow, layout=W.Layout(width="230px"),
                              tooltip=f"the new head's learning rate, {LR_RANGE[0]:g} to {LR_RANGE[1]:g}")
        self.lr_hint = W.HTML(f"<span style='color:#666'>{LR_RANGE[0]:g} to {LR_RANGE[1]:g}</span>",
                              layout=W.Layout(width="110px"))
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
        self.keep = KeepOldTask(self.status, retain)
        self.worker = Worker(self.status, on_busy=self._show_busy)
        self.chart = FigureSlot(empty_training_figure("your first run", note="no run yet: click Train to start one"),
                                css_class="tl-train-chart")
        self.table = W.HTML(html_table([], css_class="tl-run-table", empty="no runs yet: click Train"))
        self.table.add_class("tl-run-table")
        self.skipped_list = W.HTML()
        self.skipped = W.Accordion(children=[self.skipped_list], titles=("",))
        self.skipped.selected_index = None
        self.skipped.layout.display = "none"
        self.skipped.add_class("tl-skipped-files")

        self.train_button.on_click(guarded(self.status)(lambda _b: self.train()))
        self.stop_button.on_click(guarded(self.status)(lambda _b: self.stop()))
        self.resume_button.on_click(guarded(self.status)(lambda _b: self.resume()))
        self.dataset.observe(self._on_data_choice, names="value")
        self.folder.observe(self._on_data_choice, names="value")
        self.shots.observe(self._on_data_choice, names="value")
        self.epochs.observe(self._on_epochs, names="value")
        self.lr.observe(self._on_lr, names="value")
        self.state.observe(self._on_state_plan, names="plan")
        self._show_folder()

        super().__init__(children=[
            W.HTML("<b>Train.</b> Pick the data and a plan; curves update live. Stop works mid-epoch and keeps the "
                   "best checkpoint. Accuracies are on held-out images, next to the raw-pixel baseline."),
            W.HBox([self.dataset, self.shots]), self.folder, self.skipped, self.plan_choice, self.keep,
            W.HBox([self.epochs, self.epochs_hint, self.batch_size]), W.HBox([self.lr, self.lr_hint]), self.augment,
            W.HBox([self.train_button, self.stop_button, self.resume_button]), self.progress, self.status,
            self.chart, W.HTML("<b>Runs</b> (best checkpoint by validation accuracy; test accuracy at that checkpoint)"),
            self.table,
        ])
        self.add_class("tl-train-panel")
        if self.dataset.value != "folder" or self.folder.value.strip():
            self._prepare()  # load the chosen data and measure its raw-pixel baseline now, not after a run

    # ---- public API -----------------------------------------------------------------------------------------
    @property
    def figure(self):
        """The live plotly FigureWidget (every run's train/val loss and accuracy)."""
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
        """Block until the current job (a run, or loading the data) ends; returns the newest run (None if none)."""
        self.worker.wait(timeout)
        return self.runs[-1] if self.runs else None

    def add_run(self, run: Run) -> None:
        """Overlay a run trained in code (``tl_lab.fit``) on the chart and add it to the table (measuring here how
        much of ImageNet it kept: one forward pass of the sample photos and its test images)."""
        label = self._unique_label(self._run_label(run.config))
        self._labels[run.name] = label
        self._new_traces(label, max(1, len(run.history)))
        with self.chart.batch_update():
            append_epochs(self.figure, run.history, label=label)
        self._record(run)

    def _new_traces(self, label: str, epochs: int) -> None:
        if self._drawn == 0:
            self.chart.show(empty_training_figure(label, epochs=epochs))
        else:
            with self.chart.batch_update():
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

    def _on_data_choice(self, change: dict) -> None:
        self._show_folder()
        s = self.state
        s.dataset, s.root, s.shots = self.dataset.value, self.folder.value.strip(), self.shots.value
        if change.get("owner") in (self.dataset, self.folder):  # other data: its own shots and report
            self._folder_most = None
            self._show_report(())
            if self.dataset.value != "folder":
                self._set_shot_options(shot_options(self.shots.value))
        if self.worker.busy:  # a run or a load is going on: the next run loads (and measures) what was chosen
            return
        if self.dataset.value == "folder" and not self.folder.value.strip():
            self.status.set("Type the path of your image folder (one sub-folder per class).", "info")
            return
        self._prepare()

    def _show_folder(self) -> None:
        self.folder.layout.display = "" if self.dataset.value == "folder" else "none"

    def _set_shot_options(self, options: list) -> None:
        if [tuple(o) for o in self.shots.options] != options:
            value = self.shots.value
            counts = [v for _, v in options if v is not None]
            self.shots.options = options  # keeps the value when it is among them, else selects the first
            self.shots.value = value if value in counts or value is None else max(counts, default=None)

    def _show_report(self, report) -> None:
        """The files a folder left out: a count, and the list (each with its reason) one click away."""
        if not report:
            self.skipped.layout.display = "none"
            self.skipped_list.value = ""
            return
        shown = list(report)[:300]
        items = "".join(f"<li><code>{html.escape(str(r.path))}</code>: {html.escape(r.reason)}</li>" for r in shown)
        more = f"<li>… and {len(report) - len(shown)} more (see <code>data.report</code>)</li>" if len(report) > len(
            shown) else ""
        self.skipped_list.value = (f'<ul style="margin:2px 0;padding-left:18px;font-size:12px;max-height:240px;'
                                   f'overflow:auto">{items}{more}</ul>')
        self.skipped.set_title(0, f"{len(report)} file(s) in the folder were not used: which and why")
        self.skipped.layout.display = ""

    def _prepare(self) -> None:
        """Load the chosen data and measure its raw-pixel baseline in the background (so a Stop's table is quick);
        for a folder, offer only the shots it can give and show the files it skipped."""
        self._job = "data"
        self.worker.start("Loading the data and measuring the raw-pixel baseline…", self._load_data,
                          self._data_ready, error_prefix="Error loading the data")

    def _load_data(self) -> tuple[Any, str]:
        s = self.state
        note = ""
        if s.dataset == "folder":
            everything = s.data(shots=None)
            most = min(everything.train.counts().values())
            self._folder_most = most
            self._show_report(everything.report)
            if s.shots is not None and s.shots > most:
                smallest = min(everything.train.counts(), key=everything.train.counts().get)
                note = (f" Your folder has {most} training images in its smallest class ({smallest!r}), so shots per "
                        f"class is now {most} (was {s.shots}).")
                self._set_shot_options(shot_options(most, most))
                self.shots.value = most
                s.shots = most
            else:
                self._set_shot_options(shot_options(s.shots, most))
        try:
            data = s.data()
        except ValueError as exc:
            raise _in_widget_words(exc) from None
        self._baseline(data)
        return data, note

    def _data_ready(self, result: tuple[Any, str]) -> None:
        data, note = result
        self.status.set(f"Ready: {_data_name(data_cfg(data))}, {len(data.classes)} classes, {len(data.train)} "
                        f"training images; raw pixels score {fmt_acc(self.baseline_acc)} on its test images. Choose "
                        f"a plan, then click Train.{note}", "warn" if note else "info")

    def _show_busy(self, busy: bool) -> None:
        """The buttons, derived from one flag (the worker's) and the runs: never set anywhere else."""
        training = busy and self._job == "train"
        last = self.runs[-1] if self.runs else None
        with self.hold_sync():
            self.train_button.disabled = busy
            self.stop_button.disabled = not training
            self.resume_button.disabled = busy or not _resumable(last)

    def _on_epochs(self, change: dict) -> None:
        value = change["new"]
        if value != 0 and not EPOCHS_RANGE[0] <= value <= EPOCHS_RANGE[1]:
            self.epochs.value = change["old"]  # refused, and said so: never trained as something else
            self.status.set(f"epochs {value} is not allowed: type 0 for automatic (fit's default) or a number from "
                            f"{EPOCHS_RANGE[0]} to {EPOCHS_RANGE[1]}. Kept {change['old']}.", "warn")

    def _on_lr(self, change: dict) -> None:
        value = change["new"]
        if not (math.isfinite(value) and LR_RANGE[0] <= value <= LR_RANGE[1]):
            self.lr.value = change["old"]
            self.status.set(f"head LR {value:g} is not allowed: type a value from {LR_RANGE[0]:g} to "
                            f"{LR_RANGE[1]:g} (3e-3 is the default). Kept {change['old']:g}.", "warn")

    def _start(self, *, resume: Run | None) -> None:
        if self.busy and self._job == "data":
            self.worker.wait()  # loading the chosen data takes seconds; the run needs it anyway
        if self.busy:
            self.status.set("A run is already training: Stop it first (or wait for it to finish).", "warn")
            return
        if resume is not None:
            backbone, data, cfg = resume.backbone, resume.data, resume.config
            plan = FreezePlan(**cfg["plan"])
            kwargs = dict(plan=plan, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                          augment=cfg["augment"], seed=cfg["seed"], resume=resume.run_dir,
                          retain=[Retain.from_label(label) for label in cfg.get("retain", [])] or None)
            label = self._label_of(resume)
        else:
            self.status.set("Loading the data…", "busy")
            try:
                data = self.state.data()
            except ValueError as exc:
                raise _in_widget_words(exc) from None
            plan, pretrained, default_epochs = self._chosen()
            backbone = self.state.backbone_name
            retain = self.keep.retain()
            if retain is not None:  # the retention module's own checks, before anything is built
                layout = plan.summary(self.state.backbone(backbone))
                try:
                    self.keep.check(layout, pretrained=pretrained)
                except ValueError as exc:
                    self.status.set(f"Not started: {exc}.", "warn")
                    return
            epochs = self.epochs.value or default_epochs
            kwargs = dict(plan=plan, epochs=epochs, lr=float(self.lr.value), batch_size=int(self.batch_size.value),
                          augment=bool(self.augment.value), pretrained=pretrained,
                          retain=None if retain is None else [retain])
            label = None
        self._stop = StopToken()
        self._pending.clear()
        self._label = label
        self._stop_clicked_at = None
        self.stop_latency_s = None
        self.progress.value = 0
        self._job = "train"
        self.worker.start("Training: building the network and caching frozen features…",
                          lambda: self._work(backbone, data, kwargs), self._finished, error_prefix="Error in the run")

    def _work(self, backbone: Any, data: Any, kwargs: dict) -> Run:
        """In the worker: the raw-pixel baseline (measured when the data was chosen; cached), fit, then how much
        of the ImageNet task the run kept."""
        self._baseline(data)
        run = fit(backbone, data, callbacks=[self._on_event], stop=self._stop, progress=False,
                  run_dir=None if kwargs.get("resume") else self.run_dir / _stamp(), **kwargs)
        # after a Stop too, fit has measured the kept checkpoint on the test images; the old task is measured on it
        self.status.set(f"Measuring how much of ImageNet {self._label_of(run)} kept (original head on its body)…",
                        "busy")
        self._measure_kept(run)
        return run

    def _measure_kept(self, run: Run) -> None:
        """The run's old-task agreement (one forward pass of the probe images), or why it has none."""
        why = old_task_unavailable(run)
        if why is None:
            try:
                self._kept[run.name] = old_task_agreement(run, reference=self.state.backbone(run.backbone.name))
                return
            except Exception as exc:  # noqa: BLE001 - the run's row must still arrive; the reason is shown under it
                why = f"it could not be measured ({error_message(exc)})"
        self._kept[run.name] = why

    def _baseline(self, data) -> float:
        """The raw-pixel baseline of ``data`` (measured once per dataset and shots; thread-safe)."""
        key = _data_key(data)
        with self._baseline_lock:
            if key not in self._baselines:
                self._baselines[key] = float(baseline(data)["test_acc"])
        self.baseline_acc = self._baselines[key]
        return self.baseline_acc

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
            self._label = self._unique_label(self._run_label(ev.config))
            self._labels[ev.run_name] = self._label
            self._new_traces(self._label, ev.epochs)
        self.status.set(f"Training {self._label}: {ev.epochs} epochs × {ev.batches_per_epoch} batches "
                        f"(cache: {ev.cache})", "busy")

    def _flush(self) -> None:
        """Draw the epochs that arrived since the last redraw, in one batched update."""
        with self._lock:
            pending, self._pending = self._pending, []
        if pending and self._label is not None:
            with self.chart.batch_update():
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
        cells = kept_cells(self._kept.get(run.name))
        kept = "" if not isinstance(cells["ImageNet kept (test images)"], float) else (
            f"; ImageNet kept {fmt_acc(cells['ImageNet kept (photos)'])} (photos), "
            f"{fmt_acc(cells['ImageNet kept (test images)'])} (test images)")
        if run.stopped_early:
            again = " Resume continues it." if _resumable(run) else ""
            self.status.set(f"Stopped ({run.stop_reason}) after {len(run.history)} epochs; best val acc "
                            f"{fmt_acc(b.get('val_acc'))}{base}{kept}.{where}{again}", "warn")
        else:
            self.status.set(f"Finished {self._label_of(run)} in {run.timings.get('total_s', 0):.1f} s: best val acc "
                            f"{fmt_acc(b.get('val_acc'))} (epoch {b.get('epoch')}), test acc "
                            f"{fmt_acc(b.get('test_acc'))}{base}{kept}.{where}{hint}", "ok")

    def _record(self, run: Run) -> None:
        self.runs = [r for r in self.runs if r.name != run.name] + [run]
        self.state.add_run(run)
        if run.name not in self._kept:  # a run added in code; the panel's own runs were measured in the worker
            self._measure_kept(run)
        rows, datasets, reasons = [], {}, {}
        for r in self.runs:
            row = r.table_row()
            row["run"] = self._label_of(r)
            kept = self._kept.get(r.name)
            if isinstance(kept, str):
                reasons[row["run"]] = kept
            row = {"run": row.pop("run"), "data": self._data_label(r.config), "best val acc": row.pop("best val acc"),
                   "test acc": row.pop("test acc"), "keep old task": remedy_label(r.config), **kept_cells(kept), **row}
            rows.append(row)
            if r.data is not None:
                datasets.setdefault(_data_key(r.data), r)
        for key, r in datasets.items():  # one raw-pixel row per dataset listed (its own baseline)
            acc = self._baselines.get(key)
            if acc is None:
                acc = self._baseline(r.data)
            rows.append({"run": "raw pixels (logistic regression)", "data": self._data_label(r.config),
                         "best val acc": None, "test acc": acc, "keep old task": None, **kept_cells(None),
                         "best epoch": None, "epochs run": None, "seconds": None, "trainable params": None,
                         "stopped": ""})
        if run.data is not None:
            self.baseline_acc = self._baselines.get(_data_key(run.data), self.baseline_acc)
        self.table.value = html_table(rows, css_class="tl-run-table", titles=KEPT_COLUMNS) + kept_note(reasons)

    # ---- labels ---------------------------------------------------------------------------------------------
    def _unique_label(self, label: str) -> str:
        taken = set(self._labels.values())
        out, k = label, 2
        while out in taken:
            out, k = f"{label} #{k}", k + 1
        return out

    def _label_of(self, run: Run) -> str:
        return self._labels.get(run.name, self._run_label(run.config))

    @staticmethod
    def _data_label(config: dict) -> str:
        cfg = config.get("data", {})
        shots = cfg.get("shots")
        return f"{_data_name(cfg)}, {f'{shots}-shot' if shots else 'all images'}"

    @staticmethod
    def _run_label(config: dict) -> str:
        """run_label (backbone, plan, shots) and the dataset: runs on several datasets share one chart."""
        return f"{run_label(config)}, {_data_name(config.get('data', {}))}"


def _resumable(run: Run | None) -> bool:
    """Resume continues a stopped run from its last saved epoch (with its forgetting remedy, if it had one)."""
    return run is not None and run.stopped_early and run.last_checkpoint is not None


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"
