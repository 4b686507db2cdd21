"""A read-only folder a class shares (a hub's ``/srv/data``), named by ``TL_LAB_SHARED_DIR``; no torch import.

Why: thirty learners on one hub each downloading the same dataset and weights, and each computing the same
features, waste the node's network, disk and CPU. An instructor fills one folder once; tl_lab reads it *before*
each learner's own cache and never writes to it (it may be mounted read-only). Its layout::

    $TL_LAB_SHARED_DIR/
        datasets/       torchvision dataset files, as under load_dataset's root (flowers-102/, cifar-10-batches-py/ …)
        checkpoints/    torchvision weight files (*.pth), as in torch's hub cache ($TORCH_HOME/hub/checkpoints)
        features/       frozen-prefix feature files written by fit(..., memory_cap_mb=0, cache_dir=<this folder>)

    >>> from tl_lab.shared_cache import shared_path
    >>> shared_path("datasets", environ={}) is None          # no shared folder set
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

__all__ = ["SHARED_DIR_VARIABLE", "shared_dir", "shared_file", "shared_path"]

SHARED_DIR_VARIABLE = "TL_LAB_SHARED_DIR"
Kind = Literal["datasets", "checkpoints", "features"]
_KINDS = ("datasets", "checkpoints", "features")


def shared_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The shared folder ``$TL_LAB_SHARED_DIR`` when it is set and exists, else None."""
    environ = os.environ if environ is None else environ
    text = environ.get(SHARED_DIR_VARIABLE, "").strip()
    if not text:
        return None
    path = Path(text).expanduser()
    return path if path.is_dir() else None


def shared_path(kind: Kind, environ: Mapping[str, str] | None = None) -> Path | None:
    """The shared folder's ``kind`` sub-folder (``datasets``, ``checkpoints``, ``features``) if it exists."""
    if kind not in _KINDS:
        raise ValueError(f"unknown shared folder kind {kind!r}; choose one of: {', '.join(_KINDS)}")
    root = shared_dir(environ)
    if root is None or not (root / kind).is_dir():
        return None
    return root / kind


def shared_file(kind: Kind, name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """``$TL_LAB_SHARED_DIR/<kind>/<name>`` when that file (or folder) exists, else None."""
    folder = shared_path(kind, environ)
    if folder is None:
        return None
    path = folder / name
    return path if path.exists() else None
