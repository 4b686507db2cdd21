"""Static snapshots of tl_lab widgets: what a widget shows, as HTML that needs no kernel and no network.

Why: a widget's live view needs a kernel (or, on a static page, widget-manager JavaScript that nbconvert loads from
a CDN), so an exported lesson showed nothing, or the widget's Python repr (``FewShot(children=(HTML(...``), where a
widget had been. Each tl_lab widget displayed in a Jupyter kernel now goes out as one output with two forms:

- ``application/vnd.jupyter.widget-view+json``: the live widget. JupyterLab ranks it first, so the learner sees the
  widget once, never the snapshot beside it; where the widget cannot be shown (no kernel, no saved state) JupyterLab
  falls back to the next form;
- ``text/html``: the snapshot: its figures (drawn by the page's plotly.js, each with a text description), tables,
  text and the state of its controls, marked as a snapshot. Static pages show it (tl_lab's nbconvert preprocessor
  and Sphinx extension prefer it to the live view, which cannot run offline).

The output has a display id; after every cell the snapshots of displayed widgets are recomputed and, where changed,
updated in place (``update_display``), so a saved or exported lesson shows each widget as it was when the last
cell finished. :func:`refresh_snapshots` does the same on demand (e.g. after a background job).
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import weakref
from functools import lru_cache
from typing import Any

import ipywidgets as W
from plotly.basedatatypes import BaseFigure

from tl_lab.plots.static import static_figure_html

__all__ = ["snapshot_html", "widget_bundle", "install_snapshots", "refresh_snapshots", "SNAPSHOT_CLASS",
           "WIDGET_VIEW_MIME"]

WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
SNAPSHOT_CLASS = "tl-snapshot"
_log = logging.getLogger(__name__)
_DISPLAYED: dict[str, tuple[weakref.ref, str]] = {}  # display id -> (widget, digest of its last snapshot)


def _hidden(w: Any) -> bool:
    layout = getattr(w, "layout", None)
    return bool(layout is not None and (getattr(layout, "display", None) == "none"
                                        or getattr(layout, "visibility", None) == "hidden"))


def _figure(fig: BaseFigure, key: str) -> str:
    if not fig.data:
        return ""
    d = fig.to_dict()
    return static_figure_html(d, fig_id=f"tl-fig-{key}")


def _control(w: W.Widget) -> str:
    desc = html.escape(str(getattr(w, "description", "") or ""))
    if isinstance(w, W.Button):
        return f'<span class="tl-snap-button" style="{_BUTTON}">{desc or "button"}</span>'
    if isinstance(w, W.ToggleButton):
        on = "background:#d7e6f5;" if w.value else ""
        return f'<span class="tl-snap-button" style="{_BUTTON}{on}">{desc}</span>'
    if isinstance(w, W.FileUpload):
        return f'<span class="tl-snap-button" style="{_BUTTON}">{desc or "Upload"}</span>'
    label = getattr(w, "label", None) if isinstance(w, W.widgets.widget_selection._Selection) else None
    if isinstance(w, W.widgets.widget_selection._MultipleSelection):
        label = ", ".join(map(str, getattr(w, "label", ()) or ())) or "none"
    value = label if label is not None else getattr(w, "value", "")
    if isinstance(value, float):
        value = f"{value:.4g}"
    elif isinstance(value, bool):
        value = "yes" if value else "no"
    sep = ": " if desc else ""
    return (f'<span class="tl-snap-control" style="margin-right:12px">{desc}{sep}'
            f"<b>{html.escape(str(value))}</b></span>")


_BUTTON = ("display:inline-block;border:1px solid #bbb;border-radius:2px;padding:1px 8px;margin:2px 4px 2px 0;"
           "background:#f3f3f3;color:#333;font-size:13px;")


def _output(w: W.Output) -> str:
    parts = []
    for out in w.outputs or ():
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(f"<pre style='margin:2px 0'>{html.escape(out.get('text', ''))}</pre>")
        elif kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            if "text/html" in data:
                parts.append(str(data["text/html"]))
            elif "image/png" in data:
                parts.append(f'<img alt="{html.escape(str(data.get("text/plain", "image")))}" '
                             f'src="data:image/png;base64,{data["image/png"]}">')
            elif "text/plain" in data:
                parts.append(f"<pre style='margin:2px 0'>{html.escape(str(data['text/plain']))}</pre>")
        elif kind == "error":
            parts.append(f"<pre style='margin:2px 0;color:#b00020'>{html.escape(out.get('ename', ''))}: "
                         f"{html.escape(out.get('evalue', ''))}</pre>")
    return "".join(parts)


def _shrunk(w: W.Image) -> bytes:
    """The image's bytes, re-encoded at the size it is shown at when that is smaller (the snapshot stays small)."""
    value = bytes(w.value)
    try:
        shown = max(int(str(w.width or 0).removesuffix("px")), int(str(w.height or 0).removesuffix("px")))
    except ValueError:  # "50%", "auto": shown at a size only the page knows
        return value
    if not shown or w.format not in ("png", "jpeg"):
        return value
    return _thumbnail(value, shown)


