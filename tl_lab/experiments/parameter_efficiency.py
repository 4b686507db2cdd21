"""Parameter efficiency: test accuracy against the number of parameters that train, per fine-tuning method.

Why: full fine-tuning changes every weight (3.4 M for EfficientNet-Lite0) and stores a whole model per task.
Parameter-efficient methods change a small, chosen part: BatchNorm's scale and shift (Frankle et al. 2021), the
biases (BitFit, Ben Zaken et al. 2022) or low-rank updates of the convolutions (LoRA, Hu et al. 2022). This experiment
puts them on one axis with the linear probe (only the head), the last stages, full fine-tuning, training from
scratch and raw pixels, so a learner sees what each extra parameter buys on a near task (clip art) and a far one
(digits).

Recipes: the linear probe, the last stages and full fine-tuning are tl_lab's measured recipes (``frozen_head``,
``fine_tune``: body at 0.1x the head's rate, BatchNorm statistics fixed); norm, bias and LoRA train their few
body parameters at the head's rate (3e-3; they move the network less per step, so the usual 0.1x body factor
starves them; not tuned further here), all with BatchNorm statistics fixed, as many epochs as ``fine_tune``.

Example::

    >>> r = parameter_efficiency(datasets=("digits",), image_size=32, fast=True)  # doctest: +SKIP
    >>> {x["method"]: x["trainable"] for x in r.to_records()}["bias only"]  # doctest: +SKIP
    33818

Measured (10 shots, seed 0, Lite0, full recipes; test accuracy): clip art: linear probe 0.660, norm only 0.706,
bias only 0.699, LoRA r=2 0.654, LoRA r=16 0.712, last stages 0.673, full fine-tune 0.621, scratch 0.333, raw pixels
0.301; digits: 0.807, 0.840, 0.774, 0.853, 0.874, 0.800, 0.904, 0.842, raw pixels 0.872. One seed: differences of a
few points are within run-to-run noise.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Unpack

from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import load_dataset
from tl_lab.experiments.options import ExperimentOptions, Options
from tl_lab.experiments.results import ExperimentResult
from tl_lab.training.freeze import BODY, FreezePlan
from tl_lab.training.recipes import (
    RECIPES,
    Records,
    train_run,
)

__all__ = ["parameter_efficiency", "efficiency_methods"]


def efficiency_methods(lora_ranks: Sequence[int] = (2, 16), last_stages: str = "stage7") -> dict[str, tuple[str, FreezePlan]]:
    """The methods compared, ``{label: (recipe key, plan)}``, from fewest to most trainable parameters."""
    peft = {"bn": "eval", "lr_mult": {BODY: 1.0}}
    methods = {"linear probe": ("frozen_head", FreezePlan.frozen_head()),
               "norm only": ("fine_tune", FreezePlan(None, params="norm", **peft)),
               "bias only": ("fine_tune", FreezePlan(None, params="bias", **peft))}
    for r in lora_ranks:
        methods[f"LoRA r={r}"] = ("fine_tune", FreezePlan(None, params="lora", lora_rank=r, **peft))
    methods["last stages"] = ("fine_tune", FreezePlan(last_stages, bn="eval", lr_mult={BODY: 0.1}))
    methods["full fine-tune"] = ("fine_tune", FreezePlan.fine_tune())
    methods["scratch"] = ("scratch", RECIPES["scratch"].plan)
    return methods


def parameter_efficiency(
    backbone_name: str = "efficientnet_lite0",
    datasets: Sequence[str] = ("clipart", "digits"),
    *,
    shots: int | None = 10,
    lora_ranks: Sequence[int] = (2, 16),
    **options: Unpack[ExperimentOptions],
) -> ExperimentResult:
    """Train each method of :func:`efficiency_methods` on each dataset; one record per (dataset, method).

    ``options``: seed, image_size, epochs, fast, val_per_class, callback, run_dir
    (:class:`~tl_lab.experiments.options.Options`); ``epochs`` is an int for every method, a mapping keyed by recipe
    (``"frozen_head"``, ``"fine_tune"``, ``"scratch"``), or None for the recipes' own (the linear probe trains 100
    cheap epochs on cached features).

    Records: ``dataset``, ``method``, ``trainable`` (exact count, the plan's summary; raw pixels: the logistic
    regression's weights), ``test_acc``, ``seconds``, ``epochs``. Raw pixels (``tl_lab.baseline``) come as a
    ``method="raw pixels"`` record per dataset.
    """
    o = Options.of("parameter_efficiency", options)
    methods = efficiency_methods(lora_ranks)
    start = time.perf_counter()
    records: Records = []
    notes = []
    for dataset in datasets:
        data = load_dataset(dataset, shots=shots, seed=o.seed, image_size=o.image_size, val_per_class=o.val_per_class)
        base = baseline(data)
        pixels = 3 * data.image_size**2
        rows = [{"dataset": dataset, "method": "raw pixels", "trainable": (pixels + 1) * len(data.classes),
                 "test_acc": base["test_acc"], "seconds": base["seconds"], "epochs": 0}]
        for label, (key, plan) in methods.items():
            n_epochs = o.epochs_for(key)
            recipe = replace(RECIPES[key], plan=plan)
            t = time.perf_counter()
            run = train_run(backbone_name, data, recipe, epochs=n_epochs, seed=o.seed, run_dir=o.run_dir,
                            name=f"{dataset}-{label.replace(' ', '_').replace('=', '')}")
            rows.append({"dataset": dataset, "method": label, "trainable": run.trainable_parameters,
                         "test_acc": run.best["test_acc"], "seconds": time.perf_counter() - t, "epochs": n_epochs})
        for row in rows:
            o.emit(records, row)
        notes.append(f"{dataset}: raw pixels {base['test_acc']:.3f}; chance {1 / len(data.classes):.3f}")
    config = {"backbone": backbone_name, "datasets": list(datasets), "shots": shots, "seed": o.seed,
              "lora_ranks": list(lora_ranks), "fast": o.fast}
    return ExperimentResult("parameter efficiency", records, time.perf_counter() - start, config, notes,
                            ("dataset", "method", "trainable", "test_acc", "seconds"))
