"""Freezing depth sweep (Yosinski et al. 2014): accuracy as the frozen prefix grows, pretrained and random init."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Unpack

from tl_lab._checks import check_choice
from tl_lab.backbones.registry import get_spec
from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import load_dataset
from tl_lab.experiments.options import ExperimentOptions, Options
from tl_lab.experiments.results import ExperimentResult
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.recipes import (
    RECIPES,
    Records,
    train_run,
)


def freeze_sweep(
    backbone_name: str = "efficientnet_lite0",
    dataset: str = "digits",
    *,
    shots: int | None = 10,
    stages: Sequence[str | None] | None = None,
    inits: Sequence[str] = ("pretrained", "random"),
    **options: Unpack[ExperimentOptions],
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
        options: seed, image_size, epochs, fast, val_per_class, callback, run_dir
            (:class:`~tl_lab.experiments.options.Options`; ``epochs`` also takes a ``{recipe: epochs}`` mapping).

    Records: frozen_stages, trainable_from, plan (its label), init, test_acc, val_acc, trainable_params, epochs,
    lr, seconds.

    Example::

        >>> r = freeze_sweep(stages=(None, "stage5", "head"), inits=("pretrained",), fast=True)  # doctest: +SKIP
        >>> [x["trainable_params"] for x in r.to_records()]     # falls as stages freeze  # doctest: +SKIP
        [3383818, 3129834, 12810]
    """
    o = Options.of("freeze_sweep", options)
    check_choice("init", inits, ("pretrained", "random"))
    all_stages = get_spec(backbone_name).stages
    head = all_stages[-1]
    if stages is None:
        body = all_stages[1:-1]
        stages = (None, *(body[::2] if o.fast else body), head)
    bad = [s for s in stages if s is not None and s not in all_stages]
    if bad:
        raise ValueError(f"unknown stage(s) {bad} for {backbone_name}; choose None (train all) or from: "
                         f"{', '.join(all_stages)}")
    order = sorted(dict.fromkeys(stages), key=lambda s: 0 if s is None else all_stages.index(s))
    start = time.perf_counter()
    data = load_dataset(dataset, shots=shots, seed=o.seed, image_size=o.image_size, val_per_class=o.val_per_class)
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
            n_epochs, lr = o.epochs_for(key), recipe.lr
            t = time.perf_counter()
            run = train_run(backbone_name, data, recipe, epochs=n_epochs, seed=o.seed, run_dir=o.run_dir,
                            name=f"{init}-from-{trainable_from or 'all'}")
            record = {
                "frozen_stages": 0 if trainable_from is None else all_stages.index(trainable_from),
                "trainable_from": trainable_from, "plan": FreezePlan(trainable_from=trainable_from).describe(),
                "init": init, "test_acc": run.best["test_acc"],
                "val_acc": run.best["val_acc"], "trainable_params": run.trainable_parameters, "epochs": n_epochs,
                "lr": lr, "seconds": time.perf_counter() - t, "dataset": dataset, "shots": shots,
                "backbone": backbone_name,
            }
            o.emit(records, record)
    config = {"backbone": backbone_name, "dataset": dataset, "shots": shots, "seed": o.seed,
              "image_size": data.image_size, "fast": o.fast}
    notes = [f"raw pixels: {baseline(data)['test_acc']:.3f}; chance: {1 / len(data.classes):.3f}"]
    return ExperimentResult("freeze sweep", records, time.perf_counter() - start, config, notes,
                            ("frozen_stages", "plan", "init", "test_acc", "trainable_params", "seconds"))
