"""Read a learner's image files robustly: every file either loads as RGB or is reported with a reason.

Why this module exists: real folders are messy. Phones write EXIF-rotated JPEGs, scanners write CMYK or 16-bit
files, screenshots are RGBA, downloads are truncated, and zip files made on a Mac carry ``__MACOSX`` folders full
of ``._`` stubs. A lesson must not crash on the first odd file, and it must not hide it either, so each reader
here returns pixels or a :class:`SkippedFile` that says what was wrong and what to do.

Example::

    >>> from tl_lab.data.imagefiles import read_image, scan_class_folders
    >>> scan = scan_class_folders("my_photos")            # doctest: +SKIP
    >>> image = read_image(scan.files[0][0], size=128)    # doctest: +SKIP
    >>> image.shape, image.dtype                          # doctest: +SKIP
    ((128, 128, 3), dtype('uint8'))
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "LABELS_FILE",
    "MAX_DECODE_PIXELS",
    "MIN_SIDE",
    "ClassFolderScan",
    "FolderImages",
    "SkippedFile",
    "UnreadableImageError",
    "fit_square",
    "ignored_reason",
    "is_ignored",
    "missing_folder_message",
    "read_image",
    "read_image_folder",
    "scan_class_folders",
    "to_rgb",
]

# The learner's label decisions (tl_lab.data.label_fixes) in the dataset folder itself: read, never reported.
LABELS_FILE = "tl_lab_labels.json"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif", ".ppm"})
# Junk that operating systems and tools leave in folders; ignored silently (it is never a learner's image).
IGNORED_FILE_NAMES = frozenset({"thumbs.db", ".ds_store", "desktop.ini", "ehthumbs.db", "icon\r"})
IGNORED_DIR_NAMES = frozenset({"__macosx", ".ipynb_checkpoints", "__pycache__", ".git", ".thumbnails"})
# Images whose decoded size would exceed this many pixels are reduced while decoding (JPEG draft mode) or
# skipped. Pillow's own decompression-bomb check stays on; this limit is stricter so a 2-core laptop survives.
MAX_DECODE_PIXELS = 50_000_000
# Images with a shorter side than this are skipped: web folders carry 1x1 tracking pixels and tiny icons, which
# upscaled to 128 px would be a flat colour labelled as a class.
MIN_SIDE = 8


@dataclass(frozen=True)
class SkippedFile:
    """A file (or folder) that was not used, and why. ``str(skipped)`` reads as one line of a report."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class UnreadableImageError(ValueError):
    """Raised by :func:`read_image` with a reason a learner can act on."""


@dataclass(frozen=True)
class ClassFolderScan:
    """Result of :func:`scan_class_folders`: class names (sorted), ``(path, class index)`` pairs, what was
    reported and how many junk files were ignored."""

    classes: tuple[str, ...]
    files: tuple[tuple[Path, int], ...]
    report: tuple[SkippedFile, ...]
    ignored: int


def is_ignored(path: Path) -> bool:
    """True for hidden files and folders, OS junk (``Thumbs.db``, ``.DS_Store``) and ``__MACOSX`` stubs."""
    name = path.name
    lower = name.lower()
    if name.startswith(".") or lower in IGNORED_FILE_NAMES:
        return True
    return path.is_dir() and lower in IGNORED_DIR_NAMES


def ignored_reason(path: Path) -> str:
    """Why :func:`is_ignored` left ``path`` out, as a report line's reason."""
    lower = path.name.lower()
    if path.is_dir():
        return "hidden or tool folder (e.g. __MACOSX, .ipynb_checkpoints); not read"
    if lower in IGNORED_FILE_NAMES:
        return "system file the operating system writes (not an image); ignored"
    return "hidden file (name starts with '.'); ignored. Rename it if it is one of your images"


def _not_a_file_reason(entry: Path) -> str | None:
    """The reason a directory entry that is neither a folder nor a regular file is left out (None otherwise)."""
    if entry.is_symlink() and not entry.exists():
        try:
            target = os.readlink(entry)
        except OSError:
            target = "?"
        return f"link that leads nowhere (its target {target} does not exist); point it at a file or remove it"
    if entry.is_dir() or entry.is_file():
        return None
    return "not a regular file (a socket, pipe or device); not read"


