"""Zero-shot classification through ImageNet's label hierarchy: no labelled target image at all.

Why: a network trained on ImageNet already answers "which of 1000 things is this?". When the target classes are
themselves kinds of things ImageNet knows (*vehicle*, *animal*, *building*), WordNet, the noun hierarchy
ImageNet's classes come from, says which of the 1000 classes each target class covers, and the pretrained head's
probabilities become target-class scores without a single labelled example. This is the oldest form of
zero-shot transfer through a label hierarchy (Rohrbach et al. 2010; the "convex combination of semantic
embeddings" of Norouzi et al. 2014 uses the same ImageNet posteriors), the baseline a few-shot method must beat.

How a target class ``c`` is scored from the head's softmax ``p`` (1000 ImageNet probabilities), with ``S_c`` the
ImageNet classes mapped to ``c``:

- ``score="mean"`` (default): ``s_c = (1/|S_c|) * sum_{i in S_c} p_i``;
- ``score="sum"``: ``s_c = sum_{i in S_c} p_i``, the probability the network puts on "a kind of c" as a whole.

The prediction is ``argmax_c s_c``. The sum is the principled posterior *if* the softmax were calibrated on the
target images; on clip art it is not: the network spreads a little probability over hundreds of classes, and a
target class that covers 398 ImageNet classes (*animal*) collects that spread from every image, so the sum
favours broad classes. The mean divides the spread out (it compares "how much, per covered ImageNet class"); it
under-rates a broad class only when just a few of its members fire. Lesson 10 measures both on clip art.

Mapping class names to ImageNet classes (:func:`map_classes`): a class name is split on ``_``, ``-`` and spaces;
the whole phrase is tried as a WordNet noun (``"domestic_cat"``), then each part (``"fruit_vegetable"`` ->
*fruit* + *vegetable*; ``"prepared_food"`` -> *food*); plurals are reduced as WordNet's morphy does (``"boats"``).
``class_map={"pets": ["dog", "domestic cat"]}`` gives terms instead: a WordNet noun, an explicit sense
(``"plant.n.02"``), an ImageNet class name (``"tabby"``) or wnid (``"n02123045"``). A given term that collects no
ImageNet class (``"cake"``: WordNet files no ImageNet class below it) is left out with a
:class:`ZeroShotTermWarning` and listed by :meth:`ZeroShotResult.report`, as long as another term of the class
collects something; a class that collects nothing raises :class:`NoImageNetClass`, a ValueError whose fields
(``target``, ``tried``, ``given``, ``numerals``, ``shared``) say why. A noun with several senses
that have ImageNet classes below them is resolved to the sense with the most ImageNet classes that no other
target class could claim (the sense that keeps the target classes apart), then the one with the most classes,
then WordNet's first; :meth:`ZeroShotResult.report` shows every choice and the senses passed over. An ImageNet
class that falls below two target classes goes to the one whose term is more specific (fewer classes below it),
and is dropped from both on a tie.

Example::

    >>> data = load_dataset("clipart", shots=1)
    >>> zs = zero_shot(load_backbone(), data, class_map={"electronics": ["electronic equipment", "computer"]})
    >>> round(zs.test_acc, 2), zs.class_map["plant"]
    (0.58, ('daisy', "yellow lady's slipper"))
    >>> zs.predict(data.test.images[:4]).shape
    (4,)
"""

from __future__ import annotations

import difflib
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F

from tl_lab._checks import check_choice
from tl_lab._eval_mode import eval_mode
from tl_lab._memo import WeakMemo
from tl_lab.backbones.samples import imagenet_categories
from tl_lab.inside.stage_features import _weights_key
from tl_lab.training.mistakes import TOP_DEFAULT, Mistakes, mistakes_from_logits, split_files
from tl_lab.inside.wordnet import (
    Sense,
    imagenet_wnids,
    known_lemmas,
    normalize_term,
    senses,
)

if TYPE_CHECKING:
    from tl_lab.backbones.registry import Backbone
    from tl_lab.data.datasets import DatasetSplits, ImageSplit

__all__ = ["ClassMatch", "NoImageNetClass", "ZeroShotResult", "ZeroShotTermWarning", "default_class_map",
           "imagenet_below", "map_classes", "zero_shot", "SCORES", "DEFAULT_CLASS_MAPS"]

SCORES = ("mean", "sum")
_STOPWORDS = frozenset({"and", "or", "of", "the", "a", "an", "other", "misc", "various", "with", "in", "on"})

