"""Rank backbones for your data before training (transferability scores), then check the ranking by training.

Why: "which pretrained network should I start from?" is usually answered by fine-tuning every candidate. Kornblith,
Shlens & Le 2019 ("Do Better ImageNet Models Transfer Better?", CVPR) found ImageNet top-1 predicts transfer
accuracy across 16 networks (r = 0.99 for fixed features) on full-size datasets; You et al. 2021 (LogME) and Nguyen
et al. 2020 (LEEP) predict it from one forward pass over the target data. :func:`rank_backbones` runs both halves
on the learner's own data: the scores (seconds), then the proof (training each candidate with a named recipe),
and reports how well each score ranked the candidates (Kendall's tau against measured test accuracy).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from tl_lab._checks import check_choice
from tl_lab.backbones.cost import images_per_second
from tl_lab.backbones.registry import get_spec, list_backbones, load_backbone
from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import DatasetSplits, load_dataset
from tl_lab.experiments.results import ExperimentResult
from tl_lab.inside.stage_features import stage_features
from tl_lab.inside.transferability import METRICS, check_labels, transferability
from tl_lab.training.recipes import RECIPES, recipe_epochs, train_run

__all__ = ["RankingResult", "rank_backbones", "verify_ranking", "kendall_tau"]

COLUMNS = ("label", "parameters", "imagenet_top1", "score_seconds", "train_seconds", "test_acc")


@dataclass
class RankingResult(ExperimentResult):
    """One record per candidate (backbone x pretrained/random init): scores, seconds, measured accuracy.

    ``metrics``: the scores computed; ``kendall_tau``: ``{metric: tau}`` between each score and the measured test
    accuracy (nan when nothing was trained or fewer than two candidates differ); ``ranking(metric)``: labels best
    first.
    """

    metrics: tuple[str, ...] = ()
    runs: list = field(default_factory=list, repr=False)  # the verification runs (tl_lab Run), in record order

    @property
    def kendall_tau(self) -> dict[str, float]:
        accs = [r.get("test_acc") for r in self.records]
        return {m: kendall_tau([r[m] for r in self.records], accs) for m in self.metrics}

    def ranking(self, metric: str = "test_acc") -> list[str]:
        """Candidate labels, best first, by ``metric`` (a score, ``test_acc`` or ``imagenet_top1``)."""
        rows = [r for r in self.records if r.get(metric) is not None and not _nan(r[metric])]
        return [r["label"] for r in sorted(rows, key=lambda r: -r[metric])]


def kendall_tau(x: Sequence[float | None], y: Sequence[float | None]) -> float:
    """Kendall's tau-b (scipy) over the pairs where both values are numbers; nan with fewer than two such pairs."""
    from scipy.stats import kendalltau

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and not _nan(a) and not _nan(b)]
    if len(pairs) < 2 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return float("nan")
    return float(kendalltau(*zip(*pairs)).statistic)