def _files_below(folder: Path) -> list[Path]:
    """Every file below ``folder`` (recursive, sorted), without following links; unreadable folders give []."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    found: list[Path] = []
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            found.extend(_files_below(entry))
        else:
            found.append(entry)
    return found


def _report_ignored(entry: Path, report: list[SkippedFile]) -> int:
    """Name ``entry`` (and, for a folder, every file inside it) in ``report``; returns how many files that is."""
    if entry.is_dir() and not entry.is_symlink():
        inside = _files_below(entry)
        reason = f"inside {entry.name}/, a hidden or tool folder (e.g. __MACOSX, .ipynb_checkpoints); ignored"
        report.extend(SkippedFile(str(path), reason) for path in inside)
        if not inside:
            report.append(SkippedFile(str(entry), ignored_reason(entry)))
        return len(inside)
    report.append(SkippedFile(str(entry), ignored_reason(entry)))
    return 1


def _skip(entry: Path, report: list[SkippedFile]) -> int | None:
    """The one rule for entries that are never read (links that lead nowhere and other odd entries, hidden files and
    OS junk): report ``entry`` and return how many ignored files it counted; None when it is to be read."""
    odd = _not_a_file_reason(entry)
    if odd is not None:
        report.append(SkippedFile(str(entry), odd))
        return 0
    if is_ignored(entry):
        return _report_ignored(entry, report)
    return None


def _walk_files(folder: Path, report: list[SkippedFile], seen: set[Path] | None = None) -> tuple[list[Path], int]:
    """All non-ignored files below ``folder`` (sorted, recursive) and the number ignored. Ignored files, links
    that lead nowhere and unreadable folders are reported; a link back to a folder already visited is reported
    and not followed twice."""
    seen = set() if seen is None else seen
    real = folder.resolve()
    if real in seen:
        report.append(SkippedFile(str(folder), f"link to a folder already read ({real}); not read twice"))
        return [], 0
    seen.add(real)
    try:
        entries = sorted(folder.iterdir())
    except OSError as error:
        report.append(SkippedFile(str(folder), f"cannot list this folder ({error.strerror or error})"))
        return [], 0
    found: list[Path] = []
    ignored = 0
    for entry in entries:
        skipped = _skip(entry, report)
        if skipped is not None:
            ignored += skipped
        elif entry.is_dir():
            sub, sub_ignored = _walk_files(entry, report, seen)
            found.extend(sub)
            ignored += sub_ignored
        else:
            found.append(entry)
    return found, ignored


def missing_folder_message(what: str, root: Path) -> str:
    """``"<what> not found: photos (absolute path /home/me/photos; working folder /home/me)"``: a relative path
    alone does not tell a learner where Python looked (a notebook's working folder is the notebook's folder)."""
    return f"{what} not found: {root} (absolute path {root.absolute()}; working folder {Path.cwd()})"


def scan_class_folders(root: str | os.PathLike) -> ClassFolderScan:
    """List the images of an ImageFolder-style tree: ``root/<class name>/<any depth>/<image file>``.

    Every file that will not be read is reported with its reason: non-image extensions, hidden files and OS
    junk (also counted in ``ignored``), links that lead nowhere; class folders without any image file are
    reported and left out. Files are not opened here (see :func:`read_image`).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(missing_folder_message("image folder", root))
    class_dirs: list[Path] = []
    report: list[SkippedFile] = []
    ignored = 0
    for entry in sorted(root.iterdir()):
        if entry.name == LABELS_FILE and entry.is_file():
            continue  # the learner's label decisions, applied by load_dataset
        skipped = _skip(entry, report)
        if skipped is not None:
            ignored += skipped
        elif entry.is_dir():
            class_dirs.append(entry)
        else:
            report.append(SkippedFile(str(entry), "file directly in the dataset folder; put images in class folders"))
    classes: list[str] = []
    files: list[tuple[Path, int]] = []
    for class_dir in class_dirs:
        paths, n_ignored = _walk_files(class_dir, report)
        ignored += n_ignored
        images = []
        for path in paths:
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(path)
            else:
                report.append(SkippedFile(str(path), f"not an image file (extension {path.suffix or 'none'!r})"))
        if not images:
            report.append(SkippedFile(str(class_dir), "empty class folder (no image files); class left out"))
            continue
        files.extend((path, len(classes)) for path in images)
        classes.append(class_dir.name)
    return ClassFolderScan(tuple(classes), tuple(files), tuple(report), ignored)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white.

    16-bit and 32-bit greyscale (``I;16``, ``I``, ``F``) are rescaled to 0-255 instead of being clipped, which
    is what ``Image.convert("RGB")`` would do (a 16-bit scan would come out almost white).
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if (mode == "P" and "transparency" in image.info) or mode in {"RGBA", "LA", "PA", "La", "RGBa"}:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            scale = 65535.0
        else:
            finite = values[np.isfinite(values)]
            top = float(finite.max()) if finite.size else 1.0
            scale = 255.0 if top <= 255.0 else (65535.0 if top <= 65535.0 else top)
        grey = np.clip(np.nan_to_num(values) / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def fit_square(image: Image.Image, size: int) -> np.ndarray:
    """Resize so the short side is ``size``, then crop the centre square; returns ``(size, size, 3)`` uint8."""
    fitted = ImageOps.fit(to_rgb(image), (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))
    return np.asarray(fitted, dtype=np.uint8).copy()


def read_image(path: str | os.PathLike, *, size: int, max_pixels: int | None = None) -> np.ndarray:
    """Decode one image file to a ``(size, size, 3)`` uint8 RGB array, or raise :class:`UnreadableImageError`.

    - EXIF orientation is applied (``ImageOps.exif_transpose``), so phone photos stand upright.
    - The format is read from the content, not the extension (a PNG named ``.jpg`` loads).
    - JPEGs are decoded at reduced scale (``Image.draft``, at least twice ``size``), so very large ones load;
      other images over ``max_pixels`` (default :data:`MAX_DECODE_PIXELS`) are skipped with a reason instead of
      exhausting memory. Pillow's decompression-bomb check is left on.
    - Truncated files are rejected (``ImageFile.LOAD_TRUNCATED_IMAGES`` is not touched).
    """
    path = Path(path)
    max_pixels = MAX_DECODE_PIXELS if max_pixels is None else max_pixels
    try:
        n_bytes = path.stat().st_size
    except OSError as error:
        raise UnreadableImageError(f"cannot read file ({error.__class__.__name__}: {error.strerror or error})") from None
    if n_bytes == 0:
        raise UnreadableImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own, stricter size check follows; the warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as error:
        raise UnreadableImageError(f"image too large to decode safely ({error}); downscale it and retry") from None
    except UnidentifiedImageError:
        raise UnreadableImageError("not an image Pillow can read (unknown or damaged format)") from None
    except PermissionError:
        raise UnreadableImageError("cannot read file (permission denied)") from None
    except OSError as error:
        raise UnreadableImageError(f"truncated or damaged image file ({error}); re-download or re-save it") from None
    with image:
        width, height = image.size
        if width < 1 or height < 1:
            raise UnreadableImageError(f"image has no pixels ({width}x{height})")
        if min(width, height) < MIN_SIDE:
            raise UnreadableImageError(
                f"image too small ({width}x{height} px; at least {MIN_SIDE} px a side), likely an icon or a tracking pixel"
            )
        if image.format == "JPEG":
            # Decode at 1/2, 1/4 or 1/8 scale when that still leaves twice the target size: much faster for
            # phone photos, and the way a 100-megapixel JPEG is read without exhausting memory.
            image.draft("RGB", (2 * size, 2 * size))
        if image.size[0] * image.size[1] > max_pixels:
            raise UnreadableImageError(
                f"image is {width}x{height} ({width * height / 1e6:.0f} MP), over the "
                f"{max_pixels / 1e6:.0f} MP decode limit; downscale it and retry"
            )
        try:
            image.load()
        except OSError as error:
            reason = f"truncated or damaged image data ({error}); re-download or re-save it"
            raise UnreadableImageError(reason) from None
        except (ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise UnreadableImageError(f"corrupt image data ({error})") from None
        try:
            upright = ImageOps.exif_transpose(image)
        except Exception:  # noqa: BLE001 - broken EXIF must not cost the learner the image
            upright = image
        try:
            return fit_square(upright if upright is not None else image, size)
        except (ValueError, OSError, TypeError) as error:
            raise UnreadableImageError(f"cannot convert this {image.mode} image to RGB ({error})") from None


@dataclass(frozen=True)
class FolderImages:
    """Everything :func:`read_image_folder` found: decoded images, labels, which split folder each came from
    (``"all"`` for a flat layout), the classes kept, the report and the layout name."""

    images: np.ndarray  # (N, size, size, 3) uint8
    labels: np.ndarray  # (N,) int64
    split_of: np.ndarray  # (N,) str: "all" | "train" | "val" | "test"
    paths: tuple[Path, ...]  # (N,) the file of each image
    classes: tuple[str, ...]
    report: tuple[SkippedFile, ...]
    layout: str  # "class folders", "class folders (in train/)", "train/test", "train/val (val folder used as test)"
    ignored: int


_SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
EXPECTED_LAYOUT = (
    "expected layout: root/<class name>/<images> with at least two class folders, or root/train/<class name>/... "
    "and root/test/<class name>/... (optionally root/val/<class name>/...)"
)


def read_image_folder(root: str | os.PathLike, *, size: int) -> FolderImages:
    """Read a learner's folder: ``root/<class>/...`` or ``root/train`` + ``root/test`` (+ ``root/val``).

    ``root/train`` + ``root/val`` without a test folder uses the val folder as the held-out test split; a
    folder holding only ``train/`` is read as class folders inside it.

    Every file is decoded with :func:`read_image`; what fails is reported, never raised. Classes left without
    a readable training image are reported and dropped. Raises ``FileNotFoundError`` for a missing ``root`` and
    ``ValueError`` (saying which layout is expected) when fewer than two classes remain.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(missing_folder_message("dataset folder", root))
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is a file; pass the folder that holds one sub-folder per class")
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not is_ignored(p)}
    found = {k: next((subdirs[n] for n in names if n in subdirs), None) for k, names in _SPLIT_FOLDERS.items()}
    train, val, test = found["train"], found["val"], found["test"]
    if train is not None and test is not None:
        layout, parts = "train/test", {"train": train, "test": test, **({"val": val} if val is not None else {})}
    elif train is not None and val is not None:  # train + val only: the val folder is the held-out test split
        layout, parts = "train/val (val folder used as test)", {"train": train, "test": val}
    elif train is not None and len(subdirs) == 1:  # only root/train: its class folders are the dataset
        layout, parts = "class folders (in train/)", {"all": train}
    else:
        layout, parts = "class folders", {"all": root}
    scans = {split: scan_class_folders(path) for split, path in parts.items()}
    main = "all" if "all" in parts else "train"
    classes = scans[main].classes
    if len(classes) < 2:
        raise ValueError(f"found {len(classes)} class folder(s) with images in {parts[main]}; {EXPECTED_LAYOUT}")
    report: list[SkippedFile] = []
    outside = 0
    if parts != {"all": root}:  # split folders: whatever else lies in root is not read, and is named
        used = {path.resolve() for path in parts.values()}
        for entry in sorted(root.iterdir()):
            if (entry.resolve() in used and entry.is_dir()) or (entry.name == LABELS_FILE and entry.is_file()):
                continue
            odd = _not_a_file_reason(entry)
            if odd is not None:
                report.append(SkippedFile(str(entry), odd))
            elif is_ignored(entry):
                outside += _report_ignored(entry, report)
            else:
                reason = f"outside the {', '.join(sorted(p.name + '/' for p in parts.values()))} folder(s); not read"
                for path in _files_below(entry) if entry.is_dir() else [entry]:
                    report.append(SkippedFile(str(path), reason))
    images, labels, split_of, paths = [], [], [], []
    for split, scan in scans.items():
        report.extend(scan.report)
        for path, local in scan.files:
            name = scan.classes[local]
            if name not in classes:
                report.append(SkippedFile(str(path), f"class {name!r} has no folder in {parts[main]}; skipped"))
                continue
            try:
                images.append(read_image(path, size=size))
            except UnreadableImageError as error:
                report.append(SkippedFile(str(path), str(error)))
                continue
            except Exception as error:  # noqa: BLE001 - one odd file must not stop a lesson; it is reported
                reason = f"unexpected error while reading ({error.__class__.__name__}: {error})"
                report.append(SkippedFile(str(path), reason))
                continue
            labels.append(classes.index(name))
            split_of.append(split)
            paths.append(path)
    labels_arr = np.asarray(labels, dtype=np.int64)
    split_arr = np.asarray(split_of, dtype=str)
    in_main = np.bincount(labels_arr[split_arr == main], minlength=len(classes))
    keep_classes = tuple(c for c, n in zip(classes, in_main) if n > 0)
    for c, n in zip(classes, in_main):
        if n == 0:
            report.append(SkippedFile(str(parts[main] / c), "no readable image in this class folder; class left out"))
            for path, label in zip(paths, labels):
                if classes[label] == c:
                    report.append(SkippedFile(str(path), f"class {c!r} was left out (no readable image in {parts[main]})"))
    if len(keep_classes) < 2:
        raise ValueError(f"only {len(keep_classes)} class(es) with readable images in {parts[main]}; {EXPECTED_LAYOUT}")
    remap = np.full(len(classes), -1, dtype=np.int64)
    remap[[classes.index(c) for c in keep_classes]] = np.arange(len(keep_classes))
    new_labels = remap[labels_arr]
    keep = new_labels >= 0
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), dtype=np.uint8)
    ignored = outside + sum(scan.ignored for scan in scans.values())
    kept_paths = tuple(p for p, k in zip(paths, keep) if k)
    return FolderImages(
        stacked[keep], new_labels[keep], split_arr[keep], kept_paths, keep_classes, tuple(report), layout, ignored
    )