# Terms for the classes of the built-in datasets whose names WordNet reads in another sense. Chosen from what the
# words mean, not tuned on any accuracy: WordNet's only noun "electronics" is the branch of physics; the devices are
# "electronic equipment" (cassette player, cellular telephone, iPod ...), and WordNet files computers under
# "machine", so "computer" is named too (the mapping of issue #16 and lesson 10). Digits have none: no ImageNet
# class is a numeral.
DEFAULT_CLASS_MAPS: dict[str, dict[str, tuple[str, ...]]] = {
    "clipart": {"electronics": ("electronic equipment", "computer")},
}


class NoImageNetClass(ValueError):
    """A target class collects no ImageNet class, so zero-shot through ImageNet's labels cannot score it.

    A ValueError (the message names the class and the fix) with fields for code that decides what to do next
    (a widget shows a note instead of a number): ``target`` the class; ``tried`` the terms tried (from its name,
    or the ``class_map`` terms given); ``given`` True when those terms came from ``class_map``; ``numerals`` True
    when every class of the data is a numeral (ImageNet has no digit class, so no terms can help); ``shared`` True
    when it did collect ImageNet classes but every one of them went to another target class.
    """

    def __init__(self, message: str, *, target: str, tried: Sequence[str] = (), given: bool = False,
                 numerals: bool = False, shared: bool = False) -> None:
        super().__init__(message)
        self.target = target
        self.tried = tuple(tried)
        self.given = given
        self.numerals = numerals
        self.shared = shared


class ZeroShotTermWarning(UserWarning):
    """A ``class_map`` term collects no ImageNet class and was left out (its class kept its other terms).

    Silence it with ``warnings.filterwarnings("ignore", category=ZeroShotTermWarning)``; turn it into an error
    with ``"error"`` instead of ``"ignore"``."""


def default_class_map(data: DatasetSplits) -> dict[str, tuple[str, ...]]:
    """Terms for the classes of a built-in dataset that its class names alone do not map (see
    ``DEFAULT_CLASS_MAPS``); ``{}`` for any other data, or when the data's classes are not the ones expected.

    >>> default_class_map(load_dataset("clipart", shots=1))
    {'electronics': ('electronic equipment', 'computer')}
    """
    given = DEFAULT_CLASS_MAPS.get(getattr(data, "name", ""), {})
    return dict(given) if set(given) <= set(data.classes) else {}


@dataclass(frozen=True)
class ClassMatch:
    """How one target class was mapped: the terms, the sense chosen for each, the senses passed over, and the
    ImageNet classes it collects (after overlaps with other target classes are resolved)."""

    target: str
    terms: tuple[str, ...]
    senses: tuple[Sense, ...]  # the chosen sense of each term, in ``terms`` order
    passed_over: tuple[tuple[Sense, ...], ...]  # the other senses of each term
    classes: tuple[int, ...]  # ImageNet class indices
    given: bool  # True when the terms came from ``class_map``
    lost: tuple[int, ...] = ()  # ImageNet classes given to another, more specific target class (or tied)
    empty_terms: tuple[str, ...] = ()  # given terms that collect no ImageNet class, left out

    def describe(self, categories: Sequence[str] | None = None) -> str:
        names = categories or imagenet_categories()
        how = "given" if self.given else "from its name"
        parts = []
        for term, sense, others in zip(self.terms, self.senses, self.passed_over):
            alt = f"; passed over {', '.join(f'{o.name} ({len(o.classes)})' for o in others)}" if others else ""
            parts.append(f"{term!r} -> {sense.name} '{sense.gloss.split(';')[0][:60]}'{alt}")
        shown = ", ".join(names[i] for i in self.classes[:8]) + (" ..." if len(self.classes) > 8 else "")
        lost = f"; {len(self.lost)} shared with another class left out" if self.lost else ""
        empty = (f"\n    left out, no ImageNet class below: {', '.join(map(repr, self.empty_terms))}"
                 if self.empty_terms else "")
        return (f"{self.target} ({how}): {'; '.join(parts)}\n    {len(self.classes)} ImageNet classes: {shown}{lost}"
                f"{empty}")


