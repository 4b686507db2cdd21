"""Seeing the mistakes: what any tl_lab classifier gets wrong on a split, and why (its attributions).

fast.ai shows the highest-loss images (``plot_top_losses``) and the most-confused pairs; Teachable Machine shows
per-class accuracy and a confusion matrix. tl_lab gives all of them for every classifier the kit builds, from the
classifier's own predictions, and explains each mistake with the attribution methods of :func:`explain`:

- a trained run: ``run.mistakes("test")`` (the kept model);
- nearest-class-mean prototypes: ``nearest_mean(bb, data).mistakes("test")``;
- zero-shot through the label hierarchy: ``zero_shot(bb, data).mistakes("test")``;
- any of them, or a function returning logits: :func:`find_mistakes`.

The numbers (:class:`Mistakes`, :func:`mistakes_from_logits`) are computed in :mod:`tl_lab.training.mistakes`,
below this layer, so that a Run can compute its own; they are re-exported here.

Example::

    >>> data = load_dataset("digits", shots=3, image_size=32)
    >>> always_zero = lambda images: torch.zeros(len(images), 10) + torch.eye(10)[0]   # says "0" to everything
    >>> m = find_mistakes(always_zero, data.test)
    >>> m.n == len(data.test), m.per_class[0]["accuracy"], m.per_class[1]["accuracy"]
    (True, 1.0, 0.0)
    >>> {p for _, p, _ in m.confused_pairs}, len(m.top_losses)
    ({'0'}, 12)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from tl_lab.data.datasets import DatasetSplits, ImageSplit
from tl_lab.inside.attribution import Attribution, explain, get_method
from tl_lab.training.mistakes import (
    TOP_DEFAULT,
    Mistakes,
    confusion_counts,
    mistakes_from_logits,
    split_files,
    split_logits,
)

if TYPE_CHECKING:
    from tl_lab.training.run import Run

__all__ = ["Mistakes", "confusion_counts", "explain_mistakes", "find_mistakes", "mistakes_from_logits",
           "top_loss_images", "TOP_DEFAULT"]


def find_mistakes(classifier: Any, split: ImageSplit | str = "test", *, data: DatasetSplits | None = None,
                  top: int | None = TOP_DEFAULT, classes: tuple[str, ...] | None = None) -> Mistakes:
    """:class:`Mistakes` of ``classifier`` on ``split``.

    ``classifier``: a training Run, a :func:`~tl_lab.inside.prototypes.nearest_mean` or
    :func:`~tl_lab.inside.zero_shot.zero_shot` result (anything with ``.logits(images)``), a Backbone whose head
    fits the classes, or a function ``images (N, 3, H, W) uint8 -> logits (N, K)``. ``split``: an ImageSplit, or
    "train" / "val" / "test" of ``data`` (default: the classifier's own data). ``classes``: names (default: the
    split's).
    """
    if isinstance(split, str):
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test' (or an ImageSplit), got {split!r}")
        data = data if data is not None else getattr(classifier, "data", None)
        if not isinstance(data, DatasetSplits):
            raise ValueError(f"pass data= (a DatasetSplits) to name the split {split!r}, or pass the ImageSplit itself")
        name, part = split, getattr(data, split)
    elif isinstance(split, ImageSplit):
        part = split
        name = next((n for n in ("train", "val", "test") if data is not None and getattr(data, n) is split), "images")
    else:
        raise TypeError(f"split must be an ImageSplit or 'train' / 'val' / 'test'; got {type(split).__name__}")
    names = tuple(classes) if classes is not None else part.classes
    logits = _logits(classifier, part)
    files = split_files(data, part) if data is not None else None
    return mistakes_from_logits(logits, part.labels, names, split=name, top=top, files=files)


def _logits(classifier: Any, part: ImageSplit) -> torch.Tensor | np.ndarray:
    if getattr(classifier, "tasks", None) is not None:
        raise ValueError("mistakes look at one set of classes; this run learned several tasks. Train a single-task "
                         "run (fit without tasks=) to see its mistakes")
    backbone = getattr(classifier, "backbone", None)
    if hasattr(classifier, "logits"):  # prototypes, zero-shot
        return classifier.logits(part)
    if backbone is not None and hasattr(classifier, "history"):  # a Run
        return split_logits(backbone, part)
    if hasattr(classifier, "normalize") and hasattr(classifier, "model"):  # a Backbone
        return split_logits(classifier, part)
    if callable(classifier):
        return classifier(part.images)
    raise TypeError(f"find_mistakes needs a Run, a nearest_mean or zero_shot result, a Backbone or a function of the "
                    f"images; got {type(classifier).__name__}")


def top_loss_images(m: Mistakes, split: ImageSplit) -> torch.Tensor:
    """The images of ``m.top_losses`` (uint8, (n, 3, H, W)), highest loss first, from the split they came from."""
    if len(split) != m.n:
        raise ValueError(f"these mistakes are on {m.n} images; pass the split they came from (it has {len(split)})")
    return split.images[[r["index"] for r in m.top_losses]]


def explain_mistakes(run: Run | Any, m: Mistakes, split: ImageSplit | None = None, *, method: str = "grad_cam",
                     target: Literal["predicted", "true"] = "predicted", **options: Any) -> Attribution:
    """Attribution maps of the top-loss images of ``m`` for ``run``'s model, with one of :func:`list_methods`.

    ``target="predicted"`` (default) asks "what made the model say the wrong class?"; ``"true"``: "what in the
    image speaks for its real class?". ``split``: the images ``m`` came from (default: ``run.data``'s split named
    ``m.split``). ``options`` go to :func:`explain` (``n_steps``, ``window`` ...). Prototype and zero-shot
    classifiers have no single class output to attribute, so only a Run (or a Backbone) is explained.
    """
    get_method(method)  # an unknown method is refused before any work, naming the methods
    if hasattr(run, "logits"):  # its backbone's head is ImageNet's: class k there is not class k of these mistakes
        raise ValueError(f"explain_mistakes explains a trained run's own classes; a {type(run).__name__} scores "
                         "classes through the pretrained network, which has no output per class to attribute. Show "
                         "its mistakes without maps: top_loss_figure(m, top_loss_images(m, split))")
    if target not in ("predicted", "true"):
        raise ValueError(f"target must be 'predicted' or 'true'; got {target!r}")
    if split is None:
        data = getattr(run, "data", None)
        if not isinstance(data, DatasetSplits) or m.split not in ("train", "val", "test"):
            raise ValueError("pass split=: the ImageSplit these mistakes were found on")
        split = getattr(data, m.split)
    images = top_loss_images(m, split)
    index = {c: i for i, c in enumerate(m.classes)}
    targets = [index[r[target]] for r in m.top_losses]
    return explain(method, run, images, targets, classes=m.classes, **options)

