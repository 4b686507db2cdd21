"""What a classifier gets wrong on one split: per-class accuracy, the confusion matrix, the most-confused pairs and
the highest-loss images.

Why: accuracy is one number; a learner improves a model by looking at *which* images it gets wrong and how badly
(fast.ai's ``plot_top_losses`` and ``most_confused``, Teachable Machine's per-class accuracy). Everything here is
computed from logits ``(N, K)`` and true labels ``(N,)``, whatever classifier made them: a trained run
(:meth:`tl_lab.training.run.Run.mistakes`), nearest-class-mean prototypes or zero-shot scores
(:func:`tl_lab.inside.mistakes.find_mistakes`).

With ``p = softmax(logits)`` (per row) and ``y`` the true class, image ``i``'s loss is the cross-entropy
``loss_i = -log p_i[y_i]`` (``F.cross_entropy(..., reduction="none")``), the number the model was trained to make
small: a confident wrong answer has a large loss, an unsure right one a small loss. ``top_losses`` lists the images
with the largest loss first.

The module lives with training (below ``inside``) because :class:`~tl_lab.training.run.Run` computes it from its
own model; :mod:`tl_lab.inside.mistakes` re-exports it and adds the prototype and zero-shot classifiers.

Example::

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    >>> m = mistakes_from_logits(logits, torch.tensor([0, 1, 1]), ("cat", "dog"), split="test")
    >>> m.confusion.tolist(), m.accuracy
    ([[1, 0], [1, 1]], 0.6666666666666666)
    >>> m.confused_pairs, m.top_losses[0]["true"], m.top_losses[0]["predicted"], round(m.top_losses[0]["loss"], 3)
    ([('dog', 'cat', 1)], 'dog', 'cat', 3.049)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from tl_lab._eval_mode import eval_mode

if TYPE_CHECKING:
    from tl_lab.backbones.registry import Backbone
    from tl_lab.data.datasets import ImageSplit

__all__ = ["Mistakes", "confusion_counts", "mistakes_from_logits", "split_files", "split_logits", "TOP_DEFAULT"]

TOP_DEFAULT = 12  # images in a top-loss gallery: two rows of six, or four rows of image + attribution pairs


def confusion_counts(truth: Any, pred: Any, num_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class; the diagonal holds the hits.

    The one confusion matrix of tl_lab (the Few-shot tab and :class:`Mistakes` both use it).

    >>> confusion_counts(np.array([0, 0, 1]), np.array([0, 1, 1]), 2).tolist()
    [[1, 1], [0, 1]]
    """
    truth, pred = np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if truth.shape != pred.shape:
        raise ValueError(f"truth and pred must have the same shape; got {truth.shape} and {pred.shape}")
    for name, v in (("truth", truth), ("pred", pred)):
        if v.size and not 0 <= int(v.min()) <= int(v.max()) < num_classes:
            raise ValueError(f"{name} holds class indices outside [0, {num_classes}); pass num_classes = the number "
                             "of classes")
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (truth, pred), 1)
    return matrix


@dataclass(frozen=True, eq=False)
class Mistakes:
    """What a classifier gets wrong on one split (see the module docstring for the loss).

    ``per_class``: one row per class ``{"class", "count", "correct", "accuracy"}`` (accuracy = recall of the class;
    nan for a class with no image in the split). ``confusion``: (K, K) int64 counts, rows true, columns predicted.
    ``confused_pairs``: ``(true, predicted, count)`` for every off-diagonal cell with a count, most first.
    ``top_losses``: the ``top`` highest-loss images, highest first, as rows ``{"index", "true", "predicted",
    "prob_true", "prob_pred", "loss", "file"}`` (``index``: position in the split; ``file``: the image's file for a
    folder dataset, else None). ``losses``, ``predictions``, ``probabilities``: every image's, in split order.
    """

    classes: tuple[str, ...]
    split: str
    per_class: list[dict]
    confusion: np.ndarray
    confused_pairs: list[tuple[str, str, int]]
    top_losses: list[dict]
    accuracy: float
    losses: np.ndarray
    predictions: np.ndarray
    labels: np.ndarray
    probabilities: np.ndarray

    @property
    def n(self) -> int:
        """Images in the split."""
        return int(self.confusion.sum())

    def table(self) -> str:
        """Per-class accuracy as aligned text: class, images, correct, accuracy."""
        width = max([len("class"), *(len(c) for c in self.classes)])
        lines = [f"{'class':<{width}}  images  correct  accuracy"]
        for r in self.per_class:
            acc = "   n/a" if r["accuracy"] != r["accuracy"] else f"{r['accuracy']:6.3f}"
            lines.append(f"{r['class']:<{width}}  {r['count']:6d}  {r['correct']:7d}    {acc}")
        lines.append(f"{'all':<{width}}  {self.n:6d}  {int(np.trace(self.confusion)):7d}    {self.accuracy:6.3f}")
        return "\n".join(lines)

    def summary(self, *, pairs: int = 5, losses: int = 5) -> str:
        """Accuracy, the per-class table, the most-confused pairs and the highest losses, as text."""
        lines = [f"Mistakes on the {self.split} split: {self.n - int(np.trace(self.confusion))} of {self.n} images "
                 f"wrong (accuracy {self.accuracy:.3f})", self.table()]
        if self.confused_pairs:
            lines.append("most confused (true -> predicted: images):")
            lines.extend(f"  {t} -> {p}: {c}" for t, p, c in self.confused_pairs[:pairs])
        if self.top_losses:
            lines.append("highest losses:")
            lines.extend(f"  #{r['index']}: {r['true']} -> {r['predicted']} (p(true) {r['prob_true']:.3f}, "
                         f"p(predicted) {r['prob_pred']:.3f}, loss {r['loss']:.3f})" for r in self.top_losses[:losses])
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return (f"Mistakes(split={self.split!r}, n={self.n}, accuracy={self.accuracy:.3f}, "
                f"confused_pairs={len(self.confused_pairs)}, top_losses={len(self.top_losses)})")


