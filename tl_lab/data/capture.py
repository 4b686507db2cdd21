"""Save camera frames into a learner's folder, one sub-folder per class, as ``load_dataset("folder")`` reads it.

Why this module exists: the camera widget (:mod:`tl_lab.widgets.camera`) only moves bytes between the browser and
the kernel; everything that touches the disk is here, so it is testable without a browser. A frame is checked
before it is written (it must decode as a PNG or JPEG image of at least :data:`~tl_lab.data.imagefiles.MIN_SIDE`
pixels a side), written atomically (a hidden temporary file, then a hard link under a fresh unique name, so the
folder never holds half a file and two captures never overwrite each other), and "undo last" deletes only files
this :class:`CaptureFolder` wrote itself, newest first: a learner's own photos in the same folder are never touched.

Class names become folder names, so they are checked: no ``/`` or ``\\`` (a name like ``../x`` would write outside
the folder), no hidden or tool names that the reader skips (``.x``, ``__MACOSX``), and not ``train`` / ``val`` /
``test``, which :func:`~tl_lab.data.imagefiles.read_image_folder` reads as split folders.

Example::

    >>> import io, tempfile
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (32, 32), "red").save(buf, format="PNG")
    >>> folder = CaptureFolder(tempfile.mkdtemp())
    >>> path = folder.save("cat", buf.getvalue())
    >>> path.parent.name, path.suffix, folder.counts()
    ('cat', '.png', {'cat': 1})
    >>> folder.undo() == path, folder.counts()
    (True, {'cat': 0})
"""

from __future__ import annotations

import io
import itertools
import os
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from tl_lab.data.imagefiles import IGNORED_DIR_NAMES, IMAGE_EXTENSIONS, MIN_SIDE, is_ignored

__all__ = [
    "FRAME_FORMATS",
    "MAX_FRAME_BYTES",
    "RESERVED_CLASS_NAMES",
    "CaptureFolder",
    "InvalidFrameError",
    "check_class_name",
    "decode_frame",
    "top_k",
]

FRAME_FORMATS = {"PNG": ".png", "JPEG": ".jpg"}  # what a browser canvas encodes (toBlob), and the file extension
RESERVED_CLASS_NAMES = frozenset({"train", "val", "test", "valid", "validation"})
MAX_FRAME_BYTES = 20_000_000  # a 4K PNG frame is ~25 MB raw but far less encoded; anything bigger is not a frame
MAX_CLASS_NAME = 80
_FORBIDDEN_CHARS = '/\\<>:"|?*'
_COUNTER = itertools.count()


class InvalidFrameError(ValueError):
    """A frame from the camera that is not a valid image (corrupt, empty, too small, or not PNG/JPEG)."""


def check_class_name(name: str) -> str:
    """``name`` with surrounding spaces removed, or a ``ValueError`` saying why it cannot be a class folder.

        >>> check_class_name("  my cup ")
        'my cup'
        >>> check_class_name("../x")
        Traceback (most recent call last):
        ...
        ValueError: class name '../x' contains '/': a class is one folder inside your image folder; use a plain name such as 'cat' or 'my_cup'
    """
    if not isinstance(name, str):
        raise TypeError(f"a class name must be text, got {type(name).__name__}")
    clean = name.strip()
    if not clean:
        raise ValueError("the class name is empty: type a name such as 'cat' or 'my_cup' first")
    bad = next((c for c in clean if c in _FORBIDDEN_CHARS), None)
    if bad is not None:
        raise ValueError(f"class name {name!r} contains {bad!r}: a class is one folder inside your image folder; "
                         "use a plain name such as 'cat' or 'my_cup'")
    if any(ord(c) < 32 or ord(c) == 127 for c in clean):
        raise ValueError(f"class name {name!r} contains a control character; use letters, digits, spaces, - or _")
    if clean in (".", "..") or clean.startswith("."):
        raise ValueError(f"class name {name!r} starts with '.': such folders are hidden and load_dataset skips "
                         "them; use a plain name such as 'cat'")
    if clean.lower() in IGNORED_DIR_NAMES:
        raise ValueError(f"class name {name!r} is a tool folder name that load_dataset skips; choose another name")
    if clean.lower() in RESERVED_CLASS_NAMES:
        raise ValueError(f"class name {name!r} is reserved: load_dataset reads folders named train, val and test as "
                         f"splits, not classes; name the class e.g. '{clean}_images'")
    if len(clean) > MAX_CLASS_NAME:
        raise ValueError(f"class name is {len(clean)} characters long; keep it under {MAX_CLASS_NAME}")
    return clean