def rank_backbones(
    data: DatasetSplits | str,
    backbones: Sequence[str] | None = None,
    metrics: Sequence[str] = ("logme", "leep"),
    verify: str | None = "frozen_head",
    *,
    random_init: bool = True,
    epochs: int | None = None,
    fast: bool = False,
    seed: int = 0,
    throughput: bool = True,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> RankingResult:
    """Score every candidate backbone on ``data`` with transferability ``metrics``, then (``verify``) train each.

    Args:
        data: a :class:`DatasetSplits` (embedded, procedural or your ``folder``), or a dataset name (loaded with
            10 shots per class at its default size).
        backbones: registered names; default: every backbone usable offline (:func:`list_backbones` with
            ``offline=True``: the embedded Lite networks, plus torchvision networks whose weights are already in
            torch's hub cache).
        metrics: any of ``"logme"``, ``"leep"``, ``"probe"`` (:func:`tl_lab.inside.transferability`).
        verify: a recipe of :data:`tl_lab.training.recipes.RECIPES` (``"frozen_head"``, ``"fine_tune"``,
            ``"scratch"``) to train each candidate with and measure test accuracy, or None to only score.
        random_init: add each backbone at random init as a negative control (trained with the same recipe, its
            body random; for frozen recipes that body stays random).
        epochs / fast: the recipe's epochs (None: its default; ``fast``: its ``fast_epochs``).
        throughput: measure inference images/s at the data's size (cached; :mod:`tl_lab.backbones.cost`).
        progress: a tqdm bar over candidates. ``callback``: called with a candidate's record after it is scored
            and again after it is trained (live tables and charts).

    Records: backbone, pretrained, label, one key per metric, forward_seconds (the forward pass), score_seconds
    (forward pass + every metric), train_seconds, test_acc, val_acc (None when not verified), parameters,
    imagenet_top1 (the weights' stated top-1; None at random init), images_per_second, image_size, dataset.

    Example::

        >>> data = tl_lab.load_dataset("clipart", shots=10, image_size=64)
        >>> r = tl_lab.rank_backbones(data)   # 3 Lite networks x (pretrained, random): ~1 min  # doctest: +SKIP
        >>> [x["label"] for x in r.to_records()][:3]  # doctest: +SKIP
        ['efficientnet_lite0', 'efficientnet_lite0 (random init)', 'efficientnet_lite1']
        >>> r.kendall_tau                                     # measured: LogME +0.55, LEEP +0.79  # doctest: +SKIP
        {'logme': 0.55..., 'leep': 0.92...}
    """
    metrics = tuple(metrics)
    check_choice("metric", metrics, METRICS)
    if verify is not None and verify not in RECIPES:
        raise ValueError(f"unknown verify recipe {verify!r}; choose one of: {', '.join(RECIPES)}, or None to only score")
    if isinstance(data, str):
        data = load_dataset(data, shots=10, seed=seed)
    check_labels(data)
    names = list_backbones(offline=True) if backbones is None else list(backbones)
    if not names:
        raise ValueError("no backbone to rank: pass names, e.g. backbones=['efficientnet_lite0', 'efficientnet_lite1']")
    known = list_backbones()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown backbone(s) {unknown}; choose from: {', '.join(known)}")
    candidates = [(n, p) for n in dict.fromkeys(names) for p in ((True, False) if random_init else (True,))]
    start = time.perf_counter()
    base = baseline(data)
    records: list[dict] = []
    bar = _make_bar(progress, len(candidates) * (2 if verify else 1))
    try:
        for name, pretrained in candidates:
            record = _score(name, pretrained, data, metrics, throughput)
            records.append(record)
            _tick(bar, record["label"], "scored", callback, record)
    finally:
        if bar is not None and verify is None:
            bar.close()
    config = {"dataset": data.name, "shots": data.meta.get("shots"), "image_size": data.image_size,
              "metrics": list(metrics), "verify": verify, "seed": seed, "fast": fast,
              "raw_pixels_test_acc": float(base["test_acc"])}
    notes = [f"raw pixels: {base['test_acc']:.3f}; chance: {1 / len(data.classes):.3f}",
             f"every network ran at the data's {data.image_size} px (native sizes: "
             + ", ".join(f"{n} {get_spec(n).input_size}" for n in dict.fromkeys(names)) + ")"]
    result = RankingResult("backbone ranking", records, time.perf_counter() - start, config, notes,
                           (*COLUMNS[:3], *metrics, *COLUMNS[3:]), metrics=metrics)
    if verify is not None:
        try:
            verify_ranking(result, data, verify, epochs=epochs, fast=fast, seed=seed, callback=callback, _bar=bar)
        finally:
            if bar is not None:
                bar.close()
    return result


def verify_ranking(
    result: RankingResult,
    data: DatasetSplits,
    verify: str = "frozen_head",
    *,
    epochs: int | None = None,
    fast: bool = False,
    seed: int = 0,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
    _bar=None,
) -> RankingResult:
    """Train every candidate of a scored ``result`` with the recipe ``verify`` and fill in its measured accuracy.

    The records gain train_seconds, test_acc, val_acc, epochs and recipe; ``result.runs`` the runs (for the
    dashboard's run list); a note gives Kendall's tau per metric. Random-init candidates train from random
    weights with the same recipe. Returns ``result``, updated in place.
    """
    if verify not in RECIPES:
        raise ValueError(f"unknown verify recipe {verify!r}; choose one of: {', '.join(RECIPES)}")
    recipe = RECIPES[verify]
    n_epochs = recipe_epochs(verify, epochs, fast)
    start = time.perf_counter()
    bar = _bar if _bar is not None else _make_bar(progress, len(result.records))
    try:
        for record in result.records:
            t = time.perf_counter()
            init = "pretrained" if record["pretrained"] else "random"
            run = train_run(record["backbone"], data, replace(recipe, pretrained=record["pretrained"]),
                            epochs=n_epochs, seed=seed, run_dir=None,
                            name=f"rank-{record['backbone']}-{init}-{verify}")
            record.update(train_seconds=time.perf_counter() - t, test_acc=float(run.best["test_acc"]),
                          val_acc=float(run.best["val_acc"]), epochs=n_epochs, recipe=verify)
            result.runs.append(run)
            _tick(bar, record["label"], "trained", callback, record)
    finally:
        if _bar is None and bar is not None:
            bar.close()
    result.seconds += time.perf_counter() - start
    result.config["verify"] = verify
    result.notes = [n for n in result.notes if not n.startswith("Kendall tau")]
    result.notes.append("Kendall tau (score vs measured test accuracy): "
                        + ", ".join(f"{m} {t:+.2f}" for m, t in result.kendall_tau.items()))
    return result


def _score(name: str, pretrained: bool, data: DatasetSplits, metrics: tuple[str, ...], throughput: bool) -> dict:
    bb = load_backbone(name, pretrained=pretrained)
    last = bb.body_stages[-1]
    t = time.perf_counter()
    stage_features(bb, data.train, [last])  # the one forward pass; every score below reads its cached output
    forward = time.perf_counter() - t
    record = {"backbone": name, "pretrained": pretrained,
              "label": name if pretrained else f"{name} (random init)", "dataset": data.name,
              "image_size": data.image_size}
    for metric in metrics:
        record[metric] = transferability(bb, data, metric)
    record.update(
        forward_seconds=forward, score_seconds=time.perf_counter() - t, train_seconds=None, test_acc=None,
        val_acc=None, parameters=int(bb.meta["total_parameters"]),
        imagenet_top1=bb.spec.imagenet_top1 if pretrained else None,
        images_per_second=images_per_second(name, image_size=data.image_size) if throughput else None,
    )
    return record


def _make_bar(progress: bool, total: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="rank backbones", unit="step")


def _tick(bar, label: str, what: str, callback: Callable[[dict], None] | None, record: dict) -> None:
    if bar is not None:
        bar.set_postfix_str(f"{what} {label}")
        bar.update(1)
    if callback is not None:
        callback(dict(record))


def _nan(v: object) -> bool:
    return isinstance(v, float) and math.isnan(v)
