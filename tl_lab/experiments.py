"""Multi-run experiments that turn a lesson's claims into measurements: data efficiency, freezing, forgetting.

Each function trains a handful of seeded runs with :func:`tl_lab.train.fit` (the frozen prefix cached where the
plan allows), times itself, and returns an :class:`ExperimentResult`: tidy records (``.to_records()``, one dict per
measurement, ready for a DataFrame or ``tl_lab.plots``), the wall time (``.seconds``) and a ``summary()`` table a
lesson can print. Nothing here draws. What happens when the task or the domain moves (forgetting, domain
shift, negative transfer) lives in :mod:`tl_lab.shift`; ``from tl_lab.experiments import forgetting`` works too.

Every function takes ``fast=True`` (lessons pass it under ``TL_LAB_FAST=1``): the same code path with fewer epochs.
Runs write no files unless ``run_dir`` is given.

Example::

    >>> from tl_lab.experiments import data_efficiency, shots_to_reach
    >>> result = data_efficiency("efficientnet_lite0", "clipart", image_size=64)   # ~4 min on a 2-core CPU
    >>> print(result)           # frozen_head 0.386 0.549 0.575 0.647 at 1/5/10/20 shots; scratch 0.124 ... 0.373
    >>> shots_to_reach(result.to_records(), 0.6)                 # examples per class for 60% test accuracy
    {'raw_pixels': None, 'scratch': None, 'linear_probe': 9.94, 'frozen_head': 12.71, 'fine_tune': 15.51}
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from tl_lab.backbones import Backbone, get_spec, load_backbone
from tl_lab.data import DatasetSplits, baseline, load_dataset
from tl_lab.features import probe_stages
from tl_lab.freeze import FreezePlan
from tl_lab.run import Run
from tl_lab.train import fit

__all__ = [
    "RECIPES",
    "Recipe",
    "ExperimentResult",
    "EfficiencyResult",
    "data_efficiency",
    "shots_to_reach",
    "freeze_sweep",
    "format_table",
    "pivot_table",
    "recipe_epochs",
    "train_run",
]

Records = list[dict]
RecordCallback = Callable[[dict], None]


@dataclass(frozen=True)
class Recipe:
    """How one strategy trains: plan, start weights, head learning rate, epochs (full and ``fast``)."""

    plan: FreezePlan
    pretrained: bool
    lr: float
    epochs: int
    fast_epochs: int


# Scratch is fair when it gets what training from nothing needs: every layer trainable, BatchNorm learning its
# statistics, twice fine-tuning's epochs, and its body at 10x fine-tuning's body rate. Head rate measured on 10-shot
# Lite0 runs (AdamW, one-cycle, 40 epochs): digits 32 px 0.547 at 3e-3, 0.531 at 1e-2, 0.178 at 3e-2; clipart
# 64 px 0.235 at 3e-3, 0.190 at 1e-2, and 0.248 with 80 epochs (the extra epochs buy little).
RECIPES: Mapping[str, Recipe] = MappingProxyType({
    "frozen_head": Recipe(FreezePlan.frozen_head(), True, 3e-3, 100, 30),
    "fine_tune": Recipe(FreezePlan.fine_tune(), True, 3e-3, 20, 6),
    "scratch": Recipe(FreezePlan(trainable_from=None, bn="frozen"), False, 3e-3, 40, 12),
})
STRATEGIES = ("scratch", "linear_probe", "frozen_head", "fine_tune")


def recipe_epochs(strategy: str, epochs: int | Mapping[str, int] | None, fast: bool) -> int:
    """Epochs for ``strategy``: an int applies to every strategy, a mapping per strategy, None the recipe's."""
    if isinstance(epochs, int):
        return epochs
    if isinstance(epochs, Mapping) and strategy in epochs:
        return int(epochs[strategy])
    r = RECIPES[strategy]
    return r.fast_epochs if fast else r.epochs


def train_run(
    backbone: Backbone | str,
    data: DatasetSplits,
    recipe: Recipe,
    *,
    epochs: int,
    seed: int,
    run_dir: str | Path | None,
    name: str,
) -> Run:
    """One quiet, seeded ``fit`` with ``recipe``; files only under ``run_dir/name`` when a run_dir is given."""
    return fit(backbone, data, plan=recipe.plan, epochs=epochs, lr=recipe.lr, seed=seed, pretrained=recipe.pretrained,
               progress=False, save_checkpoints=run_dir is not None, run_dir=Path(run_dir) / name if run_dir else None,
               name=name)


