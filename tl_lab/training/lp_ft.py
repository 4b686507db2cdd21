"""LP-FT: train the head first on frozen features (linear probe), then fine-tune everything from there.

Why: fine-tuning starts with a random head whose large, noisy gradients flow into the pretrained body and distort
features the head never needed to change; the body then fits the source domain and forgets what made it robust.
Kumar, Raghunathan, Jones, Ma & Liang 2022 (ICLR, "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution", arXiv:2202.10054) measured fine-tuning beating the linear probe in distribution (+2 % on
average) but losing out of distribution (-7 %), and LP-FT, fine-tuning from the probe's head, gaining on both
(+1 % / +10 %). tl_lab's two phases are exactly its named recipes, run through the same :func:`~tl_lab.fit`:

    phase 1 ("frozen_head"):  body frozen (BatchNorm statistics fixed), head trained, AdamW, head LR 3e-3
    phase 2 ("fine_tune"):    everything trains, the body at 0.1 x the head's rate, from phase 1's weights

Example::

    >>> import tl_lab
    >>> data = tl_lab.load_dataset("digits", shots=10, image_size=32)
    >>> result = lp_ft("efficientnet_lite0", data, epochs=(30, 6))   # about 30 s  # doctest: +SKIP
    >>> result.probe.best["test_acc"], result.fine_tune.best["test_acc"]     # doctest: +SKIP
    (0.78, 0.86)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_lab.backbones.registry import Backbone, load_backbone
from tl_lab.data.datasets import DatasetSplits
from tl_lab.training.loop import fit
from tl_lab.training.recipes import RECIPES, Recipe
from tl_lab.training.run import Run

__all__ = ["LPFT", "lp_ft", "PHASES"]

PHASES = ("frozen_head", "fine_tune")  # the recipes of phase 1 and phase 2


@dataclass(frozen=True)
class LPFT:
    """Both phases' runs; ``fine_tune`` holds the final model (``.backbone``, ``.best``)."""

    probe: Run
    fine_tune: Run

    @property
    def best(self) -> dict:
        return self.fine_tune.best

    @property
    def backbone(self) -> Backbone:
        return self.fine_tune.backbone


def lp_ft(
    backbone: Backbone | str,
    data: DatasetSplits,
    *,
    epochs: tuple[int, int] | None = None,
    fast: bool = False,
    seed: int = 0,
    run_dir: str | Path | None = None,
    name: str = "lp_ft",
    **fit_kwargs: Any,
) -> LPFT:
    """Linear probe (the ``frozen_head`` recipe), then full fine-tuning (``fine_tune``) of the same network.

    Args:
        backbone: a Backbone (trained in place) or a registered name (loaded pretrained with a head for ``data``).
        epochs: ``(probe_epochs, fine_tune_epochs)``; default the recipes' (``fast``: their short versions).
        run_dir: each phase writes under ``run_dir/name-probe`` and ``run_dir/name-fine_tune`` when given.
        fit_kwargs: passed to both phases' :func:`~tl_lab.fit` (e.g. ``callbacks``, ``stop``, ``device``).
    """
    if epochs is not None and (len(epochs) != 2 or min(epochs) < 1):
        raise ValueError(f"epochs must be (probe_epochs, fine_tune_epochs), both >= 1; got {epochs!r}")
    if isinstance(backbone, str):
        backbone = load_backbone(backbone, num_classes=len(data.classes), seed=seed)
    progress = fit_kwargs.pop("progress", False)
    runs = []
    for phase, recipe_name in enumerate(PHASES):
        recipe: Recipe = RECIPES[recipe_name]
        n = epochs[phase] if epochs is not None else (recipe.fast_epochs if fast else recipe.epochs)
        folder = Path(run_dir) / f"{name}-{recipe_name}" if run_dir is not None else None
        runs.append(fit(backbone, data, plan=recipe.plan, epochs=n, lr=recipe.lr, seed=seed,
                        progress=progress, save_checkpoints=folder is not None, run_dir=folder,
                        name=f"{name}-{recipe_name}", **fit_kwargs))
    return LPFT(*runs)
