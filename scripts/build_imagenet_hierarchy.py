"""Build ``tl_lab/assets/wordnet/imagenet_hierarchy.json.gz``: the WordNet 3.0 noun hierarchy above ImageNet-1k.

Why this script exists: zero-shot classification (:func:`tl_lab.inside.zero_shot.zero_shot`) answers "which
ImageNet classes lie below the noun *vehicle*?" offline. ImageNet-1k's classes are WordNet 3.0 noun synsets (the
id ``n01440764`` is the noun at byte offset 01440764 of WordNet's ``data.noun``), so the answer is the WordNet
hypernym closure of the 1000 classes. Shipping all of WordNet would cost tens of MB; shipping only the synsets that
have an ImageNet class below them (and the noun lemmas that name them) keeps the file small, and this script keeps
it reproducible: anyone with Debian's ``wordnet-base`` package and the ``timm`` wheel rebuilds the same bytes.

Sources:

- WordNet 3.0 from Debian's ``wordnet-base`` (``/usr/share/wordnet``: ``data.noun``, ``index.noun``,
  ``noun.exc``), Princeton University, WordNet 3.0 license (permissive; its notice travels with the file).
- The 1000 ImageNet-1k wnids in class-index order, from ``timm/data/_info/imagenet_synsets.txt`` inside the PyPI
  wheel of ``timm`` (Apache-2.0): ``pip download --no-deps timm==1.0.31`` and pass the wheel with ``--timm-wheel``.
  Used here only; tl_lab never imports timm. The order is checked: it must be sorted (ImageNet's class index is
  the sorted wnids) and every class name tl_lab shows (``imagenet_categories()``, from torchvision) must agree
  with its synset (index 0 tench, 1 goldfish, ...).

What the file holds (JSON, gzip, deterministic bytes):

- ``wnids``: the 1000 ImageNet class ids, index order;
- ``synsets``: ``{offset: {"name": "vehicle.n.01", "lemmas": [...], "gloss": ..., "classes": [ImageNet indices
  below it, itself included]}}`` for every synset that is an ImageNet class or a (instance) hypernym of one;
- ``index``: ``{lemma: [[offset, sense number], ...]}`` for every noun lemma with at least one such synset,
  senses in WordNet's order (sense 1 is the most frequent), other senses left out;
- ``exceptions``: irregular plurals from ``noun.exc`` whose base form is in ``index`` (``geese -> goose``);
- ``license``: the WordNet 3.0 notice, which its license asks to travel with every copy.

Example::

    pip download --no-deps timm==1.0.31 -d /tmp/timm
    python scripts/build_imagenet_hierarchy.py --timm-wheel /tmp/timm/timm-1.0.31-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

WORDNET = Path("/usr/share/wordnet")
COPYRIGHT = Path("/usr/share/doc/wordnet-base/copyright")
OUT_DIR = Path(__file__).resolve().parents[1] / "tl_lab" / "assets" / "wordnet"
SYNSETS_IN_WHEEL = "timm/data/_info/imagenet_synsets.txt"
HYPERNYM_POINTERS = ("@", "@i")  # hypernym, instance hypernym

LICENSE_NOTICE = """WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

Permission to use, copy, modify and distribute this software and database and its documentation for any purpose
and without fee or royalty is hereby granted, provided that you agree to comply with the following copyright
notice and statements, including the disclaimer, and that the same appear on ALL copies of the software, database
and documentation, including modifications that you make for internal use or for distribution.

THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES,
EXPRESS OR IMPLIED.  BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR
WARRANTIES OF MERCHANT-ABILITY OR FITNESS FOR ANY PARTICULAR PURPOSE OR THAT THE USE OF THE LICENSED SOFTWARE,
DATABASE OR DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS, COPYRIGHTS, TRADEMARKS OR OTHER RIGHTS.