def check_choice(kind: str, given: Sequence[str], allowed: Sequence[str]) -> None:
    bad = [g for g in given if g not in allowed]
    if bad or not given:
        what = f"unknown {kind} {bad}" if bad else f"no {kind} given"
        raise ValueError(f"{what}; choose from: {', '.join(allowed)}")


# ---- results -----------------------------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    """What an experiment measured: ``records`` (one dict per measurement), wall time, settings, notes."""

    experiment: str
    records: Records
    seconds: float
    config: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    columns: tuple[str, ...] = ()
    pivot: tuple[tuple[str, ...], str] | None = None  # (row keys, column key): summary() shows mean test_acc

    def to_records(self) -> Records:
        """Copies of the records: a list of flat dicts (``pandas.DataFrame(result.to_records())``)."""
        return [dict(r) for r in self.records]

    def summary(self) -> str:
        if self.pivot is not None:
            table = f"test accuracy by {self.pivot[1]}\n" + pivot_table(self.records, *self.pivot)
        else:
            table = format_table(self.records, self.columns or (tuple(self.records[0]) if self.records else ()))
        lines = [f"{self.experiment}: {_describe(self.config)}", table]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"{len(self.records)} records in {self.seconds:.1f} s")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


@dataclass
class EfficiencyResult(ExperimentResult):
    """Test accuracy per strategy and shots; ``summary()`` pivots it (mean over seeds), strategies by shots."""

    pivot: tuple[tuple[str, ...], str] | None = (("strategy",), "shots")

    def table(self) -> dict[str, dict[int, float]]:
        """``{strategy: {shots: mean test accuracy over seeds}}``."""
        return {s: dict(curve) for s, curve in _curves(self.records).items()}

    def shots_to_reach(self, target_acc: float) -> dict[str, float | None]:
        """:func:`shots_to_reach` on these records."""
        return shots_to_reach(self.records, target_acc)


