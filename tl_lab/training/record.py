"""A finished run as a small JSON recording (curves, table, figures) that :func:`tl_lab.embed.replay` turns into an
offline page. Written here, in the training layer, so a Run can record itself without importing plotly."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECORD_FORMAT = "tl_lab.run-record/1"


def record(run: Any, path: str | os.PathLike, *, figures: Mapping[str, Any] | None = None,
           baseline: float | None | str = "auto") -> Path:
    """Save a finished run as a small JSON file that :func:`replay` turns into a page; returns the path.

    ``figures``: ``{title: figure}`` to include (a confusion matrix, the probe curve …). ``baseline``: the raw-pixel
    test accuracy shown beside the run ("auto": computed from ``run.data`` with :func:`tl_lab.baseline`; None: left
    out, and the page says so).
    """
    if not getattr(run, "history", None) and not getattr(run, "best", None):
        raise ValueError("this run has no finished epoch to record; train it first (or resume it)")
    if baseline == "auto":
        from tl_lab.data.baseline import baseline as raw_pixels

        baseline = float(raw_pixels(run.data)["test_acc"]) if getattr(run, "data", None) is not None else None
    figs = {}
    for title, fig in (figures or {}).items():
        if not (hasattr(fig, "to_json") and hasattr(fig, "layout")):  # a go.Figure or FigureWidget, without importing plotly
            raise ValueError(f"figure {title!r} is a {type(fig).__name__}, not a plotly figure")
        figs[str(title)] = json.loads(fig.to_json(validate=False))
    doc = {
        "format": RECORD_FORMAT,
        "name": run.name,
        "label": run.label,
        "config": run.config,
        "history": run.history,
        "best": run.best,
        "timings": run.timings,
        "stopped_early": run.stopped_early,
        "stop_reason": run.stop_reason,
        "trainable_parameters": run.trainable_parameters,
        "raw_pixel_baseline": baseline,
        "figures": figs,
    }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, default=_plain), encoding="utf-8")
    return out


def _plain(v: Any) -> Any:
    """JSON for what json cannot encode: numpy and torch scalars by value, anything else as text."""
    if hasattr(v, "item"):
        return v.item()
    return str(v)
