"""Catastrophic forgetting: how much of the ImageNet task survives fine-tuning, and freezing as the remedy."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Unpack

import torch

from tl_lab._checks import check_choice
from tl_lab.backbones.registry import Backbone, load_backbone
from tl_lab.data.datasets import load_dataset
from tl_lab.experiments.options import ExperimentOptions, Options
from tl_lab.experiments.results import ExperimentResult
from tl_lab.inside.old_task import PHOTOS, old_task_agreement, photo_images, reattach_head
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit
from tl_lab.training.recipes import (
    RECIPES,
    Recipe,
    RecordCallback,
    Records,
    recipe_epochs,
    train_run,
)
from tl_lab.training.retention import Retain

__all__ = ["forgetting", "reattach_head"]  # reattach_head lives in tl_lab.inside.old_task; kept importable here

# ---- catastrophic forgetting -------------------------------------------------------------------------------------


def forgetting(
    backbone_name: str = "efficientnet_lite0",
    dataset: str = "clipart",
    *,
    plans: Sequence[str | FreezePlan] = ("frozen_head", "fine_tune"),
    shots: int | None = 10,
    photos: bool = True,
    remedies: Sequence[str | Retain] = (),
    **options: Unpack[ExperimentOptions],
) -> ExperimentResult:
    """How much of the original ImageNet task survives training on a new task (task B).

    Why: a network trained on a new task loses the old one, catastrophic forgetting (McCloskey & Cohen 1989;
    Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks", PNAS). With no ImageNet
    images offline, task A is measured as agreement with the pretrained model itself: the original 1000-class head
    is put back on the body after task-B training, and its predictions are compared with the untouched model's on
    images task B never trained on (the sample photos at the backbone's input size, and the task-B test images).
    A frozen body must agree 100%; fine-tuning moves the body and some predictions change.

    Args:
        options: seed, image_size, epochs, fast, val_per_class, callback, run_dir
            (:class:`~tl_lab.experiments.options.Options`).
        plans: ``"frozen_head"``, ``"fine_tune"`` (the :data:`RECIPES`) or FreezePlans (lr 3e-3; fine-tune epochs,
            or frozen-head epochs for a head-only plan).
        photos: include :func:`tl_lab.backbones.samples.sample_photos` (the shipped sample photos).
        remedies: forgetting remedies to try on top of full fine-tuning (the ``fine_tune`` recipe plus a loss
            term, :mod:`tl_lab.training.retention`): ``"lwf"``, ``"ewc"``, ``"l2sp"`` (default strengths) or
            :class:`~tl_lab.training.retention.Retain` objects (several strengths of one method: a trade-off curve).

    Records (one per plan or remedy and image set): plan, remedy (``"none"`` for the plans; e.g. ``"lwf 1"``), images, n_images, top1_agreement, kl_mean (KL(original || after),
    nats), p_top_before / p_top_after (mean probability of the original top class), body_change (relative L2
    change of the body's weights), task_b_test_acc, seconds.

    Example::

        >>> r = forgetting(dataset="clipart", image_size=64, fast=True)   # doctest: +SKIP
        >>> {(x["plan"], x["images"]): round(x["top1_agreement"], 2) for x in r.to_records()}  # doctest: +SKIP
        {('frozen_head', 'sample photos'): 1.0, ('frozen_head', 'clipart test'): 1.0, ('fine_tune', 'sample photos'): 0.5, ('fine_tune', 'clipart test'): 0.14}

    (Measured in 20 s on a 2-core CPU: the frozen network keeps every ImageNet answer, fine-tuning moves most.)
    """
    o = Options.of("forgetting", options)
    start = time.perf_counter()
    reference = load_backbone(backbone_name)
    if reference.meta.get("categories") is None:
        raise ValueError(f"{backbone_name} has no ImageNet head to compare; use a backbone with ImageNet weights")
    data = load_dataset(dataset, shots=shots, seed=o.seed, image_size=o.image_size, val_per_class=o.val_per_class)
    probe_sets: dict[str, torch.Tensor] = {}  # uint8 images; the original network's probabilities are cached
    if photos:
        probe_sets[PHOTOS] = photo_images(reference)
    probe_sets[f"{dataset} test"] = data.test.images
    retains = [r if isinstance(r, Retain) else Retain(r) for r in remedies]  # bad names fail before any training
    records: Records = []
    for plan in plans:
        label, recipe, n_epochs = _forgetting_recipe(plan, o.epochs, o.fast, reference.head)
        t = time.perf_counter()
        run = train_run(backbone_name, data, recipe, epochs=n_epochs, seed=o.seed, run_dir=o.run_dir,
                        name=f"forgetting-{label}")
        _measure((label, "none", run, n_epochs, t), reference, probe_sets, records, o.callback, dataset,
                 backbone_name)
    for retain in retains:
        recipe, n_epochs = RECIPES["fine_tune"], o.epochs_for("fine_tune")
        t = time.perf_counter()
        name = f"forgetting-fine_tune-{retain.label().replace(' ', '_')}"
        run = fit(backbone_name, data, plan=recipe.plan, epochs=n_epochs, lr=recipe.lr, seed=o.seed, progress=False,
                  **o.files(name),
                  retain=[retain])
        _measure(("fine_tune", retain.label(), run, n_epochs, t), reference, probe_sets, records, o.callback,
                 dataset, backbone_name)
    config = {"backbone": backbone_name, "dataset": dataset, "shots": shots, "seed": o.seed,
              "image_size": data.image_size, "fast": o.fast}
    return ExperimentResult("forgetting", records, time.perf_counter() - start, config, [],
                            ("plan", "remedy", "images", "top1_agreement", "kl_mean", "p_top_before", "p_top_after",
                             "body_change", "task_b_test_acc"))


def _measure(finished: tuple, reference: Backbone, probe_sets: dict, records: Records,
             callback: RecordCallback | None, dataset: str, backbone_name: str) -> None:
    """Old-task agreement of a finished run (:func:`~tl_lab.inside.old_task.old_task_agreement`), one record per
    image set."""
    label, remedy, run, n_epochs, t = finished
    for name, kept in old_task_agreement(run.backbone, probe_sets, reference=reference).items():
        record = {
            "plan": label, "remedy": remedy, "images": name, **kept, "task_b_test_acc": run.best["test_acc"],
            "epochs": n_epochs, "seconds": time.perf_counter() - t, "dataset": dataset, "backbone": backbone_name,
        }
        records.append(record)
        if callback is not None:
            callback(record)


def _forgetting_recipe(plan: str | FreezePlan, epochs, fast: bool, head: str) -> tuple[str, Recipe, int]:
    if isinstance(plan, str):
        check_choice("plan", [plan], ("frozen_head", "fine_tune"))
        return plan, RECIPES[plan], recipe_epochs(plan, epochs, fast)
    key = "frozen_head" if plan.trainable_from == head else "fine_tune"
    return plan.describe(), replace(RECIPES[key], plan=plan), recipe_epochs(key, epochs, fast)