def format_table(records: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain-text table of ``columns`` (floats to 3 decimals, None as ``-``)."""
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    rows = [[cell(r.get(c)) for c in columns] for r in records]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(columns)]

    def fmt(cells: Sequence[str]) -> str:  # first column left-aligned, the rest right-aligned
        return "  ".join(s.rjust(w) if i else s.ljust(w) for i, (s, w) in enumerate(zip(cells, widths)))

    return "\n".join([fmt(columns), "-" * (sum(widths) + 2 * max(len(widths) - 1, 0)), *map(fmt, rows)])


def pivot_table(records: Sequence[dict], rows: Sequence[str], column: str, value: str = "test_acc") -> str:
    """Mean ``value`` per (row keys) x ``column`` value, as text; rows and columns in first-seen order."""
    cells: dict[tuple, dict[Any, list[float]]] = {}
    for r in records:
        cells.setdefault(tuple(r[k] for k in rows), {}).setdefault(r[column], []).append(float(r[value]))
    cols = list(dict.fromkeys(r[column] for r in records))
    table = [{**dict(zip(rows, key)), **{str(c): float(np.mean(per[c])) if c in per else None for c in cols}}
             for key, per in cells.items()]
    return format_table(table, [*rows, *map(str, cols)])


def _describe(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items() if not isinstance(v, dict))


def _curves(records: Sequence[dict]) -> dict[str, list[tuple[int, float]]]:
    """Per strategy, (shots, mean test accuracy over seeds) sorted by shots, strategies in first-seen order."""
    acc: dict[str, dict[int, list[float]]] = {}
    for r in records:
        acc.setdefault(r["strategy"], {}).setdefault(int(r["shots"]), []).append(float(r["test_acc"]))
    return {s: [(k, float(np.mean(v))) for k, v in sorted(per.items())] for s, per in acc.items()}


# ---- data efficiency ---------------------------------------------------------------------------------------------


def data_efficiency(
    backbone_name: str = "efficientnet_lite0",
    dataset: str = "digits",
    *,
    shots: Sequence[int] = (1, 5, 10, 20),
    strategies: Sequence[str] = ("scratch", "linear_probe", "frozen_head", "fine_tune"),
    seeds: Sequence[int] = (0,),
    image_size: int | None = None,
    epochs: int | Mapping[str, int] | None = None,
    fast: bool = False,
    val_per_class: int | None = None,
    callback: RecordCallback | None = None,
    run_dir: str | Path | None = None,
) -> EfficiencyResult:
    """Test accuracy against labelled examples per class, for each way of using (or not using) pretraining.

    Why: "pretrained features win when labels are scarce" (Yosinski et al. 2014; Kornblith et al. 2019, "Do Better
    ImageNet Models Transfer Better?", CVPR) is a claim about a curve, so this measures the curve. Strategies:
    ``scratch`` (random init, every layer trains, with the :data:`RECIPES` entry that is fair to it: twice the
    epochs, the body at 10x fine-tuning's rate, BatchNorm learning its statistics), ``linear_probe`` (logistic
    regression on the pooled final body stage, C chosen on val, via :func:`tl_lab.features.probe_stages`),
    ``frozen_head`` and ``fine_tune``.
    Every shots value also gets ``raw_pixels`` (:func:`tl_lab.data.baseline`), the floor transfer must beat.
    The test split is the same images at every shots value and seed; the k-shot training set grows by adding
    images (5 shots contain the 1-shot images), so the curves are smooth.

    Args:
        epochs: an int for every trained strategy, a ``{strategy: epochs}`` mapping, or None for the recipes.
        fast: fewer epochs (the recipes' ``fast_epochs``), for CI and ``TL_LAB_FAST=1``.
        callback: called with each record as soon as it is measured (live tables, progress).
        run_dir: keep each run's checkpoints in ``run_dir/<strategy>-<k>shot-seed<s>`` (default: no files).

    Cost: the scratch and fine-tune runs dominate (every layer trains); clipart at ``image_size=64`` is about 4x
    cheaper than at its default 128 px.

    Example::

        >>> r = data_efficiency(dataset="digits", shots=(1, 5), strategies=("frozen_head",), fast=True)
        >>> sorted({(x["strategy"], x["shots"]) for x in r.to_records()})
        [('frozen_head', 1), ('frozen_head', 5), ('raw_pixels', 1), ('raw_pixels', 5)]
    """
    check_choice("strategy", strategies, STRATEGIES)
    if not shots or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in shots):
        raise ValueError(f"shots must be positive ints, e.g. (1, 5, 10, 20); got {shots!r}")
    start = time.perf_counter()
    result = EfficiencyResult("data efficiency", [], 0.0, config={
        "backbone": backbone_name, "dataset": dataset, "shots": sorted(set(shots)), "seeds": list(seeds),
        "image_size": image_size, "fast": fast})
    probe_backbone = load_backbone(backbone_name) if "linear_probe" in strategies else None

    def emit(record: dict) -> None:
        result.records.append(record)
        if callback is not None:
            callback(record)

    for seed in seeds:
        shared: DatasetSplits | None = None
        for k in sorted(set(shots)):
            data = load_dataset(dataset, shots=k, seed=seed, image_size=image_size, val_per_class=val_per_class)
            if shared is not None and _same_images(data, shared):
                data = replace(data, val=shared.val, test=shared.test)  # same images: features are reused
            shared = shared or data
            common = {"dataset": dataset, "backbone": backbone_name, "shots": k, "seed": seed,
                      "n_train": len(data.train), "image_size": data.image_size, "chance": 1 / len(data.classes)}
            t = time.perf_counter()
            base = baseline(data)
            emit({**common, "strategy": "raw_pixels", "test_acc": base["test_acc"], "val_acc": base["val_acc"],
                  "epochs": None, "lr": None, "seconds": time.perf_counter() - t})
            for strategy in strategies:
                t = time.perf_counter()
                if strategy == "linear_probe":
                    probe = probe_stages(probe_backbone, data, [probe_backbone.body_stages[-1]], baseline=False)
                    p = probe.probes[0]
                    emit({**common, "strategy": strategy, "test_acc": p.test_acc, "val_acc": p.val_acc,
                          "epochs": None, "lr": None, "seconds": time.perf_counter() - t})
                    continue
                r = RECIPES[strategy]
                n_epochs = recipe_epochs(strategy, epochs, fast)
                run = train_run(backbone_name, data, r, epochs=n_epochs, seed=seed, run_dir=run_dir,
                                name=f"{strategy}-{k}shot-seed{seed}")
                emit({**common, "strategy": strategy, "test_acc": run.best["test_acc"],
                      "val_acc": run.best["val_acc"], "epochs": n_epochs, "lr": r.lr,
                      "seconds": time.perf_counter() - t})
    result.seconds = time.perf_counter() - start
    return result


def _same_images(a: DatasetSplits, b: DatasetSplits) -> bool:
    """True when ``a`` and ``b`` hold the same val and test images (same pool ids), so they can share tensors."""
    return all(x.ids is not None and y.ids is not None and torch.equal(x.ids, y.ids)
               for x, y in ((a.val, b.val), (a.test, b.test)))


def shots_to_reach(records: Sequence[dict], target_acc: float, *, scale: str = "log") -> dict[str, float | None]:
    """Examples per class each strategy needs for ``target_acc`` test accuracy, read off its measured curve.

    Why: "how many labels does pretraining save?" is the practical question behind a data-efficiency curve.
    Accuracies are averaged over seeds per (strategy, shots); the answer is where the curve first crosses the
    target, interpolated linearly between the two measured shots values around the crossing, in log(shots)
    (``scale="log"``, the default: curves are roughly linear there) or in shots (``scale="linear"``). A strategy
    already at the target at its smallest measured shots gets that value (it may need fewer); one that never
    reaches it gets None (it needs more than was measured).

    Example::

        >>> recs = [{"strategy": "a", "shots": 1, "test_acc": 0.4}, {"strategy": "a", "shots": 10, "test_acc": 0.8}]
        >>> shots_to_reach(recs, 0.6, scale="linear")
        {'a': 5.5}
    """
    if scale not in ("log", "linear"):
        raise ValueError(f"scale must be 'log' or 'linear'; got {scale!r}")
    if not 0.0 <= target_acc <= 1.0:
        raise ValueError(f"target_acc is an accuracy in [0, 1]; got {target_acc!r}")
    warp = math.log if scale == "log" else float
    unwarp = math.exp if scale == "log" else float
    answer: dict[str, float | None] = {}
    for strategy, curve in _curves(records).items():
        answer[strategy] = None
        for i, (k, acc) in enumerate(curve):
            if acc >= target_acc:
                if i == 0:
                    answer[strategy] = float(k)
                else:
                    (k0, a0) = curve[i - 1]
                    frac = (target_acc - a0) / (acc - a0)
                    answer[strategy] = round(unwarp(warp(k0) + frac * (warp(k) - warp(k0))), 2)
                break
    return answer


# ---- freezing sweep ----------------------------------------------------------------------------------------------


def freeze_sweep(
    backbone_name: str = "efficientnet_lite0",
    dataset: str = "digits",
    *,
    shots: int | None = 10,
    stages: Sequence[str | None] | None = None,
    inits: Sequence[str] = ("pretrained", "random"),
    seed: int = 0,
    image_size: int | None = None,
    epochs: int | Mapping[str, int] | None = None,
    fast: bool = False,
    val_per_class: int | None = None,
    callback: RecordCallback | None = None,
    run_dir: str | Path | None = None,
) -> ExperimentResult:
    """Test accuracy as more and more stages are frozen, for pretrained and for random-init weights.

    Why: Yosinski et al. 2014 ("How transferable are features in deep neural networks?", NeurIPS, Fig. 2) froze
    the first n layers of a network trained elsewhere and trained the rest: fine-tuning everything beat training on
    the target alone, and freezing deep layers lost accuracy because those features are specific to the source
    task. Frozen *random* layers (their Fig. 4) show how much of that is the pretrained weights and how much the
    architecture. Here ``trainable_from`` runs from None (everything trains) to ``"head"`` (a linear classifier on
    frozen features).

    Recipes: pretrained runs train the unfrozen body at 0.1x the head's rate with BatchNorm statistics fixed (the
    ``fine_tune`` recipe); random-init runs use the ``scratch`` recipe (BatchNorm learns its statistics in the
    trainable stages; frozen random stages keep their initial ones); head-only runs use the ``frozen_head`` recipe.
    Frozen random Lite0 stages shrink activations about 10x per stage (measured: 1e-9 after conv_head), so deep
    frozen random features are near chance; re-estimating their BatchNorm statistics on the training images first
    barely helps (10-shot digits, head only: 0.14 instead of 0.10), so this sweep does not.

    Args:
        stages: the ``trainable_from`` values to try (None = fine-tune all); default every stage, or every other
            stage with ``fast=True``.
        inits: ``"pretrained"`` and/or ``"random"``.
        epochs: an int, a mapping keyed by recipe (``"fine_tune"``, ``"scratch"``, ``"frozen_head"``), or None.

    Records: frozen_stages, trainable_from, plan (its label), init, test_acc, val_acc, trainable_params, epochs,
    lr, seconds.

    Example::

        >>> r = freeze_sweep(stages=(None, "stage5", "head"), inits=("pretrained",), fast=True)
        >>> [x["trainable_params"] for x in r.to_records()]     # falls as stages freeze
        [3383818, 3129834, 12810]
    """
    check_choice("init", inits, ("pretrained", "random"))
    all_stages = get_spec(backbone_name).stages
    head = all_stages[-1]
    if stages is None:
        body = all_stages[1:-1]
        stages = (None, *(body[::2] if fast else body), head)
    bad = [s for s in stages if s is not None and s not in all_stages]
    if bad:
        raise ValueError(f"unknown stage(s) {bad} for {backbone_name}; choose None (train all) or from: "
                         f"{', '.join(all_stages)}")
    order = sorted(dict.fromkeys(stages), key=lambda s: 0 if s is None else all_stages.index(s))
    start = time.perf_counter()
    data = load_dataset(dataset, shots=shots, seed=seed, image_size=image_size, val_per_class=val_per_class)
    records: Records = []
    for init in inits:
        for trainable_from in order:
            if trainable_from == head:
                key, plan = "frozen_head", FreezePlan.frozen_head()
            elif init == "pretrained":
                key, plan = "fine_tune", FreezePlan(trainable_from=trainable_from, bn="eval", lr_mult={"body": 0.1})
            else:
                key, plan = "scratch", FreezePlan(trainable_from=trainable_from, bn="frozen")
            recipe = replace(RECIPES[key], plan=plan, pretrained=init == "pretrained")
            n_epochs, lr = recipe_epochs(key, epochs, fast), recipe.lr
            t = time.perf_counter()
            run = train_run(backbone_name, data, recipe, epochs=n_epochs, seed=seed, run_dir=run_dir,
                            name=f"{init}-from-{trainable_from or 'all'}")
            record = {
                "frozen_stages": 0 if trainable_from is None else all_stages.index(trainable_from),
                "trainable_from": trainable_from, "plan": FreezePlan(trainable_from=trainable_from).describe(),
                "init": init, "test_acc": run.best["test_acc"],
                "val_acc": run.best["val_acc"], "trainable_params": run.trainable_parameters, "epochs": n_epochs,
                "lr": lr, "seconds": time.perf_counter() - t, "dataset": dataset, "shots": shots,
                "backbone": backbone_name,
            }
            records.append(record)
            if callback is not None:
                callback(record)
    config = {"backbone": backbone_name, "dataset": dataset, "shots": shots, "seed": seed,
              "image_size": data.image_size, "fast": fast}
    notes = [f"raw pixels: {baseline(data)['test_acc']:.3f}; chance: {1 / len(data.classes):.3f}"]
    return ExperimentResult("freeze sweep", records, time.perf_counter() - start, config, notes,
                            ("frozen_stages", "plan", "init", "test_acc", "trainable_params", "seconds"))


_SHIFT_EXPERIMENTS = ("forgetting", "domain_shift", "negative_transfer")


def __getattr__(name: str) -> Any:
    """``tl_lab.experiments.forgetting`` etc.: the experiments in :mod:`tl_lab.shift`, imported on first use
    (shift.py builds on this module, so it cannot be imported at the top)."""
    if name in _SHIFT_EXPERIMENTS:
        from tl_lab import shift

        return getattr(shift, name)
    raise AttributeError(f"module 'tl_lab.experiments' has no attribute {name!r}")
