"""Linear probes per stage (Alain & Bengio 2016, "Understanding intermediate layers using linear classifier
probes", arXiv:1610.01644): how linearly readable the classes are at each depth, beside the raw-pixel baseline.

On data far from ImageNet a middle stage often beats the last one (Yosinski et al. 2014, "How transferable are
features in deep neural networks?", arXiv:1411.1792); :func:`tl_lab.backbones.cut_at` turns that into a network.

Example::

    >>> from tl_lab.backbones import load_backbone
    >>> from tl_lab.data import load_dataset
    >>> result = probe_stages(load_backbone(), load_dataset("digits", shots=10))
    >>> result.best_stage                          # a middle stage: digits are far from ImageNet
    'stage5'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from tl_lab.backbones.registry import Backbone
from tl_lab.data.baseline import baseline as raw_pixel_baseline
from tl_lab.data.datasets import DatasetSplits
from tl_lab.inside.stage_features import stage_features
from tl_lab.inside.taps import _body_stages

C_GRID = (0.01, 0.1, 1.0, 10.0)  # inverse L2 strengths tried on the val split (sklearn's default is 1.0)

__all__ = ["C_GRID", "FittedProbe", "ProbeResult", "StageProbe", "fit_probe", "probe_stages"]


# ---- linear probes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageProbe:
    """One stage's linear probe: accuracies on each split, feature width, and the C chosen on val."""

    stage: str
    index: int
    dim: int
    C: float
    train_acc: float
    val_acc: float
    val_loss: float
    test_acc: float


@dataclass(frozen=True)
class ProbeResult:
    """Linear-probe accuracy per stage, beside the raw-pixel baseline. ``str()`` prints a table."""

    backbone: str
    pretrained: bool
    dataset: str
    shots: int | None
    image_size: int
    baseline_test_acc: float | None
    probes: tuple[StageProbe, ...]

    @property
    def best_stage(self) -> str:
        """The stage with the best validation accuracy (ties: lower validation loss). Never chosen on test."""
        if any(np.isnan(p.val_acc) for p in self.probes):
            raise ValueError("best_stage is chosen on the val split, which is empty; load data with val_per_class > 0")
        return max(self.probes, key=lambda p: (p.val_acc, -p.val_loss)).stage

    def curve(self, split: Literal["train", "val", "test"] = "test") -> dict[str, float]:
        """Accuracy per stage on one split, in forward order: the depth curve a lesson plots."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        return {p.stage: getattr(p, f"{split}_acc") for p in self.probes}

    def to_records(self) -> list[dict]:
        """One dict per stage, with the run's context on every row (for plots and tables)."""
        context = {"backbone": self.backbone, "pretrained": self.pretrained, "dataset": self.dataset,
                   "shots": self.shots, "image_size": self.image_size, "baseline_test_acc": self.baseline_test_acc}
        return [{**dataclasses.asdict(p), **context} for p in self.probes]

    def __str__(self) -> str:
        weights = "pretrained" if self.pretrained else "random init"
        shots = f"{self.shots}-shot" if self.shots else "all data"
        lines = [f"linear probes: {self.backbone} ({weights}) on {self.dataset}, {shots}, {self.image_size} px",
                 f"{'stage':<12}{'dim':>6}{'C':>7}{'train':>8}{'val':>7}{'test':>7}"]
        best = None if any(np.isnan(p.val_acc) for p in self.probes) else self.best_stage
        for p in self.probes:
            mark = "  <- best on val" if p.stage == best else ""
            accs = f"{p.train_acc:>8.3f}{p.val_acc:>7.3f}{p.test_acc:>7.3f}"
            lines.append(f"{p.stage:<12}{p.dim:>6}{p.C:>7g}{accs}{mark}")
        if self.baseline_test_acc is not None:
            lines.append(f"raw pixels (logistic regression): test {self.baseline_test_acc:.3f}")
        return "\n".join(lines)