def mistakes_from_logits(logits: Any, targets: Any, classes: Sequence[str], *, split: str = "test",
                         top: int | None = TOP_DEFAULT, files: Sequence[str | None] | None = None) -> Mistakes:
    """:class:`Mistakes` from ``logits`` (N, K) and true ``targets`` (N,) (torch or numpy).

    ``top``: how many highest-loss images to list (None: all, highest first). ``files``: each image's file (N,),
    copied into the top-loss rows (a folder dataset's files; the label cleaner needs them).
    """
    z = torch.as_tensor(np.asarray(logits) if not torch.is_tensor(logits) else logits).detach().float().cpu()
    y = torch.as_tensor(np.asarray(targets) if not torch.is_tensor(targets) else targets).detach().long().cpu()
    names = tuple(str(c) for c in classes)
    k = len(names)
    if z.dim() != 2 or z.shape[1] != k:
        raise ValueError(f"logits must be (N, {k}) for {k} classes; got shape {tuple(z.shape)}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"targets must be (N,) = ({z.shape[0]},), one class index per row of logits; "
                         f"got shape {tuple(y.shape)}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 0):
        raise ValueError(f"top must be an int >= 0 or None (every image); got {top!r}")
    if files is not None and len(files) != len(y):
        raise ValueError(f"files must name one file per image ({len(y)}); got {len(files)}")
    n = len(y)
    losses = F.cross_entropy(z, y, reduction="none").numpy() if n else np.zeros(0, np.float32)
    probs = z.softmax(1).numpy() if n else np.zeros((0, k), np.float32)
    pred = z.argmax(1).numpy() if n else np.zeros(0, np.int64)
    labels = y.numpy()
    matrix = confusion_counts(labels, pred, k)
    per_class = []
    for c, name in enumerate(names):
        count, correct = int(matrix[c].sum()), int(matrix[c, c])
        per_class.append({"class": name, "count": count, "correct": correct,
                          "accuracy": correct / count if count else float("nan")})
    off = [(int(matrix[t, p]), t, p) for t in range(k) for p in range(k) if t != p and matrix[t, p] > 0]
    off.sort(key=lambda e: (-e[0], e[1], e[2]))
    pairs = [(names[t], names[p], c) for c, t, p in off]
    order = np.argsort(-losses, kind="stable")  # ties keep split order
    rows = []
    for i in order[: n if top is None else top]:
        i = int(i)
        rows.append({"index": i, "true": names[labels[i]], "predicted": names[pred[i]],
                     "prob_true": float(probs[i, labels[i]]), "prob_pred": float(probs[i, pred[i]]),
                     "loss": float(losses[i]), "file": None if files is None else files[i]})
    accuracy = float(np.trace(matrix) / n) if n else float("nan")
    for a in (losses, pred, labels, probs, matrix):
        a.setflags(write=False)
    return Mistakes(names, split, per_class, matrix, pairs, rows, accuracy, losses, pred, labels, probs)


@torch.no_grad()
def split_logits(backbone: Backbone, split: ImageSplit, *, batch_size: int = 64) -> torch.Tensor:
    """Logits (N, K) of ``backbone``'s model for every image of ``split``, in eval mode (restored after), on CPU."""
    model = backbone.model
    device = next(model.parameters()).device
    with eval_mode(model):
        out = [model(backbone.normalize(split.images[lo : lo + batch_size].to(device))).float().cpu()
               for lo in range(0, len(split), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, len(split.classes))


def split_files(data: Any, split: ImageSplit) -> list[str | None] | None:
    """Each image's file for a folder dataset (``meta["files"]`` indexed by the split's ids), else None."""
    files = (getattr(data, "meta", None) or {}).get("files")
    if not files or split.ids is None:
        return None
    return [files[i] if 0 <= i < len(files) else None for i in split.ids.tolist()]
