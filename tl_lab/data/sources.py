"""Where each dataset's images come from, as one :class:`Pool` per dataset: every image it offers, before splitting.

Why this module exists: the sources differ (a PNG bundle shipped in the wheel, scikit-learn's digits, images
drawn from a seed, a learner's folder, torchvision's downloads), but each ends as the same uint8 arrays with
its provenance in ``meta``, so :mod:`tl_lab.data` can split them all the same way. torchvision sets are read
through torchvision's own classes (its files and checksums), capped per class to fit a laptop's memory, and a
missing download raises :class:`DatasetUnavailableError`, which names the folder torchvision looked in, the
address it downloads from, and the datasets that work offline.

Example::

    >>> from tl_lab.data.sources import clipart_pool
    >>> pool = clipart_pool(128)
    >>> pool.images.shape[1:], pool.classes[0]
    ((128, 128, 3), 'animal')
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tl_lab.data.imagefiles import SkippedFile, fit_square, read_image_folder
from tl_lab.data.label_fixes import apply_label_fixes, read_label_fixes, relative_key
from tl_lab.data.procedural import make_shapes, make_textures, shape_targets
from tl_lab.limits import apply_torch_threads
from tl_lab.shared_cache import shared_path

apply_torch_threads(torch)  # threads follow the CPU limit (tl_lab.limits), as in tl_lab.backbones

__all__ = [
    "TORCHVISION_DATASETS",
    "DatasetUnavailableError",
    "Pool",
    "clipart_pool",
    "digits_pool",
    "folder_pool",
    "shapes_pool",
    "textures_pool",
    "torchvision_pool",
]

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@dataclass(frozen=True)
class Pool:
    """All images of a dataset at one size. ``test_mask`` marks an official test split (None: choose one)."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]
    meta: dict
    masks: np.ndarray | None = None  # (N, H, W) bool
    test_mask: np.ndarray | None = None  # (N,) bool
    val_mask: np.ndarray | None = None  # (N,) bool: an official validation split, used as val when given
    report: tuple[SkippedFile, ...] = ()
    # several label sets on the same images (``shapes``): {name: (labels (N,), class names)}; None: one label set
    targets: dict[str, tuple[np.ndarray, tuple[str, ...]]] | None = None

    def __post_init__(self) -> None:
        # pools are cached and shared between calls; splits take copies, nobody writes here
        label_sets = [y for y, _ in (self.targets or {}).values()]
        for array in (self.images, self.labels, self.masks, self.test_mask, self.val_mask, *label_sets):
            if array is not None:
                array.setflags(write=False)

    def with_target(self, name: str) -> Pool:
        """The same pool labelled by its label set ``name`` (one of ``targets``)."""
        labels, classes = self.targets[name]
        return replace(self, labels=labels, classes=classes)


def _resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """Resize square uint8 images ``(N, H, W, 3)`` to ``size`` (bilinear, antialiased when shrinking)."""
    if images.shape[1] == size:
        return images
    out = []
    for lo in range(0, len(images), 256):
        x = torch.from_numpy(images[lo : lo + 256].copy()).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1])
        out.append(y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


@functools.lru_cache(maxsize=1)
def _clipart_source() -> tuple[np.ndarray, np.ndarray, tuple[str, ...], dict]:
    folder = ASSETS / "clipart"
    try:
        with np.load(folder / "clipart.npz", allow_pickle=False) as z:
            blob, offsets = z["png_bytes"].tobytes(), z["png_offsets"]
            labels, classes = z["labels"].astype(np.int64), tuple(str(c) for c in z["classes"])
        manifest = json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"the embedded clipart files are missing ({error.filename}); reinstall tl-lab or rebuild them with "
            "`python scripts/build_clipart.py`"
        ) from None
    images = np.stack(
        [np.asarray(Image.open(io.BytesIO(blob[a:b])).convert("RGB")) for a, b in zip(offsets[:-1], offsets[1:])]
    )
    return images, labels, classes, manifest