def probe_stages(
    backbone: Backbone,
    data: DatasetSplits,
    stages: str | Sequence[str] | None = None,
    *,
    C: float | None = None,
    baseline: bool = True,
    max_iter: int = 5000,
) -> ProbeResult:
    """Fit a linear probe (logistic regression) on each stage's pooled, standardised features.

    Why: a probe measures how linearly readable the classes are at each depth, which is what a frozen head can
    exploit. ``C`` (inverse L2 strength) is chosen per stage from :data:`C_GRID` by :func:`fit_probe` (validation
    accuracy, ties: lower validation log-loss), never on test; pass ``C`` to fix it (with no val split sklearn's
    1.0 is used). ``baseline`` adds ``tl_lab.baseline(data)["test_acc"]`` (logistic regression on raw pixels).

    Example::

        >>> result = probe_stages(load_backbone(), load_dataset("digits", shots=10))
        >>> result.curve("test")["stage5"], result.baseline_test_acc     # a mid stage beats raw pixels
        (0.899..., 0.871...)
    """
    names = _body_stages(backbone, stages)
    splits = ("train", "val", "test")
    feats = {split: stage_features(backbone, getattr(data, split), names) for split in splits}
    labels = {split: _numpy(getattr(data, split).labels) for split in splits}
    if len(np.unique(labels["train"])) < 2:
        raise ValueError("the training split needs at least two classes for a probe; load more shots or classes")
    probes = []
    for stage in names:
        fitted = fit_probe({split: (feats[split][stage], labels[split]) for split in splits}, C=C, max_iter=max_iter)
        probes.append(StageProbe(stage=stage, index=backbone.stages.index(stage),
                                 dim=int(feats["train"][stage].shape[1]), **fitted.scores))
    base = float(raw_pixel_baseline(data)["test_acc"]) if baseline else None
    meta = getattr(data, "meta", None) or {}
    return ProbeResult(
        backbone=backbone.name, pretrained=bool(backbone.meta.get("pretrained", True)), dataset=data.name,
        shots=meta.get("shots"), image_size=int(data.train.images.shape[-1]), baseline_test_acc=base,
        probes=tuple(probes),
    )


@dataclass(frozen=True)
class FittedProbe:
    """A probe fit by :func:`fit_probe`: the sklearn pipeline (scaler + logistic regression, fit on train only)
    and its scores (``C``, ``train_acc``, ``val_acc``, ``val_loss``, ``test_acc``; nan for an empty split)."""

    model: Any
    scores: dict


def fit_probe(
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    C: float | None = None,
    grid: Sequence[float] = C_GRID,
    max_iter: int = 5000,
) -> FittedProbe:
    """Standardise, then L2 logistic regression; ``C`` chosen on the val split with scikit-learn's grid search.

    ``splits`` maps ``"train"``, ``"val"``, ``"test"`` to ``(features (n, d), labels (n,))``. The search is
    ``GridSearchCV`` over ``C`` in ``grid`` with a ``PredefinedSplit`` whose only fold trains on the train split
    and scores on the val split (accuracy and log-loss); the chosen ``C`` has the best val accuracy, ties broken by
    the lower val log-loss. The returned model is that ``C`` fit on train alone (``refit=False``: a refit on
    train + val would make the val scores optimistic). The test split is only scored, never used to choose.

    >>> rng = np.random.default_rng(0); y = np.arange(40) % 2; x = rng.normal(y[:, None], 1.0, (40, 5))
    >>> probe = fit_probe({"train": (x[:20], y[:20]), "val": (x[20:30], y[20:30]), "test": (x[30:], y[30:])})
    >>> probe.scores["C"], probe.scores["val_acc"], probe.model.predict(x[:3]).shape
    (1.0, 0.8, (3,))
    """
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss, make_scorer
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (splits[k] for k in ("train", "val", "test"))
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    has_val = len(y_val) > 0
    classes = np.unique(y_train)
    unseen = sorted(set(np.unique(y_val).tolist()) - set(classes.tolist()))
    if unseen:
        raise ValueError(f"the val split has classes the train split lacks ({unseen}); a probe cannot score them. "
                         f"Load the data with at least one training image per class")
    # One BLAS thread: these problems are tiny; threaded BLAS was ~50x slower on a shared 2-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        if C is None and has_val and len(grid) > 1:
            fold = PredefinedSplit(np.r_[np.full(len(y_train), -1), np.zeros(len(y_val))])  # -1: never a test fold
            search = GridSearchCV(pipe, {"logisticregression__C": [float(c) for c in grid]}, cv=fold, refit=False,
                                  scoring={"acc": "accuracy", "loss": make_scorer(
                                      log_loss, greater_is_better=False, response_method="predict_proba",
                                      labels=classes)}, error_score="raise")
            search.fit(np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]))
            res = search.cv_results_
            best = np.lexsort((-res["mean_test_loss"], -res["mean_test_acc"]))[0]  # accuracy, then log-loss
            chosen = float(res["param_logisticregression__C"][best])
        else:
            chosen = float(C) if C is not None else (float(grid[0]) if len(grid) == 1 and has_val else 1.0)
        model = clone(pipe).set_params(logisticregression__C=chosen).fit(x_train, y_train)

        def acc(x: np.ndarray, y: np.ndarray) -> float:
            return float(accuracy_score(y, model.predict(x))) if len(y) else float("nan")

        val_loss = float(log_loss(y_val, model.predict_proba(x_val), labels=model.classes_)) if has_val else float("nan")
        scores = {"C": chosen, "train_acc": acc(x_train, y_train), "val_acc": acc(x_val, y_val),
                  "val_loss": val_loss, "test_acc": acc(x_test, y_test)}
    return FittedProbe(model, scores)


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