def _term_senses(term: str) -> tuple[Sense, ...]:
    """WordNet senses of ``term``; failing that, the ImageNet class(es) it names by name or wnid."""
    found = senses(term)
    if found:
        return found
    key = normalize_term(term)
    wnids = imagenet_wnids()
    if re.fullmatch(r"n\d{8}", key) and key in wnids:
        i = wnids.index(key)
        return (Sense(imagenet_categories()[i], "an ImageNet class", (imagenet_categories()[i],), (i,), key[1:]),)
    hits = tuple(i for i, name in enumerate(imagenet_categories()) if normalize_term(name) == key)
    if hits:
        name = imagenet_categories()[hits[0]]
        return (Sense(name, "an ImageNet class name", (name,), hits, ""),)
    return ()


def imagenet_below(term: str, *, sense: int | None = None) -> tuple[str, ...]:
    """Names of the ImageNet classes below a noun, in class-index order: ``imagenet_below("boat")`` ->
    ``('canoe', 'fireboat', 'gondola', 'lifeboat', 'speedboat', 'yawl')``. An empty tuple means no ImageNet class
    is a kind of ``term``. A noun with several senses gives the one with the most ImageNet classes (the rule
    :func:`map_classes` applies to a class alone: *plant* -> the daisy and the lady's slipper, not the lumbermill);
    ``sense=k`` picks the k-th sense with ImageNet classes in WordNet's order, or name it: ``"plant.n.01"``."""
    found = _term_senses(term)
    if not found:
        return ()
    if sense is None:
        sense = max(range(len(found)), key=lambda k: (len(found[k].classes), -k))
    if not 0 <= sense < len(found):
        raise ValueError(f"{term!r} has {len(found)} senses with ImageNet classes; sense must be 0..{len(found) - 1}")
    return tuple(imagenet_categories()[i] for i in found[sense].classes)


def _automatic_terms(name: str) -> tuple[list[str], list[str]]:
    """(terms that matched, everything tried) for a class name: the whole phrase, else its parts."""
    parts = [p for p in re.split(r"[\s_\-]+", name.strip().lower()) if p]
    whole = "_".join(parts)
    tried = [whole]
    if whole and _term_senses(whole):
        return [whole], tried
    found = []
    for part in parts:
        if part in _STOPWORDS or len(parts) == 1:
            continue
        tried.append(part)
        if _term_senses(part):
            found.append(part)
    return found, tried


def _no_match_error(target: str, tried: Sequence[str], all_classes: Sequence[str]) -> NoImageNetClass:
    suggestions = difflib.get_close_matches(normalize_term(target), known_lemmas(), n=3, cutoff=0.75)
    hint = f" Nouns close to it that do: {', '.join(s.replace('_', ' ') for s in suggestions)}." if suggestions else ""
    msg = (f"no ImageNet class lies below the class {target!r}: tried the WordNet nouns "
           f"{', '.join(repr(t) for t in tried)}.{hint} Give it terms, each a WordNet noun, a sense such as "
           f"'plant.n.02' or an ImageNet class name: zero_shot(backbone, data, class_map={{{target!r}: "
           f"['...', '...']}}) (tl_lab.inside.zero_shot.imagenet_below(term) shows what a term collects).")
    numerals = all(c.strip().isdigit() for c in all_classes)
    if numerals:
        msg += (" These classes are numerals (handwritten digits?): ImageNet's 1000 classes are animals, objects "
                "and scenes, none of them a digit, so zero-shot through ImageNet's labels cannot name them; "
                "learn from a few labelled images instead (tl_lab.nearest_mean, tl_lab.fit).")
    return NoImageNetClass(msg, target=target, tried=tried, numerals=numerals)


def map_classes(classes: Sequence[str], class_map: Mapping[str, str | Sequence[str]] | None = None
                ) -> tuple[ClassMatch, ...]:
    """Map each target class to ImageNet classes through WordNet (see the module docstring for the rules).

    ``class_map`` gives terms for some or all classes; the others are mapped from their names. A given term that
    collects no ImageNet class is left out with a :class:`ZeroShotTermWarning` (``ClassMatch.empty_terms`` lists
    it). Raises :class:`NoImageNetClass` (a ValueError naming the class and how to give terms) when a class
    collects nothing.

    >>> [len(m.classes) for m in map_classes(["vehicle", "building"])]
    [67, 14]
    """
    matches = _map_classes(classes, class_map)
    _warn_empty_terms(matches, stacklevel=3)
    return matches


