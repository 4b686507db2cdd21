"""Lesson 11's DANN reference numbers, re-measured over seeds: which checkpoint should domain confusion keep?

For each seed and shift, the protocol of ``tl_lab.domain_shift`` (10-shot digits at 32 px, 200 unlabelled shifted
images, the ``fine_tune`` recipe's full 20 epochs): the source-only ``fine_tune`` run and the same run with domain
confusion (``fit(..., adapt_to=pool)``). An ``EpochEnd`` callback measures the target (shifted) test accuracy of the
current weights after every epoch (eval mode, train mode restored, the torch RNG state restored so the run trains
exactly as without the callback). One run therefore gives both checkpoint choices:

- ``best_val``: the epoch the loop keeps today (``keep_if_best``: best *source* validation accuracy);
- ``last``: the network after the last epoch (the DANN paper's choice with a fixed schedule).

Run (2 shared cores: one thread, niced, in the background)::

    PYTHONPATH=$PWD nice -n 19 python notebooks/references/dann_seeds.py inverted,blended > /tmp/dann_seeds.log 2>&1 &

Writes ``notebooks/references/dann_seeds.json`` after every run (a partial file is still readable).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from tl_lab.backbones.registry import load_backbone
from tl_lab.data.datasets import load_dataset
from tl_lab.data.shifts import shift_data, unlabelled_target
from tl_lab.training.events import EpochEnd
from tl_lab.training.loop import fit
from tl_lab.training.recipes import RECIPES
from tl_lab.training.run import evaluate_model

OUT = Path(__file__).with_name("dann_seeds.json")
SEEDS = (0, 1, 2)
SHIFTS = tuple(sys.argv[1].split(",")) if len(sys.argv) > 1 else ("inverted", "blended")  # the lesson's
NOTES = ["best_val_epoch counts from 1: the kept weights are target_acc_per_epoch[best_val_epoch - 1]",
         "target_acc_best_val: the checkpoint fit keeps (keep_if_best: best source validation accuracy); "
         "target_acc_last: the network after the last epoch (the choice a fixed schedule makes)",
         "target accuracy is on the shifted test split; no target label chose anything in training",
         "measured on a shared 2-core CPU, torch.set_num_threads(1); the same seed can end elsewhere with another "
         "thread count (training 100 images for 20 epochs is chaotic)"]
SETTINGS = {"backbone": "efficientnet_lite0", "dataset": "digits", "shots": 10, "image_size": 32, "unlabelled": 200,
            "recipe": "fine_tune", "epochs": RECIPES["fine_tune"].epochs, "lr": RECIPES["fine_tune"].lr}


def target_accuracy_per_epoch(backbone, target_test, accs: list[float]):
    """An EpochEnd listener appending the current weights' accuracy on the target test split to ``accs``."""
    def listen(event):
        if isinstance(event, EpochEnd):
            rng = torch.get_rng_state()
            device = next(backbone.model.parameters()).device
            accs.append(evaluate_model(backbone, target_test, device=device)["acc"])  # eval mode, mode restored
            torch.set_rng_state(rng)
    return listen


def one_run(seed: int, shift: str, dann: bool) -> dict:
    data = load_dataset(SETTINGS["dataset"], shots=SETTINGS["shots"], seed=seed, image_size=SETTINGS["image_size"])
    target = shift_data(data, shift, seed=seed)
    pool = unlabelled_target(data, shift, n=SETTINGS["unlabelled"], seed=seed)
    r = RECIPES[SETTINGS["recipe"]]
    backbone = load_backbone(SETTINGS["backbone"], num_classes=len(data.classes), seed=seed)
    per_epoch: list[float] = []
    t = time.perf_counter()
    run = fit(backbone, data, plan=r.plan, epochs=SETTINGS["epochs"], lr=r.lr, seed=seed, progress=False,
              save_checkpoints=False, adapt_to=pool if dann else None,
              callbacks=[target_accuracy_per_epoch(backbone, target.test, per_epoch)])
    kept = evaluate_model(run.backbone, target.test, device=next(run.model.parameters()).device)["acc"]
    best_epoch = int(run.best["epoch"])  # 1-based: the kept weights are target_acc_per_epoch[best_epoch - 1]
    return {
        "seed": seed, "shift": shift, "method": "dann" if dann else "source_only",
        "target_acc_per_epoch": per_epoch,
        "val_acc_per_epoch": [h["val_acc"] for h in run.history],
        "domain_acc_per_epoch": [h["domain_acc"] for h in run.history] if dann else None,
        "best_val_epoch": best_epoch,
        "target_acc_best_val": kept,  # what fit keeps today (= target_acc_per_epoch[best_val_epoch - 1])
        "target_acc_last": per_epoch[-1],
        "source_test_acc_best_val": run.best["test_acc"],
        "seconds": time.perf_counter() - t,
    }


def summary(runs: list[dict]) -> dict:
    out = {}
    for shift in SHIFTS:
        for method in ("source_only", "dann"):
            for choice in ("best_val", "last"):
                vals = [r[f"target_acc_{choice}"] for r in runs if (r["shift"], r["method"]) == (shift, method)]
                if vals:
                    out[f"{shift}/{method}/{choice}"] = {
                        "per_seed": vals, "mean": statistics.mean(vals),
                        "sd": statistics.stdev(vals) if len(vals) > 1 else None}
    return out


def main() -> None:
    torch.set_num_threads(1)
    runs: list[dict] = []
    for shift in SHIFTS:
        for seed in SEEDS:
            for dann in (False, True):
                r = one_run(seed, shift, dann)
                runs.append(r)
                print(f"{shift} seed {seed} {r['method']}: best-val epoch {r['best_val_epoch']} "
                      f"-> target {r['target_acc_best_val']:.3f}; last {r['target_acc_last']:.3f} "
                      f"({r['seconds']:.0f} s)", flush=True)
                OUT.write_text(json.dumps({"settings": {**SETTINGS, "seeds": list(SEEDS), "shifts": list(SHIFTS),
                                                        "torch_threads": 1, "device": "cpu"},
                                           "notes": NOTES, "summary": summary(runs), "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
