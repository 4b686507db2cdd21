"""Put figures, runs and widgets into course pages: standalone HTML that works with no kernel and no network.

Why: an instructor wants a finished run (its curves, its table, a figure or two) on a static course page. A
recorded run is a small JSON file (``run.record(path)``: config, per-epoch history, best metrics, the raw-pixel
baseline, any figures you chose); :func:`replay` turns it into one HTML page that carries plotly.js itself, once.
:func:`save_html` does the same for a figure, a list of figures, a Run, a recording, or a widget: a widget is saved
as a static snapshot of what it shows now (its figures and tables), so the page needs no widget manager JavaScript
(whose default embed loads from a CDN and is blank offline).

Example::

    >>> run = tl_lab.fit("efficientnet_lite0", tl_lab.load_dataset("clipart", shots=3, image_size=32), epochs=2,
    ...                  progress=False, save_checkpoints=False)
    >>> fig = tl_lab.plots.training_curves([{"label": "frozen head", "history": run.history}])
    >>> _ = run.record("run.json", figures={"Training curves": fig})
    >>> replay("run.json")                       # run.html beside it: open it anywhere, offline
    PosixPath('run.html')
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.basedatatypes import BaseFigure

from tl_lab.plots.export import plain_figure
from tl_lab.plots.export import save_html as _save_page
from tl_lab.plots.training import training_curves
from tl_lab.training.record import RECORD_FORMAT, record

__all__ = ["record", "replay", "save_html", "load_record", "RECORD_FORMAT"]

_TABLE_STYLE = ("<style>.tl-table{border-collapse:collapse;font-size:14px}.tl-table th,.tl-table td{border-bottom:"
                "1px solid #ddd;padding:4px 10px;text-align:left}.tl-table td.num{text-align:right}"
                ".tl-table th{background:#f3f5f7}</style>")


def load_record(path: str | os.PathLike) -> dict:
    """Read a recording, with a clear error when the file is not one."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no recorded run at {p}; make one with run.record({str(p)!r})")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p} is not a recorded run (not valid JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
        raise ValueError(f"{p} is not a tl_lab run recording (expected format {RECORD_FORMAT!r}); "
                         "make one with run.record(path)")
    return doc


def replay(path: str | os.PathLike, html_path: str | os.PathLike | None = None, *, title: str | None = None) -> Path:
    """Turn a recording into a standalone offline HTML page (curves, run table, recorded figures); returns its path."""
    doc = load_record(path)
    out = Path(html_path) if html_path is not None else Path(path).with_suffix(".html")
    return _save_page(_record_items(doc), out, title=title or f"Run: {doc['label']}")


def save_html(obj: Any, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """A standalone, offline HTML page for a figure, figures, a Run, a recording (JSON path) or a widget."""
    if isinstance(obj, (str, os.PathLike)) and str(obj).endswith(".json"):
        return replay(obj, path, title=title)
    if isinstance(obj, BaseFigure):
        return _save_page([obj], path, title=title)
    if hasattr(obj, "history") and hasattr(obj, "config") and hasattr(obj, "best"):
        doc = {"label": obj.label, "config": obj.config, "history": obj.history, "best": obj.best,
               "timings": obj.timings, "stopped_early": obj.stopped_early, "stop_reason": obj.stop_reason,
               "trainable_parameters": obj.trainable_parameters, "raw_pixel_baseline": None, "figures": {}}
        return _save_page(_record_items(doc), path, title=title or f"Run: {obj.label}")
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        return _save_page(list(obj), path, title=title)
    items = _widget_items(obj)
    if items is None:
        raise ValueError(f"save_html takes a plotly figure, a list of figures, a Run, a recorded run (.json) or a "
                         f"tl_lab widget; got a {type(obj).__name__}")
    if not any(isinstance(i, BaseFigure) for i in items):
        raise ValueError("this widget shows no figure yet; click its Show / Train button first, then save it")
    return _save_page(items, path, title=title)


# ---- pieces -----------------------------------------------------------------------------------------------------


def _record_items(doc: dict) -> list:
    b = doc.get("best") or {}
    cfg = doc.get("config") or {}
    data = cfg.get("data", {})
    raw = doc.get("raw_pixel_baseline")
    rows = [("run", doc["label"]), ("dataset", f"{data.get('name', '?')}, {data.get('shots') or 'all'} per class, "
                                              f"{data.get('image_size', '?')} px"),
            ("best val acc", _acc(b.get("val_acc"))), ("test acc (best checkpoint)", _acc(b.get("test_acc"))),
            ("raw-pixel baseline (test acc)", _acc(raw) if raw is not None else "not recorded"),
            ("best epoch", b.get("epoch", "-")), ("epochs run", len(doc.get("history") or [])),
            ("trainable parameters", f"{doc.get('trainable_parameters', 0):,}"),
            ("seconds", f"{(doc.get('timings') or {}).get('total_s', 0):.1f}"),
            ("plan", cfg.get("plan_label", "-")), ("recipe", f"{cfg.get('optimizer')} lr {cfg.get('lr')}, "
                                                             f"{cfg.get('schedule')}, batch {cfg.get('batch_size')}")]
    if doc.get("stopped_early"):
        rows.append(("stopped early", doc.get("stop_reason") or "yes"))
    table = _TABLE_STYLE + '<table class="tl-table tl-run-table">' + "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows) + "</table>"
    items: list = [table]
    if doc.get("history"):
        items.append(training_curves([{"label": doc["label"], "history": doc["history"]}]))
    for fig_title, fig in (doc.get("figures") or {}).items():
        items.append(f"<h2>{html.escape(fig_title)}</h2>")
        items.append(go.Figure(fig))
    return items


def _widget_items(widget: Any) -> list | None:
    """A tl_lab widget's figures and tables, in display order (None when ``widget`` is not an ipywidget)."""
    try:
        import ipywidgets as W
    except ImportError:  # pragma: no cover - ipywidgets is a dependency
        return None
    if not isinstance(widget, W.Widget):
        return None
    items: list = []

    def walk(w: Any) -> None:
        if isinstance(w, BaseFigure):
            if w.data:
                items.append(plain_figure(w))
        elif isinstance(w, W.HTML) and "tl-run-table" in getattr(w, "_dom_classes", ()):
            items.append(w.value)
        for child in getattr(w, "children", ()) or ():
            walk(child)

    walk(widget)
    return items


def _acc(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f}"


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return str(v)