def _warn_empty_terms(matches: Sequence[ClassMatch], *, stacklevel: int) -> None:
    for m in matches:
        if m.empty_terms:
            used = ", ".join(repr(t) for t in m.terms)
            warnings.warn(f"class_map[{m.target!r}]: {', '.join(map(repr, m.empty_terms))} collect(s) no ImageNet "
                          f"class and is left out; {m.target!r} uses {used}. "
                          "tl_lab.inside.zero_shot.imagenet_below(term) shows what a term collects.",
                          ZeroShotTermWarning, stacklevel=stacklevel)


def _map_classes(classes: Sequence[str], class_map: Mapping[str, str | Sequence[str]] | None = None
                 ) -> tuple[ClassMatch, ...]:
    class_map = dict(class_map or {})
    unknown = [k for k in class_map if k not in classes]
    if unknown:
        raise ValueError(f"class_map names {', '.join(map(repr, unknown))}, not a class of the data; "
                         f"the classes are: {', '.join(classes)}")
    candidates: dict[str, list[tuple[str, tuple[Sense, ...]]]] = {}
    empty: dict[str, tuple[str, ...]] = {}
    for c in classes:
        if c in class_map:
            given = class_map[c]
            terms = [given] if isinstance(given, str) else list(given)
            if not terms:
                raise ValueError(f"class_map[{c!r}] is empty; give at least one term, e.g. ['dog']")
            wrong = [t for t in terms if not isinstance(t, str)]
            if wrong:
                raise ValueError(f"class_map[{c!r}]: {wrong[0]!r} is not a string; give terms as words, e.g. "
                                 f"class_map={{{c!r}: ['dog', 'domestic cat']}}")
            empty[c] = tuple(t for t in terms if not _term_senses(t))
            terms = [t for t in terms if t not in empty[c]]
            if not terms:
                raise NoImageNetClass(
                    f"class_map[{c!r}]: no ImageNet class lies below any of its terms "
                    f"{', '.join(map(repr, empty[c]))}: none is a WordNet noun with ImageNet classes below it or an "
                    "ImageNet class name. Give at least one that is: a broader noun (e.g. 'animal', 'device', "
                    "'food') or an ImageNet class name from tl_lab.backbones.samples.imagenet_categories() "
                    "(tl_lab.inside.zero_shot.imagenet_below(term) shows what a term collects).",
                    target=c, tried=empty[c], given=True)
        else:
            terms, tried = _automatic_terms(c)
            if not terms:
                raise _no_match_error(c, tried, classes)
        candidates[c] = [(t, _term_senses(t)) for t in terms]

    def reachable(exclude: str) -> set[int]:
        return {i for c, ts in candidates.items() if c != exclude for _, ss in ts for s in ss for i in s.classes}

    chosen: dict[str, list[tuple[str, Sense, tuple[Sense, ...]]]] = {}
    for c, ts in candidates.items():
        others = reachable(c)
        chosen[c] = []
        for term, ss in ts:
            best = max(range(len(ss)), key=lambda k: (len(set(ss[k].classes) - others), len(ss[k].classes), -k))
            chosen[c].append((term, ss[best], tuple(s for k, s in enumerate(ss) if k != best)))
    # specificity of ImageNet class i for target c: the size of the smallest chosen sense of c containing i
    specificity: dict[str, dict[int, int]] = {}
    for c, picks in chosen.items():
        spec: dict[int, int] = {}
        for _, sense, _ in picks:
            for i in sense.classes:
                spec[i] = min(spec.get(i, 10**6), len(sense.classes))
        specificity[c] = spec
    matches = []
    for c in classes:
        keep, lost = [], []
        for i in sorted(specificity[c]):
            rivals = [specificity[o][i] for o in classes if o != c and i in specificity[o]]
            (keep if not rivals or specificity[c][i] < min(rivals) else lost).append(i)
        picks = chosen[c]
        if not keep:
            raise NoImageNetClass(f"every ImageNet class below {c!r} also lies below another class, more "
                                  f"specifically or as specifically; give {c!r} distinct terms with "
                                  f"class_map={{{c!r}: [...]}}", target=c, tried=tuple(t for t, _, _ in picks),
                                  given=c in class_map, shared=True)
        matches.append(ClassMatch(c, tuple(t for t, _, _ in picks), tuple(s for _, s, _ in picks),
                                  tuple(p for _, _, p in picks), tuple(keep), c in class_map, tuple(lost),
                                  empty.get(c, ())))
    return tuple(matches)