@lru_cache(maxsize=1024)
def _thumbnail(value: bytes, shown: int) -> bytes:  # cached: snapshots are recomputed after every cell
    import io

    from PIL import Image

    from tl_lab.widgets.common import png_thumbnail

    try:
        image = Image.open(io.BytesIO(value)).convert("RGB")
    except OSError:
        return value
    return png_thumbnail(image, shown) if max(image.size) > shown else value


def _walk(w: Any) -> str:
    if _hidden(w):
        return ""
    own = getattr(w, "_snapshot_html", None)  # a widget drawn by its own script (anywidget) gives its static form
    if callable(own):
        return own()
    from tl_lab.widgets.common import FigureSlot  # common imports this module's installer

    if isinstance(w, FigureSlot):
        if w.showing:
            return _figure(w.widget, w.widget.model_id[:16])
        return _walk(w.placeholder) if w.placeholder in w.children else ""
    if isinstance(w, BaseFigure):
        return _figure(w, getattr(w, "model_id", "x")[:16])
    if isinstance(w, W.Tab):  # the selected tab open, the others one click away (as in the live widget)
        titles = list(w.titles)
        sel = w.selected_index
        bar = "".join(f'<span style="padding:2px 10px;border-bottom:{"2px solid #1976d2;font-weight:bold" if i == sel else "1px solid #ccc"}">'
                      f"{html.escape(str(t))}</span>" for i, t in enumerate(titles))
        body = []
        for i, child in enumerate(w.children):
            inner = _walk(child)
            if i == sel:
                body.insert(0, f"<div>{inner}</div>")
            elif inner:
                title = html.escape(str(titles[i] if i < len(titles) else f"tab {i + 1}"))
                body.append(f"<details><summary>{title} (another tab)</summary>{inner}</details>")
        return f'<div class="tl-snap-tabs" style="margin:4px 0">{bar}</div>{"".join(body)}'
    if isinstance(w, W.Accordion):
        parts = []
        for i, child in enumerate(w.children):
            title = html.escape(str(w.titles[i] if i < len(w.titles) else ""))
            inner = _walk(child)
            opened = " open" if w.selected_index == i else ""
            parts.append(f"<details{opened}><summary>{title}</summary>{inner}</details>")
        return "".join(parts)
    if isinstance(w, W.Box):
        row = isinstance(w, W.HBox)
        style = "display:flex;flex-wrap:wrap;align-items:center;gap:2px" if row else ""
        inner = "".join(_walk(c) for c in w.children)
        return f'<div style="{style}">{inner}</div>' if inner else ""
    if isinstance(w, (W.HTML, W.HTMLMath)):
        return f"<div>{w.value}</div>" if w.value else ""
    if isinstance(w, W.Label):
        return f"<div>{html.escape(w.value)}</div>" if w.value else ""
    if isinstance(w, W.Output):
        return _output(w)
    if isinstance(w, W.Image):
        fmt = "png" if w.format in ("png", "jpeg") else w.format if w.format in ("gif", "svg+xml", "webp") else "png"
        size = "".join(f' {k}="{html.escape(str(getattr(w, k)))}"' for k in ("width", "height") if getattr(w, k))
        data = base64.b64encode(_shrunk(w)).decode("ascii")
        return f'<img alt="image" src="data:image/{fmt};base64,{data}"{size}>'
    if isinstance(w, (W.IntProgress, W.FloatProgress)):
        return (f'<span class="tl-snap-control">{html.escape(w.description or "progress")}: '
                f"<b>{w.value} / {w.max}</b></span>")
    if isinstance(w, (W.Button, W.ToggleButton, W.FileUpload)) or isinstance(w, W.ValueWidget):
        return _control(w)
    return ""


