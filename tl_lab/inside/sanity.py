"""Is an attribution map about the model? Two checks a learner can run: weight randomisation and object masks.

- :func:`sanity_check` is the cascading model-parameter randomisation test of Adebayo et al. 2018, "Sanity
  Checks for Saliency Maps" (NeurIPS, arXiv:1810.03292). Stages of a copy of the model are re-initialised one by
  one from the head down; after each step the method's map is recomputed for the same image and target and
  compared with the original by Spearman rank correlation of absolute values. A map that still looks the same once
  every weight is random cannot be explaining what the network learned (the paper found this for guided
  backprop); such methods land in ``SanityResult.flagged``.
- :func:`mask_scores` scores maps against object masks (the ``shapes`` dataset has exact ones): the energy-based
  pointing game of Wang et al. 2020 (Score-CAM, arXiv:1910.01279; fraction of positive attribution inside the
  mask) and the classic pointing game (Zhang et al. 2016, arXiv:1608.00507; is the maximum inside the mask), next
  to the mask's area fraction: the energy a map spread uniformly would get (chance).

Example::

    >>> from tl_lab.inside.sanity import sanity_check, mask_scores
    >>> bb, images = tl_lab.load_backbone(), tl_lab.sample_photo("cat").image()
    >>> res = sanity_check(bb, images, "tabby", methods=("saliency", "grad_cam", "guided_backprop"))  # doctest: +SKIP
    >>> print(res)                       # one row per randomisation step, one column per method  # doctest: +SKIP
    >>> res.flagged                      # methods whose maps barely change with random weights  # doctest: +SKIP
    ['guided_backprop']
    >>> data = tl_lab.load_dataset("shapes", shots=10, image_size=64)
    >>> run = tl_lab.fit("efficientnet_lite0", data, progress=False)   # doctest: +SKIP
    >>> att = explain("grad_cam", run, data.test.images[:16], data.test.labels[:16])   # doctest: +SKIP
    >>> mask_scores(att, data.test.masks[:16])["energy_mean"]   # vs ["area_mean"], the chance level  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from tl_lab.backbones.registry import Backbone
from tl_lab.inside.attribution import Attribution, explain, get_method, unwrap_model

__all__ = ["SanityResult", "SanityStep", "mask_scores", "randomize_stage", "sanity_check"]

DEFAULT_METHODS = ("saliency", "integrated_gradients", "grad_cam", "guided_backprop")


@dataclass(frozen=True)
class SanityStep:
    """One method after one cascade step: ``randomized`` lists every stage re-initialised so far (head first)."""

    method: str
    step: int
    stage: str
    randomized: tuple[str, ...]
    rank_correlation: float  # mean over images of Spearman(|original map|, |map now|); nan: maps became constant
    per_image: tuple[float, ...]
    maps: np.ndarray = field(repr=False)  # (N, H, W) maps at this step


@dataclass(frozen=True)
class SanityResult:
    """Per-method, per-step rank correlations with the original maps. ``str()`` prints the cascade as a table."""

    methods: tuple[str, ...]
    stages: tuple[str, ...]  # randomisation order, head first
    records: tuple[SanityStep, ...]
    original: Mapping[str, Attribution]
    threshold: float

    def correlations(self, method: str) -> list[float]:
        """Mean rank correlation after each step (``stages`` order) for ``method``."""
        return [r.rank_correlation for r in self.records if r.method == method]

    def final(self, method: str) -> float:
        """Correlation once every listed stage is random (the whole model with the default ``stages``)."""
        return self.correlations(method)[-1]

    @property
    def flagged(self) -> tuple[str, ...]:
        """Methods whose maps stay similar (rank correlation > ``threshold``) after the whole cascade."""
        return tuple(m for m in self.methods if self.final(m) > self.threshold)

    def flagged_at(self, stage: str) -> tuple[str, ...]:
        """Methods still similar after randomising every stage from the head down to ``stage``.

        ``flagged_at(stages[0])`` asks Adebayo et al.'s first question: does the map even depend on the classifier?
        """
        if stage not in self.stages:
            raise ValueError(f"stage {stage!r} was not randomised; randomised stages: {', '.join(self.stages)}")
        step = self.stages.index(stage)
        return tuple(m for m in self.methods if self.correlations(m)[step] > self.threshold)

    def __str__(self) -> str:
        width = max(12, *(len(m) + 2 for m in self.methods))
        lines = [f"{'randomised to':<16}" + "".join(f"{m:>{width}}" for m in self.methods)]
        lines.append(f"{'(original)':<16}" + "".join(f"{1.0:>{width}.3f}" for _ in self.methods))
        for i, stage in enumerate(self.stages):
            row = [r for r in self.records if r.step == i]
            lines.append(f"{stage:<16}" + "".join(f"{r.rank_correlation:>{width}.3f}" for r in row))
        top = ", ".join(self.flagged_at(self.stages[0])) or "none"
        lines.append(f"still similar (rank correlation > {self.threshold}) with a random {self.stages[0]}: {top}")
        flagged = ", ".join(self.flagged) or "none"
        lines.append(f"flagged: still similar once {self.stages[-1]} is random too: {flagged}")
        return "\n".join(lines)


def randomize_stage(module: nn.Module) -> None:
    """Re-initialise every parameter in ``module`` as at construction (uses torch's global RNG).

    Modules with ``reset_parameters`` (convolutions, linear layers, BatchNorm: weights, biases and running
    statistics) use it; any other parameter (a ViT's class token, position embeddings) gets N(0, 0.02).
    """
    covered = set()
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
            covered.update(id(p) for p in m.parameters(recurse=False))
    with torch.no_grad():
        for p in module.parameters():
            if id(p) not in covered:
                nn.init.normal_(p, std=0.02)


def sanity_check(
    backbone: Backbone | Any,
    images: Any,
    target: Any = None,
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    stages: Sequence[str] | None = None,
    seed: int = 0,
    threshold: float = 0.5,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    classes: Sequence[str] | None = None,
) -> SanityResult:
    """Cascading parameter randomisation (Adebayo et al. 2018) on a deep copy of ``backbone``'s model.

    Args:
        backbone: a Backbone (or a training Run); the original is never modified.
        images, target: as for :func:`~tl_lab.inside.attribution.explain`; the target is fixed from the original model
            (None: its prediction) so every step explains the same class.
        methods: names from ``list_methods()``.
        stages: the stages to randomise, applied from the head down (default: all of them, i.e. the whole model).
        seed: seeds the re-initialisation (stage ``i`` uses ``seed + i``) and any noise tunnel.
        threshold: a method whose final rank correlation exceeds it is ``flagged``.
        options: extra keywords for :func:`explain` per method, e.g. ``{"integrated_gradients": {"n_steps": 16}}``.
    Returns:
        a :class:`SanityResult`; ``str()`` of it is the cascade table.
    """
    for m in methods:
        get_method(m)
    options = {k: dict(v) for k, v in (options or {}).items()}
    unknown = set(options) - set(methods)
    if unknown:
        raise ValueError(f"options given for methods not in methods={tuple(methods)}: {sorted(unknown)}")
    bb, _, categories = unwrap_model(backbone, classes)
    if bb is None:
        raise TypeError("sanity_check needs a Backbone (or a Run): it randomises the model stage by stage")
    order = tuple(reversed(bb.stages)) if stages is None else tuple(stages)
    bad = [s for s in order if s not in bb.stages]
    if bad or len(set(order)) != len(order) or not order:
        raise ValueError(f"stages must be distinct names from {', '.join(bb.stages)}; got {list(order)}")
    order = tuple(sorted(order, key=lambda s: -bb.stages.index(s)))  # the cascade runs top down

    original = {m: explain(m, bb, images, target, classes=categories, seed=seed, **options.get(m, {}))
                for m in methods}
    fixed = list(next(iter(original.values())).target)
    copy_bb = dataclasses.replace(bb, model=copy.deepcopy(bb.model), meta=dict(bb.meta))
    records: list[SanityStep] = []
    for i, stage in enumerate(order):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + i)
            randomize_stage(copy_bb.model.get_submodule(stage))
        for m in methods:
            att = explain(m, copy_bb, images, fixed, classes=categories, seed=seed, **options.get(m, {}))
            per = np.array([_rank_correlation(a, b) for a, b in zip(original[m].maps, att.maps)])
            mean = float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")
            records.append(SanityStep(m, i, stage, order[: i + 1], mean, tuple(per.tolist()), att.maps))
    return SanityResult(tuple(methods), order, tuple(records), MappingProxyType(original), threshold)


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of |a| and |b| (nan when either map is constant: no ranking to compare)."""
    from scipy.stats import spearmanr

    a, b = np.abs(a).ravel(), np.abs(b).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(a, b).statistic)


def mask_scores(attribution: Attribution, masks: Any) -> dict:
    """How much of each map falls on the object: energy and classic pointing games, with the chance level.

    Args:
        attribution: from :func:`explain`, maps ``(N, H, W)``.
        masks: bool ``(N, H, W)`` object masks (tensor or array), e.g. ``data.test.masks``.
    Returns:
        ``{"energy": (N,), "pointing": (N,), "area": (N,), "energy_mean", "pointing_mean", "area_mean", "n"}``:
        ``energy`` = positive attribution inside the mask / all positive attribution (nan for a map with no
        positive part), ``pointing`` = 1.0 when the map's maximum lies inside the mask, ``area`` = the mask's
        fraction of the image, which is what both scores average for maps unrelated to the object.
    """
    m = masks.detach().cpu().numpy() if torch.is_tensor(masks) else np.asarray(masks)
    maps = attribution.maps
    if m.shape != maps.shape:
        raise ValueError(f"masks must match the maps' shape {maps.shape}; got {m.shape} (one (H, W) mask per image, "
                         f"at the size the images were explained at)")
    m = m.astype(bool)
    pos = np.maximum(maps, 0).reshape(len(maps), -1)
    flat = m.reshape(len(m), -1)
    total = pos.sum(1)
    energy = np.where(total > 0, (pos * flat).sum(1) / np.where(total > 0, total, 1), np.nan)
    pointing = flat[np.arange(len(maps)), maps.reshape(len(maps), -1).argmax(1)].astype(float)
    area = flat.mean(1)
    return {
        "energy": energy, "pointing": pointing, "area": area,
        "energy_mean": float(np.nanmean(energy)) if np.isfinite(energy).any() else float("nan"),
        "pointing_mean": float(pointing.mean()), "area_mean": float(area.mean()), "n": len(maps),
    }
