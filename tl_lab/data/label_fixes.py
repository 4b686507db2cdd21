"""A learner's decisions about their own folder's labels: "relabel this file as ...", "leave this file out".

Why: a learner's folder has mislabelled images (a cat photo in ``dog/``) and images that belong to no class. The
images a trained model finds hardest (the highest-loss training images, :class:`tl_lab.widgets.LabelCleaner`)
are where they hide. The decisions are written to one small JSON file in the folder, ``tl_lab_labels.json``,
which :func:`tl_lab.load_dataset` ("folder") honours and ``data.report`` lists. No image is ever moved, renamed or
deleted: the decisions can be read, changed and undone by editing or deleting that file. (fast.ai's
``ImageClassifierCleaner`` moves and deletes files itself, which its users lose images to; see fastai#3084.)

The file::

    {"version": 1,
     "relabel": {"dog/IMG_0042.jpg": "cat"},
     "leave_out": ["dog/blurry.png"]}

Paths are relative to the folder, with ``/`` between parts (as :func:`relative_key` writes them). A decision for a
file that is not there any more (or was skipped as unreadable) is reported, not an error; a relabel to a class
the folder does not have is an error naming the classes.

Example::

    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> path = write_label_fixes(root, LabelFixes(relabel={"dog/a.png": "cat"}, leave_out=("dog/b.png",)))
    >>> path.name, read_label_fixes(root) == LabelFixes({"dog/a.png": "cat"}, ("dog/b.png",))
    ('tl_lab_labels.json', True)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from tl_lab.data.imagefiles import LABELS_FILE, SkippedFile

__all__ = ["LABELS_FILE", "AppliedFixes", "LabelFixes", "LabelFixesError", "apply_label_fixes", "read_label_fixes",
           "relative_key", "write_label_fixes"]

VERSION = 1
_KEYS = ("version", "relabel", "leave_out")


class LabelFixesError(ValueError):
    """The decisions file cannot be used as it is; the message says what to change."""


@dataclass(frozen=True)
class LabelFixes:
    """Decisions about a folder's files: ``relabel`` {relative path: class name}, ``leave_out`` (relative paths)."""

    relabel: Mapping[str, str] = field(default_factory=dict)
    leave_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        relabel = {}
        for key, cls in dict(self.relabel).items():
            if not isinstance(key, str) or not isinstance(cls, str) or not cls.strip():
                raise LabelFixesError('relabel must map file paths (relative to the folder) to class names, e.g. '
                                      f'{{"dog/img1.jpg": "cat"}}; got {key!r}: {cls!r}')
            relabel[_check_key(key)] = cls
        out = []
        for key in self.leave_out if not isinstance(self.leave_out, str) else [self.leave_out]:
            if not isinstance(key, str):
                raise LabelFixesError('leave_out must be a list of file paths relative to the folder, e.g. '
                                      f'["dog/blurry.png"]; got {key!r}')
            key = _check_key(key)
            if key not in out:
                out.append(key)
        both = sorted(set(relabel) & set(out))
        if both:
            raise LabelFixesError(f"{both[0]!r} is both relabelled and left out; keep one decision for each file")
        object.__setattr__(self, "relabel", dict(sorted(relabel.items())))
        object.__setattr__(self, "leave_out", tuple(sorted(out)))

    def __bool__(self) -> bool:
        return bool(self.relabel or self.leave_out)

    def to_json(self) -> dict:
        return {"version": VERSION, "relabel": dict(self.relabel), "leave_out": list(self.leave_out)}

    def decision(self, key: str) -> str | None:
        """``"leave out"``, the class a file is relabelled as, or None for a file without a decision."""
        return "leave out" if key in self.leave_out else self.relabel.get(key)


def _check_key(key: str) -> str:
    text = key.replace("\\", "/")
    p = PurePosixPath(text)
    if not text or p.is_absolute() or ".." in p.parts or (len(text) > 1 and text[1] == ":"):
        raise LabelFixesError(f"file paths in {LABELS_FILE} are relative to the folder, like 'dog/img1.jpg'; got "
                              f"{key!r}")
    return p.as_posix()


def relative_key(root: str | os.PathLike, path: str | os.PathLike) -> str:
    """The key of ``path`` in the decisions file: relative to ``root``, parts joined by ``/``."""
    root_p, file_p = Path(root), Path(path)
    try:
        rel = file_p.relative_to(root_p)
    except ValueError:
        rel = file_p.resolve().relative_to(root_p.resolve())
    return rel.as_posix()


