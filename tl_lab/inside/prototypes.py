"""Few-shot classification without training: the nearest class mean (prototype) on pooled pretrained features.

Why: with one to a few labelled images per class, training even a linear head is a fit to almost nothing. A
prototype classifier trains nothing: each class is the mean of its examples' features, and an image belongs to
the class whose mean is nearest. Snell et al. 2017 ("Prototypical Networks for Few-shot Learning", NeurIPS)
made it the standard few-shot baseline; Wang et al. 2019 ("SimpleShot: Revisiting Nearest-Neighbor
Classification for Few-Shot Learning", arXiv:1911.04623) showed that on good features it needs only two
transforms to match far more complex methods: centre the features, then L2-normalise them ("CL2N").

With ``x`` a pooled feature vector, ``mu`` the mean feature of the training images (SimpleShot centres on the
mean of its *base* classes; tl_lab has no base set, so it uses the training split's mean, which is all a learner
has), and ``S_k`` the training images of class ``k``:

    z(x) = (x - mu) / ||x - mu||_2          c_k = (1/|S_k|) * sum_{x in S_k} z(x)
    predict(x) = argmin_k ||z(x) - c_k||_2^2

Measured with Lite0's conv_head (test accuracy, mean of seeds 0-2): CL2N helps most when examples are fewest
(clip art 0.39 vs 0.36 plain at 1 shot, digits 0.53 vs 0.51) and changes little from 5 shots on (clip art 0.61 vs
0.62 at 5, 0.73 vs 0.73 at 20).

Fitting is a mean per class, so adding an example and refitting is instant on a CPU once features are cached
(:func:`tl_lab.inside.stage_features` caches them per model and split).

For views that fit on examples a learner picks (the FewShot widget): :func:`score_prototypes` fits on given
features and returns the test accuracy, predictions and confusion counts; :func:`raw_pixel_accuracy` is the
raw-pixel baseline (:func:`tl_lab.data.baseline.baseline`) trained on exactly the picked images.

Example::

    >>> data = load_dataset("clipart", shots=5)
    >>> nm = nearest_mean(load_backbone(), data)          # conv_head, 1280 features
    >>> round(nm.test_acc, 2), nm.prototypes.centroids.shape
    (0.59, (7, 1280))
    >>> nm.predict(data.test.images[:3]).shape
    (3,)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import ImageSplit
from tl_lab.inside.stage_features import stage_features
from tl_lab.training.mistakes import TOP_DEFAULT, Mistakes, confusion_counts, mistakes_from_logits, split_files

if TYPE_CHECKING:
    from tl_lab.backbones.registry import Backbone
    from tl_lab.data.datasets import DatasetSplits

__all__ = ["Prototypes", "NearestMeanResult", "PrototypeScores", "class_counts", "confusion_counts",
           "fit_prototypes", "nearest_mean", "raw_pixel_accuracy", "score_prototypes"]


@dataclass(frozen=True)
class Prototypes:
    """Class centroids ``(K, D)`` in the centred, L2-normalised space, and the transform that leads there."""

    centroids: np.ndarray
    mean: np.ndarray  # (D,), zeros when not centring
    normalize: bool

    def transform(self, features: np.ndarray) -> np.ndarray:
        """``z(x)``: centre on the training mean, then scale each row to unit length (when ``normalize``)."""
        z = np.asarray(features, dtype=np.float64) - self.mean
        if self.normalize:
            z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return z

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(N, K) negative squared distances to each centroid (higher is nearer)."""
        z = self.transform(features)
        return -((z[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.scores(features).argmax(axis=1)


def fit_prototypes(features: np.ndarray, labels: np.ndarray, num_classes: int, *, center: bool = True,
                   normalize: bool = True) -> Prototypes:
    """Centroids of ``features`` (N, D) per class of ``labels`` (N,); every class needs at least one example.

    >>> p = fit_prototypes(np.eye(3), np.array([0, 1, 2]), 3)
    >>> p.predict(np.eye(3)).tolist()
    [0, 1, 2]
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be (N, D) with one label each; got {x.shape} and {y.shape}")
    missing = [k for k in range(num_classes) if not (y == k).any()]
    if missing:
        raise ValueError(f"every class needs at least one example; classes {missing} have none")
    mean = x.mean(axis=0) if center else np.zeros(x.shape[1])
    proto = Prototypes(np.zeros((num_classes, x.shape[1])), mean, normalize)
    z = proto.transform(x)
    centroids = np.stack([z[y == k].mean(axis=0) for k in range(num_classes)])
    return Prototypes(centroids, mean, normalize)


@dataclass
class NearestMeanResult:
    """A fitted nearest-class-mean classifier on one stage's pooled features: accuracies and ``predict``."""

    stage: str
    classes: tuple[str, ...]
    prototypes: Prototypes
    train_acc: float
    val_acc: float
    test_acc: float
    n_train: int
    seconds: float
    backbone: Backbone = field(repr=False)
    data: DatasetSplits | None = field(default=None, repr=False)  # what it was fitted and scored on

    def predict(self, images: torch.Tensor | ImageSplit) -> np.ndarray:
        """Predicted class indices (N,) for uint8 images (N, 3, H, W) or an ImageSplit."""
        return self.prototypes.predict(stage_features(self.backbone, images, [self.stage])[self.stage])

    def logits(self, images: torch.Tensor | ImageSplit) -> np.ndarray:
        """(N, K) negative squared distances to the class means: Prototypical Networks' logits (Snell et al.
        2017: ``p(y = k | x) = softmax_k(-||z(x) - c_k||^2)``), whose argmax is :meth:`predict`."""
        return self.prototypes.scores(stage_features(self.backbone, images, [self.stage])[self.stage])

    def mistakes(self, split: str = "test", *, top: int | None = TOP_DEFAULT,
                 data: DatasetSplits | None = None) -> Mistakes:
        """What the prototypes get wrong on ``split`` of ``data`` (default: the data they were fitted on), as
        :meth:`tl_lab.training.run.Run.mistakes`; probabilities are the softmax of :meth:`logits`."""
        data = data if data is not None else self.data
        if data is None:
            raise ValueError("pass data=: the DatasetSplits whose split to look at")
        part = _named_split(data, split)
        return mistakes_from_logits(self.logits(part), part.labels, self.classes, split=split, top=top,
                                    files=split_files(data, part))


def _named_split(data: DatasetSplits, split: str) -> ImageSplit:
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    return getattr(data, split)


def _accuracy(pred: np.ndarray, labels: torch.Tensor) -> float:
    return float((pred == labels.numpy()).mean()) if len(labels) else float("nan")


def nearest_mean(
    backbone: Backbone,
    data: DatasetSplits,
    stage: str | None = None,
    *,
    center: bool = True,
    normalize: bool = True,
) -> NearestMeanResult:
    """Classify by the nearest class mean of pooled ``stage`` features (default: the last body stage).

    ``center`` and ``normalize`` are SimpleShot's CL2N (both on by default; turn them off to measure what they
    add). Nothing is trained: the only cost is one forward pass per split, cached by ``stage_features``.
    Returns a :class:`NearestMeanResult` with ``train_acc``, ``val_acc``, ``test_acc`` and ``predict(images)``.
    """
    start = time.perf_counter()
    stage = stage or backbone.body_stages[-1]
    if stage not in backbone.body_stages:
        raise ValueError(f"unknown stage {stage!r}; choose a body stage: {', '.join(backbone.body_stages)}")
    if len(data.train) == 0:
        raise ValueError("nearest_mean needs labelled training images; load the data with shots >= 1")
    feats = {name: stage_features(backbone, split, [stage])[stage]
             for name, split in (("train", data.train), ("val", data.val), ("test", data.test))}
    protos = fit_prototypes(feats["train"], data.train.labels.numpy(), len(data.classes), center=center,
                            normalize=normalize)
    accs = {name: _accuracy(protos.predict(f), getattr(data, name).labels) if len(f) else float("nan")
            for name, f in feats.items()}
    return NearestMeanResult(stage, tuple(data.classes), protos, accs["train"], accs["val"], accs["test"],
                             len(data.train), time.perf_counter() - start, backbone, data)


# ---- few-shot from picked examples (what the FewShot widget shows) ----------------------------------------------


def class_counts(labels: np.ndarray | Sequence[int], num_classes: int) -> np.ndarray:
    """Examples per class (K,) of ``labels``: ``class_counts([0, 2, 2], 3)`` -> ``[1, 0, 2]``."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]


@dataclass(frozen=True)
class PrototypeScores:
    """Prototypes fitted on picked examples, scored on test features: what a few-shot view shows."""

    prototypes: Prototypes
    predictions: np.ndarray  # (N_test,) predicted class indices
    accuracy: float
    confusion: np.ndarray  # (K, K), rows true class, columns predicted
    counts: np.ndarray  # (K,) examples per class
    n_examples: int


def score_prototypes(features: np.ndarray, labels: np.ndarray, test_features: np.ndarray, test_labels: np.ndarray,
                     num_classes: int, *, center: bool = True, normalize: bool = True) -> PrototypeScores:
    """Fit prototypes on ``features`` (N, D) with ``labels`` (N,), then predict ``test_features`` (M, D) and score
    against ``test_labels`` (M,): the test accuracy and the confusion counts. Every class needs an example.

    >>> r = score_prototypes(np.eye(2), np.array([0, 1]), np.array([[1.0, 0.2], [0.1, 1.0]]), np.array([0, 0]), 2)
    >>> r.accuracy, r.confusion.tolist()
    (0.5, [[1, 1], [0, 0]])
    """
    protos = fit_prototypes(features, labels, num_classes, center=center, normalize=normalize)
    truth = np.asarray(test_labels, dtype=np.int64)
    pred = protos.predict(test_features) if len(truth) else np.zeros(0, np.int64)
    acc = float((pred == truth).mean()) if len(truth) else float("nan")
    return PrototypeScores(protos, pred, acc, confusion_counts(truth, pred, num_classes),
                           class_counts(labels, num_classes), len(labels))


def raw_pixel_accuracy(data: DatasetSplits, images: torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Test accuracy of the raw-pixel baseline (:func:`tl_lab.data.baseline.baseline`, its defaults) trained on
    exactly ``images`` (N, 3, H, W) uint8 with ``labels`` (N,), in place of ``data.train``; ``data``'s validation
    split chooses ``C`` and its test split scores, as for any ``baseline(data)``.

    With the first training image of each class this is ``baseline(load_dataset(name, shots=1))["test_acc"]``.
    """
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if len(images) != len(y):
        raise ValueError(f"one label per image: got {len(images)} images and {len(y)} labels")
    train = ImageSplit(images, y, data.classes)
    return float(baseline(replace(data, train=train))["test_acc"])