The name of Princeton University or Princeton may not be used in advertising or publicity pertaining to
distribution of the software and/or database.  Title to copyright in this software, database and any associated
documentation shall at all times remain with Princeton University and LICENSEE agrees to preserve same."""


def parse_data_noun(path: Path) -> dict[str, dict]:
    """``data.noun`` -> {offset: {"words": [...], "hypernyms": [...], "gloss": str}} (see ``man 5 wndb``)."""
    synsets: dict[str, dict] = {}
    with path.open(encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):  # the license header
                continue
            body, _, gloss = line.partition(" | ")
            fields = body.split()
            offset, w_cnt = fields[0], int(fields[3], 16)
            words = [fields[4 + 2 * i] for i in range(w_cnt)]
            i = 4 + 2 * w_cnt
            p_cnt = int(fields[i])
            hypernyms = []
            for j in range(p_cnt):
                symbol, target, pos = fields[i + 1 + 4 * j : i + 4 + 4 * j]
                if symbol in HYPERNYM_POINTERS and pos == "n":
                    hypernyms.append(target)
            synsets[offset] = {"words": words, "hypernyms": hypernyms, "gloss": gloss.strip()}
    return synsets


def parse_index_noun(path: Path) -> dict[str, list[str]]:
    """``index.noun`` -> {lemma: [synset offsets in sense order]}."""
    index: dict[str, list[str]] = {}
    with path.open(encoding="latin-1") as f:
        for line in f:
            if line.startswith("  "):
                continue
            fields = line.split()
            lemma, synset_cnt, p_cnt = fields[0], int(fields[2]), int(fields[3])
            index[lemma] = fields[4 + p_cnt + 2 :][:synset_cnt]
    return index


def read_wnids(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        text = z.read(SYNSETS_IN_WHEEL).decode()
    return text.split()


def check_order(wnids: list[str], synsets: dict[str, dict]) -> int:
    """The wnids must be sorted and name the classes tl_lab shows; returns how many names are a lemma verbatim."""
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        sys.exit(f"expected 1000 distinct wnids, got {len(wnids)} ({len(set(wnids))} distinct)")
    if wnids != sorted(wnids):
        sys.exit("the wnids are not sorted: ImageNet-1k's class index is the sorted wnid order")
    try:
        from tl_lab.backbones.samples import imagenet_categories
    except ImportError:
        sys.exit("tl_lab must be importable (pip install -e .) to check the wnids against its class names")
    names = imagenet_categories()
    verbatim = 0
    for i, (wnid, name) in enumerate(zip(wnids, names)):
        words = {w.lower() for w in synsets[wnid[1:]]["words"]}
        if name.lower().replace(" ", "_") in words:
            verbatim += 1
    for i, expected in ((0, "tench"), (1, "goldfish"), (281, "tabby"), (999, "toilet tissue")):
        if names[i] != expected:
            sys.exit(f"class {i} is {names[i]!r}, expected {expected!r}")
    if verbatim < 900:  # torchvision renamed some classes (e.g. 'crane' twice); nearly all must still match
        sys.exit(f"only {verbatim} of 1000 class names are a lemma of their wnid's synset: wrong order?")
    return verbatim


def synset_name(offset: str, synsets: dict, index: dict) -> str:
    """NLTK-style name: the synset's first word, ``.n.``, that word's sense number for this synset."""
    word = synsets[offset]["words"][0].lower()
    return f"{word}.n.{index[word].index(offset) + 1:02d}"


def build(wheel: Path) -> tuple[dict, int]:
    synsets = parse_data_noun(WORDNET / "data.noun")
    index = parse_index_noun(WORDNET / "index.noun")
    wnids = read_wnids(wheel)
    verbatim = check_order(wnids, synsets)
    below: dict[str, set[int]] = defaultdict(set)
    for cls, wnid in enumerate(wnids):
        stack, seen = [wnid[1:]], set()
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            below[s].add(cls)
            stack.extend(synsets[s]["hypernyms"])
    out_synsets = {
        off: {"name": synset_name(off, synsets, index), "lemmas": synsets[off]["words"],
              "gloss": synsets[off]["gloss"], "classes": sorted(below[off])}
        for off in sorted(below)
    }
    out_index = {}
    for lemma in sorted(index):
        senses = [[off, n + 1] for n, off in enumerate(index[lemma]) if off in below]
        if senses:
            out_index[lemma] = senses
    exceptions = {}
    for line in (WORDNET / "noun.exc").read_text(encoding="latin-1").splitlines():
        inflected, *bases = line.split()
        base = next((b for b in bases if b in out_index), None)
        if base is not None and inflected not in out_index:
            exceptions[inflected] = base
    data = {
        "format": 1,
        "source": "WordNet 3.0 (Debian wordnet-base: data.noun, index.noun, noun.exc); ImageNet-1k wnids in class "
                  f"order from {SYNSETS_IN_WHEEL} in the timm wheel {wheel.name}",
        "license": LICENSE_NOTICE,
        "wnids": wnids,
        "synsets": out_synsets,
        "index": out_index,
        "exceptions": exceptions,
    }
    return data, verbatim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timm-wheel", type=Path, required=True, help="the timm wheel (pip download --no-deps timm)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    data, verbatim = build(args.timm_wheel)
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as gz:  # mtime 0: same bytes each build
        gz.write(raw)
    payload = buffer.getvalue()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "imagenet_hierarchy.json.gz").write_bytes(payload)
    manifest = {
        "name": "imagenet_hierarchy",
        "file": "imagenet_hierarchy.json.gz",
        "description": "The WordNet 3.0 noun hierarchy above the 1000 ImageNet-1k classes: every synset that is an "
                       "ImageNet class or a hypernym of one, with the ImageNet classes below it, and the noun lemmas "
                       "(with sense numbers) that name those synsets. Used by tl_lab.zero_shot.",
        "source": "WordNet 3.0, Princeton University (https://wordnet.princeton.edu), as packaged by Debian "
                  "(wordnet-base: /usr/share/wordnet/data.noun, index.noun, noun.exc)",
        "wnid_source": f"{SYNSETS_IN_WHEEL} in the PyPI wheel {args.timm_wheel.name} (timm, Apache-2.0), used only "
                       "by this build script; checked sorted and against torchvision's class names "
                       f"({verbatim} of 1000 names are verbatim lemmas of their synset)",
        "build": "python scripts/build_imagenet_hierarchy.py --timm-wheel timm-1.0.31-py3-none-any.whl",
        "license": "WordNet 3.0 license (Princeton University; permissive, BSD-like, notice must be kept)",
        "license_text": COPYRIGHT.read_text().split("License: WordNet3.0\n", 1)[-1].split("\nFiles:", 1)[0]
        if COPYRIGHT.exists() else LICENSE_NOTICE,
        "counts": {"imagenet_classes": len(data["wnids"]), "synsets": len(data["synsets"]),
                   "lemmas": len(data["index"]), "plural_exceptions": len(data["exceptions"])},
        "bytes": len(payload),
        "json_bytes": len(raw),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {args.out / 'imagenet_hierarchy.json.gz'}: {len(payload)} bytes ({len(raw)} as JSON), "
          f"{manifest['counts']}")


if __name__ == "__main__":
    main()
