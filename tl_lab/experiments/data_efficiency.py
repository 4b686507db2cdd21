"""Data efficiency: test accuracy against labelled examples per class, for every strategy beside raw pixels."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Unpack

import torch

from tl_lab._checks import check_choice
from tl_lab.backbones.registry import load_backbone
from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import DatasetSplits, load_dataset
from tl_lab.experiments.options import ExperimentOptions, Options
from tl_lab.experiments.results import ExperimentResult, _curves
from tl_lab.inside.probes import probe_stages
from tl_lab.inside.prototypes import nearest_mean
from tl_lab.inside.zero_shot import zero_shot
from tl_lab.training.recipes import (
    RECIPES,
    STRATEGIES,
    train_run,
)


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


# strategies that train nothing, beside the trained ones of tl_lab.training.recipes
UNTRAINED = ("prototypes", "zero_shot")

# ---- data efficiency ---------------------------------------------------------------------------------------------


def data_efficiency(
    backbone_name: str = "efficientnet_lite0",
    dataset: str = "digits",
    *,
    shots: Sequence[int] = (1, 5, 10, 20),
    strategies: Sequence[str] = ("scratch", "linear_probe", "frozen_head", "fine_tune"),
    seeds: Sequence[int] = (0,),
    class_map: Mapping[str, str | Sequence[str]] | None = None,
    prototype_stage: str | None = None,
    **options: Unpack[ExperimentOptions],
) -> EfficiencyResult:
    """Test accuracy against labelled examples per class, for each way of using (or not using) pretraining.

    Why: "pretrained features win when labels are scarce" (Yosinski et al. 2014; Kornblith et al. 2019, "Do Better
    ImageNet Models Transfer Better?", CVPR) is a claim about a curve, so this measures the curve. Strategies:
    ``scratch`` (random init, every layer trains, with the :data:`RECIPES` entry that is fair to it: twice the
    epochs, the body at 10x fine-tuning's rate, BatchNorm learning its statistics), ``linear_probe`` (logistic
    regression on the pooled final body stage, C chosen on val, via :func:`tl_lab.inside.probe_stages`),
    ``frozen_head`` and ``fine_tune``; and two that train nothing: ``prototypes`` (the nearest class mean on
    pooled features, SimpleShot's CL2N, :func:`tl_lab.inside.prototypes.nearest_mean`; ``prototype_stage``
    defaults to the last body stage) and ``zero_shot`` (no labelled image at all: the pretrained ImageNet head
    through WordNet, :func:`tl_lab.inside.zero_shot.zero_shot` with ``class_map``), recorded once per seed at
    ``shots=0``. Zero-shot needs class names WordNet can map (clip art with a term for ``electronics``, a
    learner's folder of objects); on digits it raises, since no ImageNet class is a digit.
    Every shots value also gets ``raw_pixels`` (:func:`tl_lab.data.baseline`), the floor transfer must beat.
    The test split is the same images at every shots value and seed; the k-shot training set grows by adding
    images (5 shots contain the 1-shot images), so the curves are smooth.

    Args:
        seeds: one run per seed at every point; the curve is their mean.
        options: image_size, epochs (an int, a ``{strategy: epochs}`` mapping, or None for the recipes), fast,
            val_per_class, callback, run_dir (files under ``run_dir/<strategy>-<k>shot-seed<s>``): see
            :class:`~tl_lab.experiments.options.Options`; ``seeds`` replaces ``seed``.

    Cost: the scratch and fine-tune runs dominate (every layer trains); clipart at ``image_size=64`` is about 4x
    cheaper than at its default 128 px.

    Example::

        >>> r = data_efficiency(dataset="digits", shots=(1, 5), strategies=("frozen_head",), fast=True)
        >>> sorted({(x["strategy"], x["shots"]) for x in r.to_records()})
        [('frozen_head', 1), ('frozen_head', 5), ('raw_pixels', 1), ('raw_pixels', 5)]
    """
    if "seed" in options:
        raise TypeError("data_efficiency() takes seeds=(0, 1, ...) (each curve point is the mean over seeds), not seed=")
    o = Options.of("data_efficiency", options)
    check_choice("strategy", strategies, (*STRATEGIES, *UNTRAINED))
    if not shots or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in shots):
        raise ValueError(f"shots must be positive ints, e.g. (1, 5, 10, 20); got {shots!r}")
    start = time.perf_counter()
    result = EfficiencyResult("data efficiency", [], 0.0, config={
        "backbone": backbone_name, "dataset": dataset, "shots": sorted(set(shots)), "seeds": list(seeds),
        "image_size": o.image_size, "fast": o.fast})
    needs_pretrained = {"linear_probe", "prototypes", "zero_shot"} & set(strategies)
    probe_backbone = load_backbone(backbone_name) if needs_pretrained else None

    def emit(record: dict) -> None:
        o.emit(result.records, record)

    for seed in seeds:
        shared: DatasetSplits | None = None
        for k in sorted(set(shots)):
            data = load_dataset(dataset, shots=k, seed=seed, image_size=o.image_size, val_per_class=o.val_per_class)
            if shared is not None and _same_images(data, shared):
                data = replace(data, val=shared.val, test=shared.test)  # same images: features are reused
            shared = shared or data
            if "zero_shot" in strategies and k == min(shots):  # 0 labels: the same for every shots value
                t = time.perf_counter()
                zs = zero_shot(probe_backbone, data, class_map)
                emit({"dataset": dataset, "backbone": backbone_name, "shots": 0, "seed": seed, "n_train": 0,
                      "image_size": data.image_size, "chance": 1 / len(data.classes), "strategy": "zero_shot",
                      "test_acc": zs.test_acc, "val_acc": None, "epochs": None, "lr": None,
                      "seconds": time.perf_counter() - t})
            common = {"dataset": dataset, "backbone": backbone_name, "shots": k, "seed": seed,
                      "n_train": len(data.train), "image_size": data.image_size, "chance": 1 / len(data.classes)}
            t = time.perf_counter()
            base = baseline(data)
            emit({**common, "strategy": "raw_pixels", "test_acc": base["test_acc"], "val_acc": base["val_acc"],
                  "epochs": None, "lr": None, "seconds": time.perf_counter() - t})
            for strategy in strategies:
                t = time.perf_counter()
                if strategy == "zero_shot":
                    continue
                if strategy == "prototypes":
                    nm = nearest_mean(probe_backbone, data, prototype_stage)
                    emit({**common, "strategy": strategy, "test_acc": nm.test_acc, "val_acc": nm.val_acc,
                          "epochs": None, "lr": None, "seconds": time.perf_counter() - t})
                    continue
                if strategy == "linear_probe":
                    probe = probe_stages(probe_backbone, data, [probe_backbone.body_stages[-1]], baseline=False)
                    p = probe.probes[0]
                    emit({**common, "strategy": strategy, "test_acc": p.test_acc, "val_acc": p.val_acc,
                          "epochs": None, "lr": None, "seconds": time.perf_counter() - t})
                    continue
                r = RECIPES[strategy]
                n_epochs = o.epochs_for(strategy)
                run = train_run(backbone_name, data, r, epochs=n_epochs, seed=seed, run_dir=o.run_dir,
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