def decode_frame(data: bytes | bytearray | memoryview) -> Image.Image:
    """The frame as an RGB PIL image, or :class:`InvalidFrameError` saying what is wrong with it.

    Accepts the PNG or JPEG bytes a browser canvas makes (``canvas.toBlob``); the image is fully decoded here, so a
    truncated file is caught before it reaches the folder.
    """
    raw = bytes(data)
    if not raw:
        raise InvalidFrameError("the camera sent an empty frame; is the camera still running? Click Start camera")
    if len(raw) > MAX_FRAME_BYTES:
        raise InvalidFrameError(f"the frame is {len(raw):,} bytes, more than {MAX_FRAME_BYTES:,}; not a camera frame")
    try:
        with Image.open(io.BytesIO(raw)) as im:
            fmt = im.format
            if fmt not in FRAME_FORMATS:
                raise InvalidFrameError(f"the frame is a {fmt} image; the camera widget sends PNG or JPEG")
            im.load()  # decode every pixel: a truncated file fails here
            image = im.convert("RGB")
    except InvalidFrameError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidFrameError(f"the frame is not a valid image ({exc}); capture it again") from exc
    if min(image.size) < MIN_SIDE:
        raise InvalidFrameError(f"the frame is only {image.size[0]}x{image.size[1]} pixels; at least {MIN_SIDE} "
                                "a side are needed (is the camera's video running?)")
    image.info["format"] = fmt
    return image


def top_k(probabilities: Sequence[float] | Iterable[float], classes: Sequence[str], k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` most probable classes as ``(name, probability)``, most probable first (ties: class order).

        >>> top_k([0.1, 0.7, 0.2], ["a", "b", "c"], k=2)
        [('b', 0.7), ('c', 0.2)]
    """
    probs = [float(p) for p in probabilities]
    if len(probs) != len(classes):
        raise ValueError(f"{len(probs)} probabilities for {len(classes)} classes; they must match")
    order = sorted(range(len(probs)), key=lambda i: (-probs[i], i))
    return [(str(classes[i]), probs[i]) for i in order[: max(0, int(k))]]


class CaptureFolder:
    """A learner's image folder that camera frames are saved into: ``root/<class>/cam-<time>-<id>.jpg``.

    ``save`` writes one frame (checked first); ``undo`` deletes the newest file this object wrote that still exists
    and returns its path (None when there is nothing left to undo); ``counts`` counts the image files of every class
    folder, the learner's own included, as :func:`~tl_lab.data.load_dataset` would find them. Thread-safe.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is a file; pass a folder to save the camera's images in")
        self._written: list[Path] = []
        self._lock = threading.Lock()

    def class_dir(self, name: str) -> Path:
        return self.root / check_class_name(name)

    def classes(self) -> list[str]:
        """The class folders that exist now, sorted (hidden and tool folders left out, as the reader does)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not is_ignored(p) and p.name.lower() not in RESERVED_CLASS_NAMES)

    def counts(self, classes: Iterable[str] = ()) -> dict[str, int]:
        """Image files per class folder (``classes`` adds names whose folder may not exist yet, counted 0)."""
        names = sorted(set(self.classes()) | {check_class_name(c) for c in classes})
        return {name: _count_images(self.root / name) for name in names}

    def save(self, class_name: str, data: bytes | bytearray | memoryview) -> Path:
        """Check the frame, then write it into the class's folder under a new unique name; returns the path."""
        folder = self.class_dir(class_name)
        image = decode_frame(data)
        suffix = FRAME_FORMATS[image.info["format"]]
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".cam-{os.getpid()}-{secrets.token_hex(6)}.part"
        with open(tmp, "xb") as f:
            f.write(bytes(data))
            f.flush()
            os.fsync(f.fileno())
        try:
            path = _link_unique(tmp, folder, suffix)
        finally:
            tmp.unlink(missing_ok=True)
        with self._lock:
            self._written.append(path)
        return path

    @property
    def written(self) -> list[Path]:
        """The files this object wrote and has not undone (oldest first)."""
        with self._lock:
            return list(self._written)

    def undo(self) -> Path | None:
        """Delete the newest file this object wrote that still exists; returns it, or None when none is left."""
        with self._lock:
            while self._written:
                path = self._written.pop()
                try:
                    path.unlink()
                except FileNotFoundError:  # the learner deleted it already; undo the one before
                    continue
                return path
        return None


def _count_images(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.rglob("*")
               if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not any(
                   part.startswith(".") for part in p.relative_to(folder).parts))


def _link_unique(tmp: Path, folder: Path, suffix: str) -> Path:
    """Give ``tmp`` a fresh name in ``folder`` without ever replacing a file (a hard link fails if the name exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        path = folder / f"cam-{stamp}-{next(_COUNTER):04d}{secrets.token_hex(2)}{suffix}"
        try:
            os.link(tmp, path)
            return path
        except FileExistsError:
            continue
        except OSError:  # a filesystem without hard links (some network or FAT drives): rename, checked first
            if path.exists():
                continue
            os.replace(tmp, path)
            return path
    raise RuntimeError(f"could not find a free file name in {folder}")  # pragma: no cover - 100 collisions