def _check_imagenet_head(backbone: Backbone) -> None:
    meta = backbone.meta
    if meta.get("cut_at"):
        why = f"it was cut after {meta['cut_at']!r} with a new head (cut_at)"
    elif not meta.get("pretrained", True):
        why = "its weights are a random init (pretrained=False)"
    elif meta.get("categories") is None or meta.get("num_classes", 1000) != 1000:
        why = f"its head was replaced by a {meta.get('num_classes')}-class one (num_classes=..., or a trained run)"
    else:
        return
    raise ValueError(f"zero-shot needs a backbone with its pretrained ImageNet head, but {backbone.name}'s is gone: "
                     f"{why}. Use tl_lab.load_backbone({backbone.name!r}) (no num_classes, pretrained=True).")


# per model (weakly), images tensor, size and state of the weights: the ImageNet probabilities (read-only)
_PROBS: WeakMemo[np.ndarray] = WeakMemo(per_owner=8)  # a few splits at a few sizes per model


def imagenet_probabilities(backbone: Backbone, images: torch.Tensor, *, image_size: int | None = None,
                           batch_size: int = 64) -> np.ndarray:
    """Softmax over the 1000 ImageNet classes (N, 1000) for uint8 images (N, 3, H, W), resized first to
    ``image_size`` when given (bilinear, antialiased). Eval mode, no gradients; the model's mode is restored.
    Cached per model, images tensor and state of the weights (scoring by sum and by mean reuses one pass)."""
    _check_imagenet_head(backbone)
    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    model = backbone.model
    size = image_size or int(images.shape[-1])
    backbone.check_input_size(size)
    key = (id(images), images.data_ptr(), tuple(images.shape), images._version, size, _weights_key([model]))

    def forward() -> np.ndarray:
        probs = _forward_probabilities(backbone, images, size, batch_size)
        probs.setflags(write=False)
        return probs

    return _PROBS.get(model, key, forward, alive=(images,))


def _forward_probabilities(backbone: Backbone, images: torch.Tensor, size: int, batch_size: int) -> np.ndarray:
    model = backbone.model
    dev = next(model.parameters()).device
    out = []
    with eval_mode(model):
        with torch.no_grad():
            for lo in range(0, len(images), batch_size):
                x = backbone.normalize(images[lo : lo + batch_size].to(dev))
                if size != x.shape[-1]:
                    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                out.append(torch.softmax(model(x).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 1000), np.float32)


@dataclass
class ZeroShotResult:
    """Zero-shot scores on the target classes; ``test_acc`` on ``data.test``; ``predict`` new images."""

    classes: tuple[str, ...]
    matches: tuple[ClassMatch, ...]
    score: str
    test_acc: float
    test_predictions: np.ndarray
    chance: float
    image_size: int | None
    seconds: float
    backbone: Backbone = field(repr=False)
    _test_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    data: DatasetSplits | None = field(default=None, repr=False)  # the data it was scored on

    @property
    def class_map(self) -> dict[str, tuple[str, ...]]:
        """Target class -> the names of the ImageNet classes it collected."""
        names = imagenet_categories()
        return {m.target: tuple(names[i] for i in m.classes) for m in self.matches}

    def scores_from_probabilities(self, probs: np.ndarray) -> np.ndarray:
        return _class_scores(probs, self.matches, self.score)

    def scores(self, images: torch.Tensor | ImageSplit) -> np.ndarray:
        """(N, K) target-class scores for uint8 images (N, 3, H, W) or an ImageSplit."""
        x = images if torch.is_tensor(images) else images.images
        return self.scores_from_probabilities(imagenet_probabilities(self.backbone, x, image_size=self.image_size))

    def predict(self, images: torch.Tensor | ImageSplit) -> np.ndarray:
        """Predicted target-class indices (N,) for uint8 images (N, 3, H, W) or an ImageSplit."""
        return self.scores(images).argmax(axis=1)

    def logits(self, images: torch.Tensor | ImageSplit) -> np.ndarray:
        """(N, K) ``log s_c``: their softmax is the scores renormalised over the target classes,
        ``s_c / sum_j s_j`` (a probability per target class), and their argmax is :meth:`predict`."""
        return np.log(np.maximum(self.scores(images), 1e-30))

    def mistakes(self, split: str = "test", *, top: int | None = TOP_DEFAULT,
                 data: DatasetSplits | None = None) -> Mistakes:
        """What zero-shot gets wrong on ``split`` of ``data`` (default: the data it was scored on), as
        :meth:`tl_lab.training.run.Run.mistakes`; probabilities are the scores renormalised over the classes."""
        data = data if data is not None else self.data
        if data is None:
            raise ValueError("pass data=: the DatasetSplits whose split to look at")
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        part = getattr(data, split)
        return mistakes_from_logits(self.logits(part), part.labels, self.classes, split=split, top=top,
                                    files=split_files(data, part))

    def per_class_acc(self, labels: np.ndarray | torch.Tensor | None = None) -> dict[str, float]:
        """Test accuracy (recall) per target class: where the hierarchy helps and where it fails."""
        y = np.asarray(labels if labels is not None else self._test_labels)
        return {c: float((self.test_predictions[y == k] == k).mean()) if (y == k).any() else float("nan")
                for k, c in enumerate(self.classes)}

    @property
    def empty_terms(self) -> dict[str, tuple[str, ...]]:
        """Target class -> the ``class_map`` terms that collected no ImageNet class and were left out."""
        return {m.target: m.empty_terms for m in self.matches if m.empty_terms}

    def report(self) -> str:
        """One paragraph per class: the terms, the sense chosen for each (and those passed over), what it collected;
        last, the given terms left out because no ImageNet class lies below them."""
        categories = imagenet_categories()
        head = f"zero-shot ({self.score} of the ImageNet probabilities): test accuracy {self.test_acc:.3f} " \
               f"(chance {self.chance:.3f})"
        lines = [head, *(m.describe(categories) for m in self.matches)]
        if self.empty_terms:
            lines.append("terms left out (no ImageNet class below them): " + "; ".join(
                f"{c}: {', '.join(map(repr, ts))}" for c, ts in self.empty_terms.items()))
        return "\n".join(lines)

    def to_records(self) -> list[dict]:
        return [{"class": m.target, "terms": list(m.terms), "senses": [s.name for s in m.senses],
                 "imagenet_classes": len(m.classes), "given": m.given, "empty_terms": list(m.empty_terms)}
                for m in self.matches]


