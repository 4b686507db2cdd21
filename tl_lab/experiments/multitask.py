"""Multi-task learning measured: one body shared by several tasks against one network per task.

Why: Caruana (1997) found that tasks trained together on a shared body can each be learned better than alone,
because each task's labels shape features the others use; Standley et al. (2020) found task pairs that hurt each
other. This experiment trains, on the *same* images, one model per task (``training="single"``) and one shared body
with a head per task (``training="shared"``, :func:`tl_lab.fit` with ``tasks=``), from pretrained weights and from
scratch, at a few shot counts, beside the raw-pixel baseline, and says for each task where sharing helped, where it
hurt and where the difference is within noise.

The data: ``load_dataset("shapes")`` has three label sets on every image (:func:`tl_lab.data.procedural.
shape_targets`): the object's shape, the quadrant it sits in, and its strongest colour channel. ``shots`` counts
images per *shape* class; the other tasks use the labels those same images carry.

"Within noise": the difference of two accuracies on the same ``n`` test images counts as help or harm only when it
exceeds twice the binomial standard error of a difference, ``2 * sqrt(2 p (1 - p) / n)`` with ``p`` their mean (one
seed; about 0.08 at p = 0.5 and n = 270).

Measured (the defaults: Lite0, 64 px, seed 0, 270 test images; 301 s on a 2-core CPU). At 40 images per shape
class, test accuracy for shape / position / colour: raw pixels .093 / .241 / .585; pretrained single .811 / .326 /
.419, shared .652 / .348 / .352; scratch single .159 / .489 / .441, shared .196 / .485 / .470. Sharing hurt the
pretrained shape task (-0.159, beyond the noise of 0.076); every other difference, and all at 10 shots, was within
noise. Pretrained features serve shape, not position or colour (ImageNet training pools them away): a network
trained from scratch learns position better, and raw pixels are best at colour.

Example::

    >>> r = multitask(shots=(10,), fast=True)              # doctest: +SKIP
    >>> r.summary()                                        # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Unpack

from tl_lab._checks import check_choice
from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import load_dataset
from tl_lab.experiments.options import ExperimentOptions, Options
from tl_lab.experiments.results import ExperimentResult
from tl_lab.training.loop import fit
from tl_lab.training.recipes import RECIPES, Records

__all__ = ["multitask", "sharing_effects"]

INITS = {"fine_tune": "pretrained", "scratch": "scratch"}


def multitask(
    backbone_name: str = "efficientnet_lite0",
    tasks: Sequence[str] = ("shape", "position", "colour"),
    *,
    shots: Sequence[int | None] = (10, 40),
    recipes: Sequence[str] = ("fine_tune", "scratch"),
    **options: Unpack[ExperimentOptions],
) -> ExperimentResult:
    """Single-task models against one shared body, per task and shot count, from each start in ``recipes``.

    Args:
        tasks: label sets of ``load_dataset("shapes")`` (``shape``, ``position``, ``colour``), two or more.
        shots: training images per shape class, one sweep point each (the other tasks' labels on the same images).
        recipes: ``"fine_tune"`` (pretrained, the whole body at 0.1x the head's rate) and/or ``"scratch"`` (random
            start, everything trainable): the named recipes of :mod:`tl_lab.training.recipes`, unchanged.
        options: seed, image_size, epochs, fast, val_per_class, callback, run_dir
            (:class:`~tl_lab.experiments.options.Options`).

    Records (one per task, training and start, at each shot count): ``task``, ``training`` (``"single"``,
    ``"shared"`` or ``"raw pixels"``), ``init`` (``"pretrained"``, ``"scratch"``, or ``"-"`` for raw pixels),
    ``method`` (init and training in words), ``shots``, ``test_acc``, ``chance``, ``n_test``, ``seconds`` (a shared
    run's time is on each of its tasks' rows), ``epochs``, ``trainable``.
    """
    o = Options.of("multitask", options)
    tasks = tuple(tasks)
    check_choice("recipes", recipes, tuple(INITS))
    if len(tasks) < 2:
        raise ValueError(f"multitask compares sharing a body with not sharing it: give two or more tasks; got {tasks}")
    start = time.perf_counter()
    records: Records = []
    for k in shots:
        data = load_dataset("shapes", shots=k, seed=o.seed, image_size=o.image_size,
                            val_per_class=o.val_per_class)  # stratified by shape
        relabelled = {task: data.with_target(task) for task in tasks}  # the same images, one label set each
        for task, d in relabelled.items():
            base = baseline(d)
            o.emit(records, _row(task, "raw pixels", "-", k, base["test_acc"], d, base["seconds"], 0, None))
        for key in recipes:
            recipe, n_epochs, init = RECIPES[key], o.epochs_for(key), INITS[key]
            for task, d in relabelled.items():
                t = time.perf_counter()
                run = fit(backbone_name, d, plan=recipe.plan, epochs=n_epochs, lr=recipe.lr, seed=o.seed,
                          pretrained=recipe.pretrained, progress=False, **o.files(f"{k}-{init}-{task}"))
                o.emit(records, _row(task, "single", init, k, run.best["test_acc"], d, time.perf_counter() - t,
                                     n_epochs, run.trainable_parameters))
            t = time.perf_counter()
            run = fit(backbone_name, data, tasks=tasks, plan=recipe.plan, epochs=n_epochs, lr=recipe.lr, seed=o.seed,
                      pretrained=recipe.pretrained, progress=False, **o.files(f"{k}-{init}-shared"))
            seconds = time.perf_counter() - t
            for task in tasks:
                o.emit(records, _row(task, "shared", init, k, run.best[f"test_acc_{task}"], relabelled[task],
                                     seconds, n_epochs, run.trainable_parameters))
    notes = [_effect_note(e) for e in sharing_effects(records)]
    config = {"backbone": backbone_name, "dataset": "shapes", "tasks": list(tasks), "shots": list(shots),
              "recipes": list(recipes), "seed": o.seed, "fast": o.fast}
    return ExperimentResult("multi-task", records, time.perf_counter() - start, config, notes,
                            ("shots", "task", "method", "test_acc", "chance", "seconds"),
                            pivot=(("shots", "task"), "method"))


def sharing_effects(records: Sequence[Mapping]) -> list[dict]:
    """Per (shots, init, task): single and shared test accuracy, their difference, and a verdict.

    ``verdict`` is ``"helped"`` / ``"hurt"`` when ``|shared - single|`` exceeds ``2 * sqrt(2 p (1 - p) / n)``
    (``p`` the two accuracies' mean, ``n`` the test images), else ``"within noise"``.
    """
    single = {(r["shots"], r["init"], r["task"]): r for r in records if r["training"] == "single"}
    out = []
    for r in records:
        if r["training"] != "shared":
            continue
        s = single.get((r["shots"], r["init"], r["task"]))
        if s is None:
            continue
        p, n = (r["test_acc"] + s["test_acc"]) / 2, r["n_test"]
        noise = 2 * math.sqrt(2 * p * (1 - p) / n) if n else float("inf")
        change = r["test_acc"] - s["test_acc"]
        verdict = "helped" if change > noise else "hurt" if change < -noise else "within noise"
        out.append({"shots": r["shots"], "init": r["init"], "task": r["task"], "single": s["test_acc"],
                    "shared": r["test_acc"], "change": change, "noise": noise, "verdict": verdict})
    return out


def _row(task: str, training: str, init: str, shots: int | None, acc: float, data, seconds: float, epochs: int,
         trainable: int | None) -> dict:
    method = "raw pixels" if training == "raw pixels" else f"{init}, {training}"
    return {"task": task, "training": training, "init": init, "method": method, "shots": shots,
            "test_acc": float(acc), "chance": 1 / len(data.classes), "n_test": len(data.test), "seconds": seconds,
            "epochs": epochs, "trainable": trainable}


def _effect_note(e: dict) -> str:
    return (f"{e['shots']} shots, {e['init']}, {e['task']}: shared {e['shared']:.3f} vs single {e['single']:.3f} "
            f"({e['change']:+.3f}, noise +/-{e['noise']:.3f}): {e['verdict']}")
