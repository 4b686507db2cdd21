"""Domain shift and negative transfer, measured: what a shift costs and what labelled target data recovers."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Unpack

import torch

from tl_lab._checks import check_choice
from tl_lab.backbones.registry import Backbone, load_backbone
from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import DatasetSplits, ImageSplit, load_dataset
from tl_lab.data.shifts import SHIFTS, shift_data, unlabelled_target
from tl_lab.experiments.options import ExperimentOptions, Options
from tl_lab.experiments.results import ExperimentResult
from tl_lab.training.adapt_bn import adapt_bn
from tl_lab.training.domain_confusion import UnlabelledTarget
from tl_lab.training.events import Callback
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit
from tl_lab.training.lp_ft import lp_ft
from tl_lab.training.recipes import (
    RECIPES,
    Recipe,
    Records,
    recipe_epochs,
    train_run,
)
from tl_lab.training.run import Run, evaluate_model

TRAINABLE = ("frozen_head", "fine_tune", "fine_tune_bn", "lp_ft", "scratch")
UNSUPERVISED = ("adabn", "dann")
# Fine-tuning with BatchNorm in train mode: the statistics then describe the source data, the sound start for AdaBN
# (the "fine_tune" recipe keeps ImageNet's statistics fixed, which is safer on few images but not what AdaBN swaps).
FINE_TUNE_BN = Recipe(FreezePlan.fine_tune(bn="frozen"), True, RECIPES["fine_tune"].lr, RECIPES["fine_tune"].epochs,
                      RECIPES["fine_tune"].fast_epochs)
DANN_BASE = "fine_tune"  # the recipe domain confusion trains with (the body must train)


# ---- domain shift --------------------------------------------------------------------------------------------


def domain_shift(
    backbone_name: str = "efficientnet_lite0",
    dataset: str = "digits",
    *,
    shifts: Sequence[str] = SHIFTS,
    shots: int | None = 10,
    strategies: Sequence[str] = ("frozen_head", "fine_tune"),
    adapt: bool | Sequence[str] = True,
    target_only: bool = True,
    unsupervised: Sequence[str] = (),
    unlabelled: int = 200,
    **options: Unpack[ExperimentOptions],
) -> ExperimentResult:
    """Train on the clean domain, test on shifted copies of the test split; then adapt on a few shifted images.

    Why: a model is only as good as the match between its training and test distributions (Quiñonero-Candela
    et al. 2009, "Dataset Shift in Machine Learning"; Recht et al. 2019, "Do ImageNet Classifiers Generalize to
    ImageNet?"). Each record has a ``training`` column: ``clean`` (trained on clean images, tested on the shift),
    ``adapted`` (the clean model trained further, same recipe, on the same number of shifted training images per
    class, shifted validation images choosing the epoch) or, with ``target_only``, ``target_only`` (raw pixels and
    scratch trained on the shifted images alone). The notes report negative transfer, an adapted
    pretrained model doing worse than training on the shifted images alone (Rosenstein et al. 2005; Wang et al.
    2019, "Characterizing and Avoiding Negative Transfer", CVPR), where it occurs and say so when it does not.

    Adapting without target labels (``unsupervised``), from ``unlabelled`` shifted images outside every split
    (:func:`~tl_lab.data.shifts.unlabelled_target`; no target label is read): ``adabn`` records each pretrained
    strategy's clean model with its BatchNorm statistics re-estimated on them (:func:`~tl_lab.training.adapt_bn.adapt_bn`;
    sound only for ``fine_tune_bn``, whose statistics are the source's: see lesson 11); ``dann`` records the
    ``fine_tune`` recipe trained on the clean images with domain confusion towards them (``fit(adapt_to=...)``;
    its ``domain_acc`` lists the domain classifier's accuracy per epoch; like every run it keeps the epoch of best
    *source* validation accuracy, ``kept_epoch``). Strategies: the named recipes, plus
    ``fine_tune_bn`` (fine-tuning with BatchNorm in train mode, its statistics then re-estimated on the source
    images: :func:`source_statistics`) and ``lp_ft`` (:func:`~tl_lab.training.lp_ft.lp_ft`).

    ``adapt``: True adapts every strategy on the labelled shifted images, a sequence only those named (the
    labelled oracle costs one training run per strategy and shift).

    Records: strategy, shift (``none`` = clean test), training, test_acc, seconds, unlabelled_images (target
    images used without labels: 0 except for ``adabn``/``dann``), plus the settings.

    Each part is a step of :class:`ShiftSteps` (the Shift tab runs the same steps one button at a time).

    Example::

        >>> r = domain_shift(dataset="digits", shifts=("inverted",), strategies=("frozen_head",), fast=True)  # doctest: +SKIP
        >>> print(r)            # inverted digits: accuracy falls; adapting on 10 shifted shots wins some back  # doctest: +SKIP
        domain shift: dataset=digits, backbone=efficientnet_lite0, shots=10, seed=0, image_size=64, fast=True, ...
        strategy        training   none  inverted
        raw_pixels         clean  0.872     0.100
        raw_pixels   target_only      -     0.872
        frozen_head        clean  0.794     0.512
        frozen_head      adapted      -     0.805
        scratch      target_only      -     0.707
        ...

    Args:
        options: seed, image_size, epochs, fast, val_per_class, callback, run_dir
            (:class:`~tl_lab.experiments.options.Options`).
    """
    o = Options.of("domain_shift", options)
    check_choice("strategy", strategies, TRAINABLE)
    adapting = set(strategies) if adapt is True else set(adapt or ())
    check_choice("strategy to adapt", sorted(adapting) or list(strategies), strategies)
    if unsupervised:
        check_choice("unsupervised method", unsupervised, UNSUPERVISED)
    start = time.perf_counter()
    steps = ShiftSteps.load(backbone_name, dataset, shifts=shifts, shots=shots, unlabelled=unlabelled, options=o)
    steps.raw_pixels(target_only=target_only)
    for strategy in strategies:
        steps.train_source(strategy)
        if "adabn" in unsupervised and strategy != "scratch":
            steps.adapt_bn(strategy)
        if strategy in adapting:
            steps.adapt_labelled(strategy)
    if "dann" in unsupervised:
        steps.domain_confusion()
    if target_only:
        steps.target_only()
    return steps.result(time.perf_counter() - start)


class ShiftSteps:
    """The domain-shift protocol one step at a time: source data, its shifted copies, the runs so far, the records.

    Why: :func:`domain_shift` runs every step in one call; the Shift tab (:class:`~tl_lab.widgets.shift_tab.ShiftLab`)
    runs them one button at a time. Both call these methods, so there is one protocol and one record shape. Each
    step measures something, appends its records to :attr:`records` (handing each to ``options.callback``) and
    returns the new ones. An object belongs to one setting (dataset, shots, shifts, unlabelled images, seed): a
    new setting is a new object, so a model can never meet another setting's data.

    Attributes:
        data: the clean (source) splits; ``targets[shift]``: every split shifted (seeded by ``options.seed``).
        runs: the source runs so far, by strategy (:meth:`train_source`); ``dann``: the domain-confusion runs by
            shift; ``adapted``: the labelled-oracle runs by ``(strategy, shift)``.
        stop: a StopToken / ``threading.Event`` handed to every training run (set it to end the current step early).

    Example::

        >>> steps = ShiftSteps.load(dataset="digits", shifts=("inverted",), shots=5, options=Options(fast=True))
        >>> steps.train_source("fine_tune_bn"); steps.adapt_bn("fine_tune_bn")      # doctest: +SKIP
        >>> [(r["strategy"], r["training"], round(r["test_acc"], 2)) for r in steps.records]  # doctest: +SKIP
    """

    def __init__(self, backbone_name: str, data: DatasetSplits, *, shifts: Sequence[str], shots: int | None,
                 unlabelled: int = 200, options: Options | None = None, stop: Any = None) -> None:
        o = options if options is not None else Options()
        check_choice("shift", shifts, SHIFTS)
        if unlabelled < 2:
            raise ValueError(f"unlabelled must be >= 2 target images (200 is the lessons' choice); got {unlabelled}")
        self.backbone_name, self.data, self.shifts, self.unlabelled = backbone_name, data, tuple(shifts), unlabelled
        self.options, self.stop = o, stop
        self.targets = {s: shift_data(data, s, seed=o.seed) for s in self.shifts}
        self.context = {"dataset": data.name, "backbone": backbone_name, "shots": shots, "seed": o.seed}
        self.runs: dict[str, Run] = {}
        self.dann: dict[str, Run] = {}
        self.adapted: dict[tuple[str, str], Run] = {}
        self.records: Records = []
        self._pools: dict[str, ImageSplit] = {}

    @classmethod
    def load(cls, backbone_name: str = "efficientnet_lite0", dataset: str = "digits", *, shifts: Sequence[str] = SHIFTS,
             shots: int | None = 10, unlabelled: int = 200, options: Options | None = None,
             stop: Any = None) -> ShiftSteps:
        """Load ``dataset`` (``shots`` per class, ``options``' seed, image size and validation size) and start."""
        o = options if options is not None else Options()
        check_choice("shift", shifts, SHIFTS)
        if unlabelled < 2:
            raise ValueError(f"unlabelled must be >= 2 target images (200 is the lessons' choice); got {unlabelled}")
        data = load_dataset(dataset, shots=shots, seed=o.seed, image_size=o.image_size, val_per_class=o.val_per_class)
        return cls(backbone_name, data, shifts=shifts, shots=shots, unlabelled=unlabelled, options=o, stop=stop)

    def pool(self, shift: str) -> ImageSplit:
        """The ``unlabelled`` shifted images outside every split that the unsupervised steps use (labels unread)."""
        if shift not in self._pools:
            self._pools[shift] = unlabelled_target(self.data, shift, n=self.unlabelled, seed=self.options.seed)
        return self._pools[shift]

    # ---- the steps -------------------------------------------------------------------------------------------
    def raw_pixels(self, *, source: bool = True, target_only: bool = True) -> Records:
        """Raw pixels (:func:`~tl_lab.data.baseline.baseline`): with ``source``, trained on clean images and tested on
        clean and shifted ones; with ``target_only``, trained and tested on each shift's labelled images."""
        new: Records = []
        if source:
            t = time.perf_counter()
            self._emit(new, "raw_pixels", "none", "clean", baseline(self.data)["test_acc"], t)
        for s in self.shifts:
            if source:
                t = time.perf_counter()
                acc = baseline(replace(self.data, test=self.targets[s].test))["test_acc"]
                self._emit(new, "raw_pixels", s, "clean", acc, t)
            if target_only:
                t = time.perf_counter()
                self._emit(new, "raw_pixels", s, "target_only", baseline(self.targets[s])["test_acc"], t)
        return new

    def train_source(self, strategy: str) -> Records:
        """Train ``strategy`` on the clean images; record its clean test accuracy and its accuracy on each shift."""
        check_choice("strategy", [strategy], TRAINABLE)
        new: Records = []
        t = time.perf_counter()
        run = self.runs[strategy] = self._train(strategy, self.backbone_name, self.data, f"{strategy}-clean")
        self._emit(new, strategy, "none", "clean", run.best["test_acc"], t)
        for s in self.shifts:
            t = time.perf_counter()
            self._emit(new, strategy, s, "clean", self._accuracy(run.backbone, self.targets[s].test), t)
        return new

    def adapt_bn(self, strategy: str = "fine_tune_bn") -> Records:
        """AdaBN: ``strategy``'s source model with its BatchNorm statistics re-estimated on each shift's unlabelled
        images (:func:`~tl_lab.training.adapt_bn.adapt_bn`; sound only for ``fine_tune_bn``: see lesson 11)."""
        run = self.source_run(strategy)
        new: Records = []
        for s in self.shifts:
            t = time.perf_counter()
            acc = self._accuracy(adapt_bn(run, self.pool(s)), self.targets[s].test)
            self._emit(new, strategy, s, "adabn", acc, t, unlabelled_images=len(self.pool(s)))
        return new

    def adapt_labelled(self, strategy: str) -> Records:
        """The labelled oracle: ``strategy``'s source model trained further, same recipe, on each shift's labelled
        images (as many per class as the source had; shifted validation images choose the epoch)."""
        run = self.source_run(strategy)
        new: Records = []
        for s in self.shifts:
            t = time.perf_counter()
            model = copy_backbone(run.backbone, num_classes=len(self.data.classes), seed=self.options.seed)
            adapted = self.adapted[(strategy, s)] = self._train(strategy, model, self.targets[s],
                                                                f"{strategy}-adapted-{s}")
            self._emit(new, strategy, s, "adapted", adapted.best["test_acc"], t)
        return new

    def domain_confusion(self, *, callbacks: Sequence[Callback] = ()) -> Records:
        """DANN: the ``fine_tune`` recipe trained on the clean images with domain confusion towards each shift's
        unlabelled images (``fit(adapt_to=...)``). The record's ``domain_acc`` lists the domain classifier's training
        accuracy per epoch, ``source_test_acc`` the clean test accuracy, ``kept_epoch`` the epoch ``fit`` kept.

        Which weights are tested: those ``fit`` keeps, the epoch of best *source* validation accuracy
        (:func:`~tl_lab.training.loop.keep_if_best`), as for every other run. No target label can choose the epoch
        without breaking the unsupervised setting; lesson 11 measures this choice against the last epoch's network
        (``notebooks/references/dann_seeds.json``). ``callbacks`` receive the training events (e.g. to measure the
        target accuracy after every epoch).
        """
        o, r = self.options, RECIPES[DANN_BASE]
        new: Records = []
        for s in self.shifts:
            t = time.perf_counter()
            run = self.dann[s] = fit(self.backbone_name, self.data, plan=r.plan, epochs=o.epochs_for(DANN_BASE),
                                     lr=r.lr, seed=o.seed, progress=False, stop=self.stop,
                                     # the pool's images, described so that `tl-lab train run.json` redraws them
                                     adapt_to=UnlabelledTarget(s, n=self.unlabelled, seed=o.seed),
                                     callbacks=callbacks, **o.files(f"{DANN_BASE}-dann-{s}"))
            self._emit(new, DANN_BASE, s, "dann", self._accuracy(run.backbone, self.targets[s].test), t,
                       unlabelled_images=len(self.pool(s)), source_test_acc=run.best["test_acc"],
                       domain_acc=[h["domain_acc"] for h in run.history], kept_epoch=run.best["epoch"])
        return new

    def target_only(self) -> Records:
        """The ``scratch`` recipe trained on each shift's labelled images alone: what the target labels give alone."""
        new: Records = []
        for s in self.shifts:
            t = time.perf_counter()
            run = self._train("scratch", self.backbone_name, self.targets[s], f"scratch-target-{s}")
            self._emit(new, "scratch", s, "target_only", run.best["test_acc"], t)
        return new

    def result(self, seconds: float) -> ExperimentResult:
        """The records so far as :func:`domain_shift`'s result, with its notes (negative transfer, unsupervised)."""
        unsupervised = any(r["training"] in UNSUPERVISED for r in self.records)
        config = {**self.context, "image_size": self.data.image_size, "fast": self.options.fast,
                  "unlabelled": self.unlabelled if unsupervised else 0}
        notes = _negative_transfer_notes(self.records, self.shifts) + _unsupervised_notes(self.records, self.shifts)
        return ExperimentResult("domain shift", list(self.records), seconds, config, notes,
                                pivot=(("strategy", "training"), "shift"))

    # ---- helpers ---------------------------------------------------------------------------------------------
    def source_run(self, strategy: str) -> Run:
        """The source run of ``strategy``; refuses (naming the fix) before :meth:`train_source` ran it."""
        if strategy not in self.runs:
            raise ValueError(f"train {strategy!r} on the source first (train_source({strategy!r}); in the Shift "
                             f"tab, button 1): adaptation starts from the source model")
        return self.runs[strategy]

    def _train(self, strategy: str, model: Backbone | str, on: DatasetSplits, name: str) -> Run:
        o = self.options
        if strategy == "lp_ft":
            n = (o.epochs_for("frozen_head"), o.epochs_for("fine_tune"))
            if not isinstance(model, Backbone):
                model = load_backbone(model, num_classes=len(self.data.classes), seed=o.seed)
            return lp_ft(model, on, epochs=n, seed=o.seed, run_dir=o.run_dir, name=name, stop=self.stop).fine_tune
        r = FINE_TUNE_BN if strategy == "fine_tune_bn" else RECIPES[strategy]
        n = recipe_epochs("fine_tune" if strategy == "fine_tune_bn" else strategy, o.epochs, o.fast)
        if isinstance(o.epochs, Mapping) and strategy in o.epochs:
            n = int(o.epochs[strategy])
        run = fit(model, on, plan=r.plan, epochs=n, lr=r.lr, seed=o.seed, pretrained=r.pretrained, progress=False,
                  stop=self.stop, save_checkpoints=o.run_dir is not None,
                  run_dir=Path(o.run_dir) / name if o.run_dir is not None else None, name=name)
        return source_statistics(run) if strategy == "fine_tune_bn" else run

    def _accuracy(self, backbone: Backbone, split: ImageSplit) -> float:
        return evaluate_model(backbone, split, device=next(backbone.model.parameters()).device)["acc"]

    def _emit(self, new: Records, strategy: str, shift: str, training: str, acc: float, since: float,
              **extra: Any) -> None:
        record = {"strategy": strategy, "shift": shift, "training": training, "test_acc": acc,
                  "seconds": time.perf_counter() - since, "unlabelled_images": 0, **extra, **self.context}
        new.append(record)
        self.options.emit(self.records, record)


def source_statistics(run: Run) -> Run:
    """``run`` with its BatchNorm statistics re-estimated on its own training and validation images, in place.

    Why: trained with BatchNorm in train mode, the head learned under *batch* statistics of the source, while the
    running averages lag behind weights that kept changing ("precise BN", Wu & Johnson 2021, "Rethinking 'Batch'
    in BatchNorm"). Re-estimating them for the final weights (labels unused) makes the clean model and its AdaBN
    copy differ only in whose statistics they use: the source's or the target's. Measured on 10-shot digits at
    32 px, 6 epochs: clean test accuracy 0.340 -> 0.551. ``run.best["test_acc"]`` is updated and a note says so.
    """
    images = torch.cat([run.data.train.images, run.data.val.images])
    precise = adapt_bn(run, images)
    run.backbone.model.load_state_dict(precise.model.state_dict())
    before = run.best.get("test_acc")
    run.best["test_acc"] = run.evaluate("test")["acc"]
    run.notes.append(f"BatchNorm statistics re-estimated on the {len(images)} source training + validation images "
                     f"(test accuracy {before:.3f} -> {run.best['test_acc']:.3f})")
    return run


def copy_backbone(backbone: Backbone, *, num_classes: int, seed: int = 0) -> Backbone:
    """A fresh Backbone of the same network holding ``backbone``'s weights (the original keeps training apart)."""
    new = load_backbone(backbone.name, pretrained=False, num_classes=num_classes, seed=seed)
    new.model.load_state_dict(backbone.model.state_dict())
    new.meta.update(pretrained=backbone.meta.get("pretrained", True), weights=backbone.meta.get("weights"))
    return new


def _unsupervised_notes(records: Records, shifts: Sequence[str]) -> list[str]:
    """Per unsupervised record: the accuracy without adaptation, with it, and the labelled oracle, as measured."""
    notes = []
    acc = {(r["strategy"], r["shift"], r["training"]): r["test_acc"] for r in records}
    for r in records:
        if r["training"] not in UNSUPERVISED:
            continue
        key, s = r["strategy"], r["shift"]
        before, oracle = acc.get((key, s, "clean")), acc.get((key, s, "adapted"))
        text = f"{r['training']} on {s} ({key}, {r['unlabelled_images']} unlabelled images): {r['test_acc']:.3f}"
        if before is not None:
            verdict = "recovers" if r["test_acc"] > before else "does not help"
            text += f" vs {before:.3f} without adapting ({r['test_acc'] - before:+.3f}: {verdict})"
        if oracle is not None:
            text += f"; labelled oracle {oracle:.3f}"
        notes.append(text)
    return notes


def _negative_transfer_notes(records: Records, shifts: Sequence[str]) -> list[str]:
    notes = []
    for s in shifts:
        alone = [r for r in records if r["shift"] == s and r["training"] == "target_only"]
        adapted = [r for r in records if r["shift"] == s and r["training"] == "adapted" and r["strategy"] != "scratch"]
        if not alone or not adapted:
            continue
        best = max(alone, key=lambda r: r["test_acc"])
        worse = [r for r in adapted if r["test_acc"] < best["test_acc"]]
        for r in worse:
            notes.append(f"negative transfer on {s}: {r['strategy']} adapted {r['test_acc']:.3f} < {best['strategy']} "
                         f"trained on the shifted images alone {best['test_acc']:.3f}")
        if not worse:
            notes.append(f"no negative transfer on {s}: every adapted pretrained model matched or beat training on "
                         f"the shifted images alone (best: {best['strategy']} {best['test_acc']:.3f})")
    return notes


# ---- negative transfer through an intermediate source ----------------------------------------------------------


def negative_transfer(
    backbone_name: str = "efficientnet_lite0",
    source: str = "digits",
    target: str = "clipart",
    *,
    shots: int | None = 10,
    source_shots: int | None = 20,
    **options: Unpack[ExperimentOptions],
) -> ExperimentResult:
    """Does a detour through a far source task hurt? ImageNet -> ``source`` -> ``target`` vs ImageNet -> target.

    Why: transfer helps only when source and target share structure; otherwise it can do worse than no transfer
    at all, negative transfer (Rosenstein et al. 2005, "To transfer or not to transfer"; Wang et al. 2019, CVPR).
    Routes, each ending in a frozen-feature linear head on the target (so the features are what is compared):
    ``ImageNet -> target``; ``ImageNet -> source -> target`` (the body first fine-tuned on ``source``, then
    frozen); and the target-only floors ``scratch`` and ``raw pixels``. The notes give the verdict as measured.

    Records: route, test_acc (target), source_test_acc (the detour's source accuracy), seconds.

    Args:
        options: seed, image_size, epochs, fast, val_per_class, callback, run_dir
            (:class:`~tl_lab.experiments.options.Options`; ``image_size`` defaults to 64 here).
    """
    o = Options.of("negative_transfer", options, image_size=64)
    start = time.perf_counter()
    tgt = load_dataset(target, shots=shots, seed=o.seed, image_size=o.image_size, val_per_class=o.val_per_class)
    src = load_dataset(source, shots=source_shots, seed=o.seed, image_size=o.image_size, val_per_class=o.val_per_class)
    records: Records = []

    def train(key: str, backbone: Backbone | str, data: DatasetSplits, name: str):
        return train_run(backbone, data, RECIPES[key], epochs=o.epochs_for(key), seed=o.seed,
                         run_dir=o.run_dir, name=name)

    def emit(route: str, acc: float, since: float, source_acc: float | None = None) -> None:
        record = {"route": route, "test_acc": acc, "source_test_acc": source_acc,
                  "seconds": time.perf_counter() - since, "source": source, "target": target, "shots": shots,
                  "backbone": backbone_name, "seed": o.seed}
        o.emit(records, record)

    t = time.perf_counter()
    emit("raw pixels (target only)", baseline(tgt)["test_acc"], t)
    t = time.perf_counter()
    emit("scratch (target only)", train("scratch", backbone_name, tgt, "scratch-target").best["test_acc"], t)
    t = time.perf_counter()
    emit("ImageNet -> target", train("frozen_head", backbone_name, tgt, "imagenet-target").best["test_acc"], t)
    t = time.perf_counter()
    detour = train("fine_tune", backbone_name, src, "source")
    model = load_backbone(backbone_name, num_classes=len(tgt.classes), seed=o.seed)
    for stage in model.body_stages:
        model.model.get_submodule(stage).load_state_dict(detour.model.get_submodule(stage).state_dict())
    run = train("frozen_head", model, tgt, "source-target")
    emit(f"ImageNet -> {source} -> target", run.best["test_acc"], t, detour.best["test_acc"])
    floor = max(records[:2], key=lambda r: r["test_acc"])
    notes = []
    for r in records[2:]:
        verdict = "negative transfer" if r["test_acc"] < floor["test_acc"] else "positive transfer"
        notes.append(f"{verdict}: {r['route']} {r['test_acc']:.3f} vs best target-only ({floor['route']}) "
                     f"{floor['test_acc']:.3f}")
    diff = records[3]["test_acc"] - records[2]["test_acc"]
    notes.append(f"the detour through {source} changed target accuracy by {diff:+.3f} against ImageNet directly")
    config = {"backbone": backbone_name, "source": source, "target": target, "shots": shots,
              "source_shots": source_shots, "image_size": o.image_size, "seed": o.seed, "fast": o.fast}
    return ExperimentResult("negative transfer", records, time.perf_counter() - start, config, notes,
                            ("route", "test_acc", "source_test_acc", "seconds"))