def _class_scores(probs: np.ndarray, matches: Sequence[ClassMatch], score: str) -> np.ndarray:
    out = np.empty((len(probs), len(matches)), np.float64)
    for k, m in enumerate(matches):
        block = probs[:, list(m.classes)]
        out[:, k] = block.sum(axis=1) if score == "sum" else block.mean(axis=1)
    return out


def zero_shot(
    backbone: Backbone,
    data: DatasetSplits,
    class_map: Mapping[str, str | Sequence[str]] | None = None,
    *,
    score: Literal["mean", "sum"] = "mean",
    image_size: int | None = None,
    batch_size: int = 64,
) -> ZeroShotResult:
    """Classify ``data.test`` with no labelled image: each class scored from the pretrained ImageNet head.

    Args:
        backbone: a backbone with its pretrained 1000-class ImageNet head (``load_backbone(name)``); a random
            init, a replaced head or a ``cut_at`` network raises a ValueError saying so.
        data: any DatasetSplits (only ``classes`` and ``test`` are used: no training image is looked at).
        class_map: terms for some or all classes (WordNet nouns, senses such as ``"plant.n.02"``, ImageNet class
            names or wnids); the other classes are mapped from their names. A term that collects no ImageNet class
            is left out with a :class:`ZeroShotTermWarning` when the class has another that does.
        score: ``"mean"`` (default) or ``"sum"`` of each class's ImageNet probabilities (see the module docstring).
        image_size: resize the images to this many pixels first (default: as loaded).

    Returns a :class:`ZeroShotResult` (``.test_acc``, ``.class_map``, ``.predict(images)``, ``.report()``).
    Raises :class:`NoImageNetClass` (a ValueError) when a class collects no ImageNet class.
    """
    check_choice("score", [score], SCORES)
    _check_imagenet_head(backbone)
    start = time.perf_counter()
    matches = _map_classes(data.classes, class_map)
    _warn_empty_terms(matches, stacklevel=3)
    probs = imagenet_probabilities(backbone, data.test.images, image_size=image_size, batch_size=batch_size)
    predictions = _class_scores(probs, matches, score).argmax(axis=1)
    labels = data.test.labels.numpy()
    acc = float((predictions == labels).mean()) if len(labels) else float("nan")
    return ZeroShotResult(tuple(data.classes), matches, score, acc, predictions, 1 / len(data.classes), image_size,
                          time.perf_counter() - start, backbone, labels, data)
