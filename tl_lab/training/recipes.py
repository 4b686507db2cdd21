"""Named training recipes: how each strategy trains (plan, start weights, head learning rate, epochs).

Single runs (the TrainPanel, ``tl-lab train``) and the multi-run experiments use the same recipes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from tl_lab.backbones.registry import Backbone
from tl_lab.data.datasets import DatasetSplits
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit
from tl_lab.training.run import Run

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