@functools.lru_cache(maxsize=4)
def clipart_pool(size: int) -> Pool:
    images, labels, classes, manifest = _clipart_source()
    meta = {
        "description": manifest["description"],
        "source": manifest["source"],
        "license": manifest["license"],
        "license_summary": manifest["license_summary"],
        "provenance": "tl_lab/assets/clipart/manifest.json (per-image source path, title, author)",
        "native_size": manifest["image_size"],
    }
    return Pool(_resize_uint8(images, size), labels, classes, meta)


@functools.lru_cache(maxsize=4)
def digits_pool(size: int) -> Pool:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Dark ink on white paper (0..16 -> 255..0): closer to photos than light-on-dark, and a probe on pretrained
    # EfficientNet-Lite0 features scored higher this way in our measurement (0.76 vs 0.73 at 10 shots, 64 px).
    x = torch.from_numpy(1.0 - digits.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
    grey = (x * 255.0).round_().to(torch.uint8)[:, 0].numpy()
    images = np.repeat(grey[..., None], 3, axis=-1)
    meta = {
        "description": "1797 real 8x8 handwritten digits (UCI optical recognition set), upsampled bicubically, "
        "dark ink on white, 3 channels",
        "source": "scikit-learn sklearn.datasets.load_digits (bundled, offline); "
        "https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
        "license": "CC BY 4.0 (UCI Machine Learning Repository)",
        "native_size": 8,
    }
    return Pool(images, digits.target.astype(np.int64), tuple(str(d) for d in range(10)), meta)


@functools.lru_cache(maxsize=4)
def shapes_pool(size: int, per_class: int) -> Pool:
    images, labels, masks, classes = make_shapes(per_class=per_class, size=size)
    meta = {
        "description": f"procedural: one object ({', '.join(classes)}) per image at random position, size, "
        "rotation and colour on a cluttered background; exact object masks",
        "source": "tl_lab.procedural.make_shapes (generated from a fixed seed)",
        "license": "generated by tl_lab (Apache-2.0)",
        "per_class": per_class,
        "targets": "shape (default), position (quadrant of the object), colour (its strongest channel)",
    }
    return Pool(images, labels, classes, meta, masks=masks, targets=shape_targets(images, labels, masks))


@functools.lru_cache(maxsize=4)
def textures_pool(size: int, per_class: int) -> Pool:
    images, labels, classes = make_textures(per_class=per_class, size=size)
    meta = {
        "description": f"procedural: textures ({', '.join(classes)}) at random phase, period, rotation and "
        "colours; raw pixels carry almost no class signal",
        "source": "tl_lab.procedural.make_textures (generated from a fixed seed)",
        "license": "generated by tl_lab (Apache-2.0)",
        "per_class": per_class,
    }
    return Pool(images, labels, classes, meta)


def folder_pool(root: Path, size: int) -> Pool:
    """A learner's folder (layouts in :func:`tl_lab.imagefiles.read_image_folder`), with the label decisions of
    its ``tl_lab_labels.json`` applied (:mod:`tl_lab.data.label_fixes`): relabelled files in their new class,
    left-out files dropped, each listed in the report. No file is moved or deleted."""
    found = read_image_folder(root, size=size)
    split_layout = found.layout.startswith("train/")
    fixes = read_label_fixes(root)
    images, labels, paths, split_of, report = found.images, found.labels, found.paths, found.split_of, found.report
    applied = None
    if fixes:
        keys = [relative_key(root, p) for p in paths]
        applied = apply_label_fixes(fixes, keys, labels, found.classes, root=root)
        keep = applied.keep
        images, labels, split_of = images[keep], applied.labels[keep], split_of[keep]
        paths = tuple(p for p, k in zip(paths, keep) if k)
        report = (*report, *applied.report)
    meta = {
        "description": f"images from {root} ({found.layout} layout)",
        "source": str(root),
        "license": "the learner's own images",
        "layout": found.layout,
        "ignored_files": found.ignored,
        "files": [str(p) for p in paths],  # indexed by ImageSplit.ids
    }
    if applied is not None:
        meta["label_fixes"] = applied.meta()
    has_val = split_layout and bool((split_of == "val").any())
    return Pool(
        images,
        labels,
        found.classes,
        meta,
        test_mask=(split_of == "test") if split_layout else None,
        val_mask=(split_of == "val") if has_val else None,
        report=tuple(report),
    )


# ---- torchvision datasets ---------------------------------------------------------------------------------------

OFFLINE_ALTERNATIVES = "clipart, digits, shapes, textures (or 'folder' with your own images)"


class DatasetUnavailableError(RuntimeError):
    """A dataset's files are missing and could not be downloaded; the message says where and what to do."""


@dataclass(frozen=True)
class _Spec:
    name: str
    builder: Callable[..., Any]  # (root, split, download) -> torchvision dataset
    splits: dict[str, Any]  # our split name -> torchvision's split argument; no "test" = no official test split
    folder: str  # below root, where torchvision keeps the files
    url: str
    license: str
    description: str


def _tv():
    import torchvision.datasets as tvd

    return tvd


def _specs() -> dict[str, _Spec]:
    tvd = _tv()
    return {
        "flowers102": _Spec(
            "flowers102",
            lambda root, split, download: tvd.Flowers102(root, split=split, download=download),
            {"train": "train", "val": "val", "test": "test"},
            "flowers-102",
            tvd.Flowers102._download_url_prefix + tvd.Flowers102._file_dict["image"][0],
            "see https://www.robots.ox.ac.uk/~vgg/data/flowers/102/ (research use)",
            "Oxford 102 Category Flower Dataset (Nilsback & Zisserman, 2008)",
        ),
        "oxford_pets": _Spec(
            "oxford_pets",
            lambda root, split, download: tvd.OxfordIIITPet(root, split=split, download=download),
            {"train": "trainval", "test": "test"},
            "oxford-iiit-pet",
            " and ".join(url for url, _ in tvd.OxfordIIITPet._RESOURCES),
            "CC BY-SA 4.0",
            "Oxford-IIIT Pet: 37 cat and dog breeds (Parkhi et al., 2012)",
        ),
        "cifar10": _Spec(
            "cifar10",
            lambda root, split, download: tvd.CIFAR10(root, train=split, download=download),
            {"train": True, "test": False},
            tvd.CIFAR10.base_folder,
            tvd.CIFAR10.url,
            "see https://www.cs.toronto.edu/~kriz/cifar.html",
            "CIFAR-10: 32x32 photos in 10 classes (Krizhevsky, 2009)",
        ),
        "eurosat": _Spec(
            "eurosat",
            lambda root, split, download: tvd.EuroSAT(root, download=download),
            {"train": None},
            "eurosat/2750",
            "https://huggingface.co/datasets/torchgeo/eurosat (EuroSAT.zip, as in torchvision's EuroSAT.download)",
            "MIT",
            "EuroSAT: Sentinel-2 satellite image patches in 10 land-use classes (Helber et al., 2019)",
        ),
        "dtd": _Spec(
            "dtd",
            lambda root, split, download: tvd.DTD(root, split=split, partition=1, download=download),
            {"train": "train", "val": "val", "test": "test"},
            "dtd/dtd",
            tvd.DTD._URL,
            "see https://www.robots.ox.ac.uk/~vgg/data/dtd/ (research use)",
            "Describable Textures Dataset: 47 texture classes (Cimpoi et al., 2014)",
        ),
    }


TORCHVISION_DATASETS = ("flowers102", "oxford_pets", "cifar10", "eurosat", "dtd")


def _open(spec: _Spec, root: Path, split_arg: Any, download: bool):
    try:
        return spec.builder(str(root), split_arg, download)
    except (URLError, OSError, RuntimeError, ValueError, EOFError) as error:
        folder = root / spec.folder
        if download:
            what = f"downloading it failed ({error.__class__.__name__}: {error})"
        else:
            what = f"its files were not found in {folder} and download=False"
        raise DatasetUnavailableError(
            f"dataset {spec.name!r} is not available: {what}. torchvision expects the files in {folder} and "
            f"downloads them from {spec.url}. With a network connection, call "
            f"load_dataset({spec.name!r}, download=True) (or copy the files into {folder}); datasets that work "
            f"offline: {OFFLINE_ALTERNATIVES}."
        ) from error


def _targets(dataset: Any) -> np.ndarray:
    for attribute in ("targets", "_labels"):
        if hasattr(dataset, attribute):
            return np.asarray(getattr(dataset, attribute), dtype=np.int64)
    raise TypeError(f"cannot find the labels of {type(dataset).__name__} (no .targets or ._labels)")


def _pick(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        chosen.append(np.sort(idx[rng.permutation(len(idx))][:per_class]))
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def _shared_or_own(spec: _Spec, root: Path, download: bool) -> tuple[Path, bool]:
    """The class's shared copy (``$TL_LAB_SHARED_DIR/datasets``, read-only: never downloaded into) when it holds
    ``spec``'s files and ``root`` does not; else ``root`` as given. The learner's own files win when both exist."""
    shared = shared_path("datasets")
    if shared is None or (Path(root) / spec.folder).exists() or not (shared / spec.folder).exists():
        return root, download
    return shared, False


def torchvision_pool(
    name: str, *, root: Path, size: int, download: bool, max_per_class: int, test_per_class: int, test_seed: int
) -> Pool:
    """Read a capped, class-balanced selection of a torchvision dataset at ``size`` px (short side, centre crop).

    The official test split is used when the dataset has one (capped at ``test_per_class``, chosen with the
    constant ``test_seed``); otherwise ``test_per_class`` images per class are set aside with that seed.
    Files missing under ``root`` are read from a class's shared folder (``TL_LAB_SHARED_DIR``) when it has them.
    """
    for arg, value in (("max_per_class", max_per_class), ("test_per_class", test_per_class)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive int; got {value!r}")
    spec = _specs()[name]
    root, download = _shared_or_own(spec, root, download)
    rng = np.random.default_rng(test_seed)
    parts: list[tuple[str, Any, np.ndarray]] = []
    classes: tuple[str, ...] = ()
    for split, split_arg in spec.splits.items():
        dataset = _open(spec, root, split_arg, download)
        labels = _targets(dataset)
        classes = tuple(str(c) for c in getattr(dataset, "classes", range(int(labels.max()) + 1)))
        if "test" in spec.splits:
            cap = {"train": max_per_class, "val": max_per_class, "test": test_per_class}[split]
            parts.append((split, dataset, _pick(labels, cap, rng)))
        else:  # one pool: set the test images aside here, with the constant seed
            chosen = _pick(labels, max_per_class + test_per_class, rng)
            is_test = np.zeros(len(chosen), dtype=bool)
            is_test[_pick(labels[chosen], test_per_class, rng)] = True  # positions within `chosen`
            parts.append(("train", dataset, chosen[~is_test]))
            parts.append(("test", dataset, chosen[is_test]))
    images, labels_out, split_of, report = [], [], [], []
    for split, dataset, indices in parts:
        targets = _targets(dataset)
        for i in indices.tolist():
            try:
                picture, _ = dataset[i]
                images.append(fit_square(picture, size))
            except (OSError, ValueError) as error:
                report.append(SkippedFile(f"{spec.name}[{split}][{i}]", f"unreadable image ({error})"))
                continue
            labels_out.append(int(targets[i]))
            split_of.append(split)
    split_arr = np.asarray(split_of)
    meta = {
        "description": spec.description,
        "source": f"torchvision.datasets ({spec.url})",
        "license": spec.license,
        "root": str(root),
        "max_per_class": max_per_class,
        "test_per_class": test_per_class,
        "test_split": ("official, " if "test" in spec.splits else "")
        + f"at most {test_per_class} per class, fixed seed",
    }
    return Pool(
        np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
        np.asarray(labels_out, dtype=np.int64),
        classes,
        meta,
        test_mask=split_arr == "test",
        val_mask=(split_arr == "val") if "val" in spec.splits else None,
        report=tuple(report),
    )
