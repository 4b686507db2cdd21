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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from tl_lab.backbones.registry import Backbone

if TYPE_CHECKING:
    from tl_lab.data.datasets import DatasetSplits

from tl_lab.data.datasets import DatasetSplits
from tl_lab.inside.stage_features import stage_features
from tl_lab.inside.taps import _body_stages

C_GRID = (0.01, 0.1, 1.0, 10.0)  # inverse L2 strengths tried on the val split (sklearn's default is 1.0)


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
    exploit. ``C`` (inverse L2 strength) is chosen per stage from :data:`C_GRID` by validation accuracy (ties:
    lower validation log-loss), never on test; pass ``C`` to fix it (with no val split sklearn's 1.0 is used).
    ``baseline`` adds ``tl_lab.baseline(data)["test_acc"]`` (logistic regression on raw pixels).

    Example::

        >>> result = probe_stages(load_backbone(), load_dataset("digits", shots=10))
        >>> result.curve("test")["stage5"], result.baseline_test_acc     # a mid stage beats raw pixels
        (0.90..., 0.87...)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    names = _body_stages(backbone, stages)
    feats = {split: stage_features(backbone, getattr(data, split), names) for split in ("train", "val", "test")}
    labels = {split: _numpy(getattr(data, split).labels) for split in ("train", "val", "test")}
    if len(np.unique(labels["train"])) < 2:
        raise ValueError("the training split needs at least two classes for a probe; load more shots or classes")
    has_val = len(labels["val"]) > 0
    grid = (float(C),) if C is not None else (C_GRID if has_val else (1.0,))
    probes = []
    for stage in names:
        scaler = StandardScaler().fit(feats["train"][stage])
        x = {split: scaler.transform(feats[split][stage]) if len(labels[split]) else None for split in feats}
        best = None
        for c in grid:
            # One BLAS thread: these problems are tiny; threaded BLAS was ~50x slower on a shared 2-core machine.
            with threadpool_limits(limits=1, user_api="blas"):
                clf = LogisticRegression(C=c, max_iter=max_iter).fit(x["train"], labels["train"])
            val_acc, val_loss = _scores(clf, x["val"], labels["val"]) if has_val else (float("nan"),) * 2
            if best is None or (val_acc, -val_loss) > (best[1], -best[2]):
                best = (clf, val_acc, val_loss, c)
        clf, val_acc, val_loss, c = best
        probes.append(StageProbe(
            stage=stage, index=backbone.stages.index(stage), dim=int(feats["train"][stage].shape[1]), C=c,
            train_acc=float(clf.score(x["train"], labels["train"])), val_acc=val_acc, val_loss=val_loss,
            test_acc=_scores(clf, x["test"], labels["test"])[0] if len(labels["test"]) else float("nan"),
        ))
    base = None
    if baseline:
        from tl_lab.data.baseline import baseline as raw_pixel_baseline

        base = float(raw_pixel_baseline(data)["test_acc"])
    meta = getattr(data, "meta", None) or {}
    return ProbeResult(
        backbone=backbone.name, pretrained=bool(backbone.meta.get("pretrained", True)), dataset=data.name,
        shots=meta.get("shots"), image_size=int(data.train.images.shape[-1]), baseline_test_acc=base,
        probes=tuple(probes),
    )


def _scores(clf: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Accuracy and mean log-loss (a class the probe never saw gets probability 1e-12)."""
    proba = clf.predict_proba(x)
    col = {c: i for i, c in enumerate(clf.classes_)}
    p_true = np.array([proba[i, col[t]] if t in col else 0.0 for i, t in enumerate(y)])
    acc = float(np.mean(clf.classes_[proba.argmax(1)] == y))
    return acc, float(-np.mean(np.log(np.clip(p_true, 1e-12, 1.0))))


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