def snapshot_html(widget: W.Widget) -> str:
    """What ``widget`` shows now, as static HTML: figures (drawn by the page's plotly.js), tables, text, controls."""
    name = html.escape(type(widget).__name__)
    return (f'<div class="{SNAPSHOT_CLASS}" data-widget="{name}" style="border-left:3px solid #ddd;padding-left:8px">'
            f'<div class="tl-snap-note" style="color:#777;font-size:12px">{name}: a static snapshot of the widget as '
            f"the last cell left it (run the notebook to use it)</div>{_walk(widget)}</div>")


def _is_tl_lab(widget: Any) -> bool:
    return type(widget).__module__.startswith("tl_lab.") and getattr(widget, "_view_name", None) is not None


def _plain_bundle(widget: W.Widget) -> tuple[dict, dict]:
    out = widget._repr_mimebundle_()
    if isinstance(out, tuple):
        data, md = out
        return dict(data or {}), dict(md or {})
    return dict(out or {}), {}


def widget_bundle(widget: W.Widget) -> dict:
    """The display bundle of a tl_lab widget: its live view, its snapshot and a one-line text form."""
    data, _ = _plain_bundle(widget)
    data["text/html"] = snapshot_html(widget)
    data["text/plain"] = f"{type(widget).__name__} widget (run the notebook to use it)"
    return data


def _display(widget: W.Widget) -> None:
    from IPython.display import display

    if not _is_tl_lab(widget):  # what IPython does for any other widget
        method = getattr(type(widget), "_ipython_display_", None)
        if callable(method) and not getattr(method, "__module__", "").startswith("plotly."):  # plotly's raises
            method(widget)
            return
        data, md = _plain_bundle(widget)
        display(data, metadata=md, raw=True)
        return
    try:
        data = widget_bundle(widget)
    except Exception:  # noqa: BLE001 - a snapshot must never keep the live widget from showing
        _log.exception("tl_lab: no snapshot for %s", type(widget).__name__)
        data, md = _plain_bundle(widget)
        display(data, metadata=md, raw=True)
        return
    display_id = f"tl-lab-{widget.model_id}"
    _DISPLAYED[display_id] = (weakref.ref(widget), _digest(data["text/html"]))
    display(data, raw=True, display_id=display_id)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def refresh_snapshots() -> int:
    """Update the snapshot of every displayed tl_lab widget whose view changed; returns how many were updated."""
    from IPython.display import update_display

    updated = 0
    for display_id, (ref, digest) in list(_DISPLAYED.items()):
        widget = ref()
        if widget is None or getattr(widget, "comm", None) is None:
            del _DISPLAYED[display_id]
            continue
        try:
            data = widget_bundle(widget)
        except Exception:  # noqa: BLE001 - keep the last good snapshot
            _log.exception("tl_lab: could not refresh the snapshot of %s", type(widget).__name__)
            continue
        new = _digest(data["text/html"])
        if new != digest:
            update_display(data, raw=True, display_id=display_id)
            _DISPLAYED[display_id] = (ref, new)
            updated += 1
    return updated


def _after_cell(result: Any = None) -> None:
    try:
        refresh_snapshots()
    except Exception:  # noqa: BLE001 - a snapshot must never break the learner's cell
        _log.exception("tl_lab: could not refresh widget snapshots")


def install_snapshots() -> bool:
    """In a Jupyter kernel, display tl_lab widgets with their snapshot and refresh it after each cell (idempotent).

    Returns whether it is installed (False outside an IPython kernel, e.g. in a plain script or a test).
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets needs IPython
        return False
    ip = get_ipython()
    if ip is None or not hasattr(ip, "kernel"):
        return False
    if getattr(ip, "_tl_lab_snapshots", False):
        return True
    ip.display_formatter.ipython_display_formatter.for_type(W.Widget, _display)
    ip.events.register("post_run_cell", _after_cell)
    ip._tl_lab_snapshots = True
    return True