def read_label_fixes(root: str | os.PathLike) -> LabelFixes:
    """The decisions in ``root/tl_lab_labels.json`` (no decision when the file does not exist)."""
    path = Path(root) / LABELS_FILE
    if not path.exists():
        return LabelFixes()
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise LabelFixesError(f"{path} is not valid JSON (line {error.lineno}: {error.msg}); fix that line, or delete "
                              "the file to drop every decision") from None
    except OSError as error:
        raise LabelFixesError(f"cannot read {path} ({error.strerror or error})") from None
    if not isinstance(info, dict):
        raise LabelFixesError(f'{path} must hold one JSON object: {{"version": 1, "relabel": {{...}}, '
                              f'"leave_out": [...]}}')
    unknown = sorted(set(info) - set(_KEYS))
    if unknown:
        raise LabelFixesError(f"{path} has unknown key(s) {unknown}; it holds only 'version', 'relabel' and "
                              "'leave_out'")
    if info.get("version") != VERSION:
        raise LabelFixesError(f"{path}: version must be {VERSION}; got {info.get('version')!r}")
    relabel, leave_out = info.get("relabel", {}), info.get("leave_out", [])
    if not isinstance(relabel, dict):
        raise LabelFixesError('relabel must map file paths (relative to the folder) to class names, e.g. '
                              f'{{"dog/img1.jpg": "cat"}}; got {type(relabel).__name__}')
    if not isinstance(leave_out, list):
        raise LabelFixesError('leave_out must be a list of file paths relative to the folder, e.g. ["dog/blurry.png"]; '
                              f"got {type(leave_out).__name__}")
    return LabelFixes(relabel, tuple(leave_out))


def write_label_fixes(root: str | os.PathLike, fixes: LabelFixes) -> Path:
    """Write ``fixes`` to ``root/tl_lab_labels.json`` atomically (a temporary file renamed over it): a reader never
    sees half a file. The same decisions always give the same bytes (keys sorted), so saving twice changes nothing.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root} to write {LABELS_FILE} into")
    path = root / LABELS_FILE
    text = json.dumps(fixes.to_json(), indent=1, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".tl_lab_labels.", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class AppliedFixes:
    """What :func:`apply_label_fixes` did: which rows to keep, their labels, and the report lines."""

    keep: np.ndarray  # (N,) bool
    labels: np.ndarray  # (N,) int64, after relabelling
    relabelled: tuple[str, ...]
    left_out: tuple[str, ...]
    missing: tuple[str, ...]  # decisions for files that were not among the images read
    report: tuple[SkippedFile, ...]

    def meta(self) -> dict:
        return {"file": LABELS_FILE, "relabelled": list(self.relabelled), "left_out": list(self.left_out),
                "missing": list(self.missing)}


def apply_label_fixes(fixes: LabelFixes, keys: Sequence[str], labels: np.ndarray, classes: Sequence[str],
                      *, root: str | os.PathLike = "") -> AppliedFixes:
    """Apply ``fixes`` to images with relative paths ``keys`` (N,) and ``labels`` (N,) indexing ``classes``.

    A relabelled image gets its new class; a left-out one is dropped (``keep`` False). Raises
    :class:`LabelFixesError` for a relabel to a class not in ``classes``.
    """
    classes = tuple(classes)
    bad = sorted({c for c in fixes.relabel.values() if c not in classes})
    if bad:
        first = next(k for k, c in fixes.relabel.items() if c == bad[0])
        raise LabelFixesError(f"{LABELS_FILE} relabels {first!r} as {bad[0]!r}, which is not a class of this folder; "
                              f"classes: {', '.join(classes)}. Change it to one of them (or make a folder {bad[0]!r})")
    index = {k: i for i, k in enumerate(keys)}
    labels = np.asarray(labels, dtype=np.int64).copy()
    keep = np.ones(len(labels), dtype=bool)
    report: list[SkippedFile] = []
    relabelled, left_out, missing = [], [], []
    where = Path(root)
    for key, cls in fixes.relabel.items():
        i = index.get(key)
        if i is None:
            missing.append(key)
            continue
        old = classes[labels[i]]
        labels[i] = classes.index(cls)
        relabelled.append(key)
        report.append(SkippedFile(str(where / key), f"relabelled as {cls!r} (was {old!r}) by your {LABELS_FILE}"))
    for key in fixes.leave_out:
        i = index.get(key)
        if i is None:
            missing.append(key)
            continue
        keep[i] = False
        left_out.append(key)
        report.append(SkippedFile(str(where / key), f"left out by your {LABELS_FILE}"))
    for key in missing:
        report.append(SkippedFile(str(where / key), f"named in {LABELS_FILE}, but no image of that name was read "
                                  "(moved, renamed or unreadable); its decision is not used. Remove it from the file"))
    return AppliedFixes(keep, labels, tuple(relabelled), tuple(left_out), tuple(missing), tuple(report))
