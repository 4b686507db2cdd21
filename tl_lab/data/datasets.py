"""Datasets and few-shot splits, each with its provenance, plus the raw-pixel baseline every comparison shows.

Why this module looks the way it does:

- Every dataset ends up in one small in-memory format, :class:`ImageSplit` (uint8 RGB tensors at one square
  size), so the training loop, the feature cache and the probes never care where images came from. Backbone
  normalisation is not done here; the training loop applies the backbone's own.
- Splits are built so that data-efficiency curves are honest and smooth: the test split is chosen once with a
  constant seed (the same images for every ``shots`` and ``seed``), ``seed`` picks the validation and training
  samples from the rest, and the ``k``-shot training set is a prefix of the same per-class permutation for every
  ``k`` (5 shots are a subset of 10 shots).
- :func:`baseline` is a raw-pixel logistic regression with its regularisation chosen on the validation split,
  so "pretrained features help" is always measured against a fair floor.

Example::

    >>> from tl_lab.data import load_dataset, baseline
    >>> data = load_dataset("digits", shots=10, seed=0)
    >>> data.train.images.shape, data.train.images.dtype       # 10 per class, 64 px, uint8 RGB
    (torch.Size([100, 3, 64, 64]), torch.uint8)
    >>> round(baseline(data)["test_acc"], 2)                   # doctest: +SKIP
    0.87
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from tl_lab.data.imagefiles import SkippedFile
from tl_lab.data.sources import (
    TORCHVISION_DATASETS,
    DatasetUnavailableError,
    Pool,
    clipart_pool,
    digits_pool,
    folder_pool,
    shapes_pool,
    textures_pool,
    torchvision_pool,
)

__all__ = [
    "DatasetSplits",
    "DatasetUnavailableError",
    "ImageSplit",
    "NotEnoughImages",
    "SkippedFile",
    "check_target",
    "list_datasets",
    "load_dataset",
]

class NotEnoughImages(ValueError):
    """``shots`` asks for more training images per class than the data has (after its test and validation images).

    Why a type of its own: a widget says the same facts in its own words (its "shots per class" menu, not the
    ``shots=`` argument) from these fields, without reading them back out of the message.

    Attributes: ``shots`` (asked), ``most_shots`` (the most the smallest class allows), ``smallest_class`` (its
    name), ``dataset`` (the dataset's name).
    """

    def __init__(self, *, shots: int, most_shots: int, smallest_class: str, dataset: str) -> None:
        self.shots, self.most_shots, self.smallest_class, self.dataset = shots, most_shots, smallest_class, dataset
        super().__init__(
            f"shots={shots} is more than the {most_shots} training images available per class in "
            f"{dataset!r} (smallest class: {smallest_class!r}); use shots <= {most_shots}, a smaller "
            "val_per_class, or shots=None for all"
        )

    def __reduce__(self):  # picklable with its fields (keyword-only __init__)
        return (_not_enough_images, (self.shots, self.most_shots, self.smallest_class, self.dataset))


def _not_enough_images(shots: int, most_shots: int, smallest_class: str, dataset: str) -> NotEnoughImages:
    return NotEnoughImages(shots=shots, most_shots=most_shots, smallest_class=smallest_class, dataset=dataset)


DEFAULT_ROOT = Path("~/.cache/tl_lab/datasets")
DEFAULT_VAL_PER_CLASS = 10


# ---- the in-memory format ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImageSplit(torch.utils.data.Dataset):
    """Images of one split, in memory: ``images`` ``(N, 3, H, W)`` uint8 RGB, ``labels`` ``(N,)`` int64.

    Indexing returns ``(image, label)`` with the image as float32 in [0, 1], ready for a backbone's
    normalisation. ``masks`` ``(N, H, W)`` bool holds exact object masks where a dataset has them (``shapes``).
    ``ids`` ``(N,)`` int64 are the images' positions in the dataset's pool, for provenance: they index
    ``meta["files"]`` of a folder dataset and the ``images`` list of the clipart manifest. ``targets`` holds every
    label set of a dataset that has several (``shapes``: ``{"shape": ..., "position": ..., "colour": ...}``, each
    ``(N,)`` int64); ``labels`` is one of them, the dataset's chosen ``target``.

    >>> split = load_dataset("shapes", shots=2).train
    >>> x, y = split[0]; x.shape, x.dtype, type(y)
    (torch.Size([3, 64, 64]), torch.float32, <class 'int'>)
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    masks: torch.Tensor | None = None
    ids: torch.Tensor | None = None
    targets: dict[str, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"images must be a uint8 tensor (N, 3, H, W); got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be int64 of shape ({self.images.shape[0]},); got {tuple(self.labels.shape)}")
        if self.masks is not None and (
            self.masks.dtype != torch.bool or self.masks.shape != (self.images.shape[0], *self.images.shape[2:])
        ):
            raise ValueError("masks must be bool (N, H, W) matching the images, or None")
        if self.ids is not None and (self.ids.dtype != torch.int64 or self.ids.shape != self.labels.shape):
            raise ValueError("ids must be int64 of shape (N,), or None")
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}) to index classes")
        for name, y in (self.targets or {}).items():
            if y.dtype != torch.int64 or y.shape != self.labels.shape:
                raise ValueError(f"targets[{name!r}] must be int64 of shape ({len(self.labels)},) like labels")
        object.__setattr__(self, "classes", tuple(self.classes))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].float().div_(255.0), int(self.labels[index])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def counts(self) -> dict[str, int]:
        """Images per class name, in class order (zeros included)."""
        per = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, per))

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> ImageSplit:
        """A new split holding copies of the given rows (in the given order)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1))
        masks = self.masks[idx] if self.masks is not None else None
        ids = self.ids[idx] if self.ids is not None else None
        targets = {k: y[idx] for k, y in self.targets.items()} if self.targets is not None else None
        return ImageSplit(self.images[idx], self.labels[idx], self.classes, masks, ids, targets)

    def relabel(self, target: str, classes: Sequence[str]) -> ImageSplit:
        """The same images labelled by their label set ``target`` (a key of ``targets``)."""
        return replace(self, labels=self.targets[target], classes=tuple(classes))

    def as_float(self) -> torch.Tensor:
        """All images as one float32 tensor in [0, 1] (``N, 3, H, W``)."""
        return self.images.float().div_(255.0)

    def __repr__(self) -> str:
        extra = ", masks" if self.masks is not None else ""
        return f"ImageSplit({len(self)} images, {len(self.classes)} classes, {self.image_size} px{extra})"


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """A dataset split three ways, with where it came from (``meta``) and what was skipped (``report``)."""

    name: str
    train: ImageSplit
    val: ImageSplit
    test: ImageSplit
    classes: tuple[str, ...]
    image_size: int
    meta: dict = field(default_factory=dict)
    report: tuple[SkippedFile, ...] = ()
    # the label sets of a dataset with several (``shapes``): {name: class names}; empty when it has one
    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def target(self) -> str | None:
        """The label set ``labels`` and ``classes`` refer to (None for a dataset with one label set)."""
        return self.meta.get("target")

    def with_target(self, target: str) -> DatasetSplits:
        """The same images in the same splits, labelled by another of their label sets (``shapes``: ``"shape"``,
        ``"position"``, ``"colour"``): single-task models for each task of a multi-task comparison train on exactly
        the images the shared one does.

        >>> data = load_dataset("shapes", shots=5)
        >>> data.with_target("colour").classes
        ('red', 'green', 'blue')
        """
        check_target(self, target)
        if target == self.target:
            return self
        classes = self.targets[target]
        splits = {k: getattr(self, k).relabel(target, classes) for k in ("train", "val", "test")}
        # load_args still chooses the splits (stratified by the loaded target); "relabel" says what follows them
        meta = {**self.meta, "target": target, "relabel": target, "counts": {k: v.counts() for k, v in splits.items()}}
        return replace(self, classes=classes, meta=meta, **splits)

    def summary(self) -> str:
        """A short table a lesson can print: counts per split, the few-shot settings and the provenance."""
        shots = self.meta.get("shots")
        lines = [
            f"{self.name}: {len(self.classes)} classes, {self.image_size} px, "
            f"shots={'all' if shots is None else shots}, seed={self.meta.get('seed')}",
            f"  train {len(self.train):5d}   val {len(self.val):5d}   test {len(self.test):5d}",
        ]
        width = max(len(c) for c in self.classes)
        counts = [s.counts() for s in (self.train, self.val, self.test)]
        shown = self.classes if len(self.classes) <= 12 else self.classes[:10]
        for c in shown:
            lines.append(f"    {c:<{width}}  {counts[0][c]:5d}     {counts[1][c]:5d}      {counts[2][c]:5d}")
        if len(shown) < len(self.classes):
            lines.append(f"    … {len(self.classes) - len(shown)} more classes")
        if self.meta.get("source"):
            lines.append(f"  source: {self.meta['source']}")
        if self.meta.get("license"):
            lines.append(f"  license: {self.meta['license']}")
        fixes = self.meta.get("label_fixes")
        if fixes:  # the learner's tl_lab_labels.json (tl_lab.data.label_fixes); its lines are in .report too
            lines.append(f"  your {fixes['file']}: {len(fixes['relabelled'])} relabelled, {len(fixes['left_out'])} "
                         f"left out, {len(fixes['missing'])} for files not found (see .report)")
        n_fixes = sum(len(fixes[k]) for k in ("relabelled", "left_out", "missing")) if fixes else 0
        skipped = self.report[: len(self.report) - n_fixes]  # the decisions' lines come last
        if skipped:
            lines.append(f"  skipped {len(skipped)} file(s); see .report, e.g. {skipped[0]}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"DatasetSplits({self.name!r}, classes={len(self.classes)}, image_size={self.image_size}, "
            f"train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, shots={self.meta.get('shots')}, "
            f"seed={self.meta.get('seed')}, skipped={len(self.report)})"
        )


# ---- the registry ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DatasetInfo:
    name: str
    kind: str  # "embedded" | "procedural" | "folder" | "torchvision"
    default_size: int
    options: tuple[str, ...]  # extra keyword arguments this dataset accepts
    test_fraction: float | None  # used when the dataset has no official test split


_DATASETS: dict[str, _DatasetInfo] = {
    info.name: info
    for info in (
        _DatasetInfo("clipart", "embedded", 128, ("test_fraction",), 0.3),
        _DatasetInfo("digits", "embedded", 64, ("test_fraction",), 0.3),
        _DatasetInfo("shapes", "procedural", 64, ("test_fraction", "per_class", "target"), 0.3),
        _DatasetInfo("textures", "procedural", 64, ("test_fraction", "per_class"), 0.3),
        _DatasetInfo("folder", "folder", 128, ("test_fraction",), 0.2),
        *(
            _DatasetInfo(name, "torchvision", 128, ("max_per_class", "test_per_class"), None)
            for name in TORCHVISION_DATASETS
        ),
    )
}


def list_datasets() -> list[str]:
    """Names :func:`load_dataset` accepts: embedded and procedural sets (offline), ``folder``, torchvision sets."""
    return list(_DATASETS)


# ---- splitting -------------------------------------------------------------------------------------------------


def _constant_seed(name: str) -> int:
    return zlib.crc32(f"tl_lab:test-split:{name}".encode())


def _choose_test(labels: np.ndarray, fraction: float, name: str) -> np.ndarray:
    """Per class, the first ``round(fraction * n)`` (at least 1) of a constant-seed permutation."""
    rng = np.random.default_rng(_constant_seed(name))
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        test[idx[:n_test]] = True
    return test


def _split_pool(pool: Pool, info: _DatasetInfo, *, shots, seed, val_per_class, test_fraction):
    """Pool indices (train, val, test), chosen as the module docstring describes."""
    labels, classes = pool.labels, pool.classes
    if pool.test_mask is not None:
        test = pool.test_mask
    else:
        test = _choose_test(labels, test_fraction, info.name)
    rng = np.random.default_rng([_constant_seed(info.name), int(seed) % 2**64])  # any int seed, negatives too
    train_idx, val_idx, available = [], [], {}
    for c in range(len(classes)):
        rest = np.flatnonzero((labels == c) & ~test & (pool.val_mask is None or ~pool.val_mask))
        rest = rest[rng.permutation(len(rest))]
        if pool.val_mask is not None:
            official = np.flatnonzero((labels == c) & pool.val_mask)
            n_val = len(official) if val_per_class is None else min(val_per_class, len(official))
            val_idx.append(official[rng.permutation(len(official))][:n_val])
            pool_c = rest
        else:
            n_val = min(DEFAULT_VAL_PER_CLASS, len(rest) // 4) if val_per_class is None else val_per_class
            if n_val > max(len(rest) - 1, 0):
                raise ValueError(
                    f"val_per_class={val_per_class} leaves no training image in class {classes[c]!r} "
                    f"({len(rest)} non-test images); use val_per_class <= {max(len(rest) - 1, 0)}"
                )
            val_idx.append(rest[:n_val])
            pool_c = rest[n_val:]
        available[classes[c]] = len(pool_c)
        train_idx.append(pool_c if shots is None else pool_c[:shots])
    if shots is not None:
        smallest = min(available, key=available.get)
        if shots > available[smallest]:
            raise NotEnoughImages(shots=shots, most_shots=available[smallest], smallest_class=smallest,
                                  dataset=info.name)
    return np.concatenate(train_idx), np.concatenate(val_idx), np.flatnonzero(test)


def _to_split(pool: Pool, idx: np.ndarray) -> ImageSplit:
    images = torch.from_numpy(np.ascontiguousarray(pool.images[idx])).permute(0, 3, 1, 2).contiguous()
    masks = torch.from_numpy(pool.masks[idx]) if pool.masks is not None else None
    labels = torch.from_numpy(pool.labels[idx].astype(np.int64))
    targets = ({k: torch.from_numpy(y[idx].astype(np.int64)) for k, (y, _) in pool.targets.items()}
               if pool.targets is not None else None)
    return ImageSplit(images, labels, pool.classes, masks, torch.from_numpy(idx.astype(np.int64)), targets)


def check_target(data: DatasetSplits, target: str) -> None:
    """Refuse a label set ``data`` does not have, naming the ones it has."""
    if not data.targets:
        raise ValueError(f"{data.name!r} has one label set (its classes); several label sets on the same images "
                         "come with load_dataset('shapes'): shape, position, colour")
    if target not in data.targets:
        raise ValueError(f"{data.name!r} has no label set {target!r}; choose from {', '.join(data.targets)}")


# ---- the public loader -----------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    shots: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    val_per_class: int | None = None,
    download: bool = False,
    **kwargs: Any,
) -> DatasetSplits:
    """Load a dataset by name and split it into train / val / test.

    Args:
        name: one of :func:`list_datasets` (``clipart``, ``digits``, ``shapes``, ``textures`` work offline;
            ``folder`` reads ``root``; torchvision sets download into ``root`` when ``download=True``).
        root: the learner's folder for ``folder``; the download folder for torchvision sets
            (default ``~/.cache/tl_lab/datasets``).
        shots: training images per class (exactly, stratified); None uses every training image.
        seed: picks the validation and training samples; the test split never depends on it.
        image_size: square side in pixels (defaults: clipart 128, digits/shapes/textures 64, others 128).
        val_per_class: validation images per class (default 10, fewer when a class is small; 0 for none).
        download: allow torchvision to download missing files.
        **kwargs: dataset options: ``test_fraction`` (sets without an official test split), ``per_class``
            (procedural pool size, default 150), ``max_per_class`` / ``test_per_class`` (torchvision caps),
            ``target`` (``shapes``: which label set ``labels`` holds, ``"shape"`` (default), ``"position"`` or
            ``"colour"``; the splits and ``shots`` are then per class of that set, and ``.targets`` lists them all
            for multi-task training, ``fit(..., tasks=...)``).

    Returns:
        :class:`DatasetSplits` with ``meta`` (source, license, counts, shots, seed, ``load_args``) and ``report``
        (files skipped and why, for ``folder``).

    >>> data = load_dataset("clipart", shots=10)
    >>> len(data.classes), len(data.train)
    (7, 70)
    """
    if name not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(_DATASETS)}")
    info = _DATASETS[name]
    unknown = sorted(set(kwargs) - set(info.options))
    if "target" in unknown:
        raise ValueError(f"{name!r} has one label set; target= chooses among several label sets on the same "
                         "images, which load_dataset('shapes') has: shape, position, colour")
    if unknown:
        allowed = ", ".join(info.options) or "none"
        raise TypeError(f"load_dataset({name!r}) got unexpected option(s) {unknown}; options for {name!r}: {allowed}")
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
        raise ValueError(f"shots must be a positive int or None (all training images); got {shots!r}")
    if val_per_class is not None and (not isinstance(val_per_class, int) or val_per_class < 0):
        raise ValueError(f"val_per_class must be an int >= 0 or None (default); got {val_per_class!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int; got {seed!r}")
    size = info.default_size if image_size is None else image_size
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise ValueError(f"image_size must be an int between 8 and 1024; got {image_size!r}")
    test_fraction = kwargs.get("test_fraction", info.test_fraction)
    if test_fraction is not None and (not isinstance(test_fraction, float | int) or not 0.0 < test_fraction < 1.0):
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive); got {test_fraction!r}")
    if root is not None and info.kind in ("embedded", "procedural"):
        raise ValueError(f"{name!r} is built in and takes no root; pass root only for 'folder' or torchvision sets")

    if info.kind == "folder":
        if root is None:
            raise ValueError("load_dataset('folder') needs root=<path to your images>, e.g. root='my_photos'")
        pool = folder_pool(Path(root).expanduser(), size)
    elif info.kind == "torchvision":
        pool = torchvision_pool(
            name,
            root=Path(root if root is not None else DEFAULT_ROOT).expanduser(),
            size=size,
            download=download,
            max_per_class=kwargs.get("max_per_class", 100),
            test_per_class=kwargs.get("test_per_class", 50),
            test_seed=_constant_seed(name),
        )
    elif name == "clipart":
        pool = clipart_pool(size)
    elif name == "digits":
        pool = digits_pool(size)
    else:
        per_class = kwargs.get("per_class", 150)
        pool = (shapes_pool if name == "shapes" else textures_pool)(size, per_class)
    target = kwargs.get("target")
    if pool.targets is not None:
        target = target if target is not None else next(iter(pool.targets))
        if target not in pool.targets:
            raise ValueError(f"{name!r} has no label set {target!r}; choose target= from {', '.join(pool.targets)}")
        pool = pool.with_target(target)

    train_idx, val_idx, test_idx = _split_pool(
        pool, info, shots=shots, seed=seed, val_per_class=val_per_class, test_fraction=test_fraction
    )
    train, val, test = (_to_split(pool, i) for i in (train_idx, val_idx, test_idx))
    load_args = {"name": name, "shots": shots, "seed": seed, "image_size": size, "val_per_class": val_per_class}
    if root is not None:
        load_args["root"] = str(root)
    load_args.update(kwargs)
    meta = {
        **pool.meta,
        "name": name,
        "kind": info.kind,
        "shots": shots,
        "seed": seed,
        "image_size": size,
        "test_split": pool.meta.get("test_split")
        or ("the test folder" if pool.test_mask is not None else f"{test_fraction:.0%} of each class, fixed seed"),
        "counts": {"train": train.counts(), "val": val.counts(), "test": test.counts()},
        "sizes": {"train": len(train), "val": len(val), "test": len(test)},
        "load_args": load_args,
    }
    if target is not None:
        meta["target"] = target
    targets = {k: c for k, (_, c) in pool.targets.items()} if pool.targets is not None else {}
    return DatasetSplits(name, train, val, test, pool.classes, size, meta, tuple(pool.report), targets)
