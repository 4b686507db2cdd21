"""The WordNet noun hierarchy above ImageNet-1k's classes, offline: which ImageNet classes lie below a noun.

ImageNet-1k's 1000 classes are WordNet 3.0 noun synsets, so a noun such as *vehicle* names a set of ImageNet
classes: every class whose chain of hypernyms ("is a kind of") passes through it (cab, canoe, airliner ...). The
shipped file ``tl_lab/assets/wordnet/imagenet_hierarchy.json.gz`` (built by ``scripts/build_imagenet_hierarchy.py``
from Debian's ``wordnet-base``; provenance and the WordNet 3.0 license in ``manifest.json`` beside it) holds only
the synsets with an ImageNet class below them and the noun lemmas naming them, about 140 kB.

Example::

    >>> senses("plant")                    # the industrial plant has one ImageNet class, the flora two
    (Sense('plant.n.01', 1 ImageNet classes), Sense('plant.n.02', 2 ImageNet classes))
    >>> from tl_lab.backbones.samples import imagenet_categories
    >>> [imagenet_categories()[i] for i in senses("plant")[1].classes]
    ['daisy', "yellow lady's slipper"]
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

HIERARCHY_FILE = Path(__file__).resolve().parents[1] / "assets" / "wordnet" / "imagenet_hierarchy.json.gz"

__all__ = ["Sense", "senses", "imagenet_wnids", "normalize_term", "HIERARCHY_FILE"]


@dataclass(frozen=True)
class Sense:
    """One WordNet noun sense (a synset) with the ImageNet classes below it (indices in the 1000-class order)."""

    name: str  # NLTK-style: first lemma, "n", WordNet sense number of that lemma ("plant.n.02")
    gloss: str
    lemmas: tuple[str, ...]
    classes: tuple[int, ...]
    offset: str  # the WordNet 3.0 data.noun offset; an ImageNet class's wnid is "n" + offset

    def __repr__(self) -> str:
        return f"Sense({self.name!r}, {len(self.classes)} ImageNet classes)"


@functools.lru_cache(maxsize=1)
def _hierarchy() -> dict:
    with gzip.open(HIERARCHY_FILE, "rt", encoding="utf-8") as f:
        return json.load(f)


@functools.lru_cache(maxsize=None)
def _sense(offset: str) -> Sense:
    s = _hierarchy()["synsets"][offset]
    return Sense(s["name"], s["gloss"], tuple(s["lemmas"]), tuple(s["classes"]), offset)


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class ids (``"n01440764"`` is tench), in class-index order."""
    return tuple(_hierarchy()["wnids"])


def normalize_term(term: str) -> str:
    """A WordNet lemma spelling: lower case, words joined by ``_`` (``"Domestic cat"`` -> ``"domestic_cat"``)."""
    return re.sub(r"[\s_]+", "_", term.strip().lower())


_DETACH = (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"), ("ies", "y"),
           ("s", ""))


def _base_forms(lemma: str) -> list[str]:
    """The lemma and the singulars WordNet's morphy would try (irregular plurals from noun.exc, then suffixes)."""
    head, sep, last = lemma.rpartition("_")
    forms = [lemma]
    exceptions = _hierarchy()["exceptions"]
    if lemma in exceptions:
        forms.append(exceptions[lemma])
    if last in exceptions:
        forms.append(head + sep + exceptions[last])
    for suffix, ending in _DETACH:
        if last.endswith(suffix) and len(last) > len(suffix) + 1:
            forms.append(head + sep + last[: -len(suffix)] + ending)
    return forms


def senses(term: str) -> tuple[Sense, ...]:
    """Every noun sense of ``term`` that has ImageNet classes below it, in WordNet's sense order (most frequent
    first). ``term`` is a noun (``"vehicle"``, ``"domestic cat"``, a plural such as ``"boats"``) or an explicit
    sense (``"plant.n.02"``); senses without any ImageNet class below them are left out, so ``()`` means "no
    ImageNet class is a kind of this".
    """
    data = _hierarchy()
    key = normalize_term(term)
    if m := re.fullmatch(r"(.+)\.n\.(\d+)", key):
        lemma, number = m.group(1), int(m.group(2))
        return tuple(_sense(off) for off, n in data["index"].get(lemma, []) if n == number)
    for form in _base_forms(key):
        if form in data["index"]:
            return tuple(_sense(off) for off, _ in data["index"][form])
    return ()


def known_lemmas() -> tuple[str, ...]:
    """Every noun lemma with ImageNet classes below it (for suggestions when a term matches nothing)."""
    return tuple(_hierarchy()["index"])
