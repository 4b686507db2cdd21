"""Figures on pages with no kernel and no network: a static-page form of every plotly figure, with a text alternative.

Why: plotly 6 and 7 show a figure in a kernel as ``application/vnd.plotly.v1+json`` only. JupyterLab draws that
mimetype, but nbconvert's HTML exporter and MyST-NB cannot ("is not able to be represented"), so every plain
figure vanished from an exported lesson. The ``"tl_lab"`` plotly renderer (made the default when
``tl_lab.plots`` is imported in a Jupyter kernel) emits three forms of each figure:

- ``application/vnd.plotly.v1+json``: what JupyterLab, Notebook 7 and VS Code draw (they rank it above HTML, so
  the figure is never shown twice);
- ``text/html``: the figure's JSON and a few lines of script that draw it with ``window.Plotly`` once the page has
  loaded. plotly.js itself (4.8 MB) is *not* in each figure: a page gets it once, from
  :class:`tl_lab.app.pages.OfflinePagePreprocessor` (nbconvert, JupyterLab's "Export as HTML") or from the
  ``tl_lab.app.pages`` Sphinx extension (MyST-NB). Without plotly.js the block shows its text description instead
  of an empty box;
- ``text/plain``: the figure's text alternative (what it shows and its key numbers), which a screen reader can
  read where plotly's SVG cannot; the HTML form carries it as ``aria-label`` and as a "Text description".

Example::

    >>> import plotly.graph_objects as go
    >>> from tl_lab.plots.static import describe, static_figure_html
    >>> fig = go.Figure(go.Bar(x=["raw pixels", "frozen head"], y=[0.41, 0.83]))
    >>> describe(fig)
    'Figure: bar chart. bar: raw pixels 0.41, frozen head 0.83.'
    >>> "tl-plotly" in static_figure_html(fig)
    True
"""

from __future__ import annotations

import base64
import html
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.io as pio
from plotly.basedatatypes import BaseFigure
from plotly.io.base_renderers import MimetypeRenderer

__all__ = ["describe", "static_figure_html", "PageRenderer", "use_page_renderer", "FIGURE_CLASS", "PLOTLY_MIME",
           "RENDERER_NAME"]

PLOTLY_MIME = "application/vnd.plotly.v1+json"
FIGURE_CLASS = "tl-plotly"
"""CSS class of the element a static figure is drawn in (pages count and find figures by it)."""
RENDERER_NAME = "tl_lab"
CONFIG = {"displaylogo": False, "responsive": True}
MAX_ITEMS = 12  # bars / points listed by name in a text alternative

_TAG = re.compile(r"<[^>]+>")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def _fig_dict(fig: BaseFigure | Mapping[str, Any]) -> dict:
    if isinstance(fig, BaseFigure):
        return fig.to_dict()
    if isinstance(fig, Mapping):
        return dict(fig)
    raise ValueError(f"expected a plotly figure or its dict, got a {type(fig).__name__}")


def _text(value: Any) -> str:
    """Plain text of a plotly title (``<br>`` -> ". ", tags dropped, entities decoded)."""
    if isinstance(value, Mapping):
        value = value.get("text")
    if not value:
        return ""
    s = _BR.sub(". ", str(value))
    s = html.unescape(_TAG.sub("", s))
    s = re.sub(r"([?!.:;])\s*\.(\s|$)", r"\1\2", re.sub(r"\s+", " ", s))
    return s.strip(" .")


def _values(v: Any) -> np.ndarray | None:
    """A trace's data array as numpy: lists, numpy arrays and plotly's base64 typed arrays (``{"bdata": ...}``)."""
    if v is None:
        return None
    if isinstance(v, Mapping) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v.get("dtype", "f8")))
        shape = v.get("shape")
        if shape:
            a = a.reshape([int(s) for s in str(shape).split(",")] if isinstance(shape, str) else shape)
        return a
    try:
        return np.asarray(v, dtype=object)
    except (ValueError, TypeError):  # ragged lists
        return None


def _num(x: Any) -> str:
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return f"{int(x):,}"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not np.isfinite(f):
        return str(f)
    if f == int(f) and abs(f) < 1e15:
        return f"{int(f):,}"
    return f"{f:.3g}" if abs(f) >= 1e-3 else f"{f:.2e}"


_KIND = {"bar": "bar chart", "scatter": "line or scatter plot", "scattergl": "scatter plot", "heatmap": "heatmap",
         "image": "image", "histogram": "histogram", "box": "box plot", "pie": "pie chart", "violin": "violin plot"}


def _describe_trace(t: Mapping[str, Any]) -> str:
    kind = t.get("type") or "scatter"
    name = _text(t.get("name")) or kind
    if kind == "image":
        return ""  # described once for all images, below
    if kind in ("heatmap", "contour"):
        z = _values(t.get("z"))
        if z is None or z.size == 0:
            return f"{name}: empty"
        zf = np.asarray(z, dtype=float)
        return (f"{name}: {zf.shape[0]} x {zf.shape[1] if zf.ndim > 1 else 1} cells, values from "
                f"{_num(np.nanmin(zf))} to {_num(np.nanmax(zf))}")
    horizontal = t.get("orientation") == "h"
    x, y = _values(t.get("x")), _values(t.get("y"))
    if horizontal:
        x, y = y, x
    if y is None:
        return f"{name}: no values"
    y = y.ravel()
    x = x.ravel() if x is not None and x.size == y.size else np.arange(y.size)
    if y.size == 0:
        return f"{name}: no values"
    if y.size <= MAX_ITEMS:
        pairs = ", ".join(f"{_text(a) if isinstance(a, str) else _num(a)} {_num(b)}" for a, b in zip(x, y))
        return f"{name}: {pairs}"
    try:
        yf = np.asarray(y, dtype=float)
        i_max, i_min = int(np.nanargmax(yf)), int(np.nanargmin(yf))
    except (TypeError, ValueError):
        return f"{name}: {y.size} points"
    return (f"{name}: {y.size} points from {_num(x[0])} to {_num(x[-1])}; first {_num(yf[0])}, last {_num(yf[-1])}, "
            f"highest {_num(yf[i_max])} at {_num(x[i_max])}, lowest {_num(yf[i_min])} at {_num(x[i_min])}")


def describe(fig: BaseFigure | Mapping[str, Any]) -> str:
    """A short text alternative for a figure: its title, its kind, its axes and its key numbers.

    Bars and short series list every value; long series give their range, first, last, highest and lowest points;
    heatmaps their size and value range; image grids their panel titles.
    """
    d = _fig_dict(fig)
    layout = d.get("layout") or {}
    traces = list(d.get("data") or [])
    title = _text(layout.get("title"))
    kinds = []
    for t in traces:
        k = _KIND.get(t.get("type") or "scatter", t.get("type") or "scatter")
        if k not in kinds:
            kinds.append(k)
    parts = [f"{title}" if title else "Figure", ": " + (" and ".join(kinds) if kinds else "empty figure") + "."]
    axes = []
    for key in sorted(layout):
        if re.fullmatch(r"[xy]axis\d*", key):
            axis_title = _text((layout[key] or {}).get("title"))
            if axis_title and axis_title not in axes:
                axes.append(axis_title)
    if axes:
        parts.append(" Axes: " + ", ".join(axes) + ".")
    images = [t for t in traces if t.get("type") == "image"]
    if images:
        names = [_text(a.get("text")) for a in layout.get("annotations") or [] if _text(a.get("text"))]
        parts.append(f" {len(images)} image{'s' if len(images) > 1 else ''}"
                     + (": " + ", ".join(names[:MAX_ITEMS]) if names else "") + ".")
    for t in traces[:8]:
        line = _describe_trace(t)
        if line:
            parts.append(f" {line}.")
    if len(traces) > 8:
        parts.append(f" And {len(traces) - 8} more series.")
    return "".join(parts).strip()


def _script_json(obj: Any) -> str:
    # JSON inside <script type="application/json">: "</" would end the script element early.
    return obj.replace("</", "<\\/") if isinstance(obj, str) else obj


_DRAW = (
    "(function(){var id=%s;"
    "function draw(){var el=document.getElementById(id);if(!el||el.getAttribute('data-drawn'))return true;"
    "if(!window.Plotly)return false;var f=JSON.parse(document.getElementById(id+'-json').textContent);"
    "el.setAttribute('data-drawn','1');el.innerHTML='';window.Plotly.newPlot(el,f.data,f.layout||{},f.config||{});"
    "return true}"
    "function missing(){var el=document.getElementById(id);if(el&&!el.getAttribute('data-drawn')){"
    "el.style.height='auto';el.style.border='1px dashed #999'}}"
    "if(!draw()){if(document.readyState==='loading'){document.addEventListener('DOMContentLoaded',function(){"
    "if(!draw())missing()})}else{missing()}}})();"
)


def static_figure_html(fig: BaseFigure | Mapping[str, Any], *, alt: str | None = None,
                       fig_id: str | None = None) -> str:
    """The figure as an HTML block that draws itself with the page's plotly.js, with its text alternative.

    The block holds no plotly.js: the page loads it once (see the module docstring). Until the figure is drawn, and
    where a page has no plotly.js or runs no scripts (an untrusted notebook in JupyterLab), the block shows the text
    alternative instead of nothing. ``fig_id`` (the element's id, unique on
    the page) defaults to a random one.
    """
    d = _fig_dict(fig)
    d.setdefault("config", dict(CONFIG))
    alt = alt if alt is not None else describe(d)
    fig_id = fig_id or f"tl-fig-{uuid.uuid4().hex[:12]}"
    layout = d.get("layout") or {}
    width, height = layout.get("width"), layout.get("height")
    size = (f"width:{int(width)}px;" if width else "width:100%;") + f"max-width:100%;height:{int(height or 450)}px"
    data = _script_json(pio.to_json(d, validate=False, remove_uids=True))
    return (f'<div class="tl-figure" style="margin:4px 0">'
            f'<div id="{fig_id}" class="{FIGURE_CLASS}" role="img" aria-label="{html.escape(alt)}" '
            f'style="{size}"><p class="tl-alt-text" style="padding:8px;color:#555;margin:0">{html.escape(alt)}</p>'
            f'</div>'
            f'<details class="tl-alt" style="font-size:12px;color:#555"><summary>Text description</summary>'
            f'{html.escape(alt)}</details>'
            f'<script type="application/json" id="{fig_id}-json">{data}</script>'
            f"<script>{_DRAW % json.dumps(fig_id)}</script></div>")


class PageRenderer(MimetypeRenderer):
    """plotly renderer ``"tl_lab"``: the plotly mimetype (live) + a static-page HTML block + a text alternative."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config = dict(config) if config else {}

    def to_mimebundle(self, fig_dict: dict) -> dict:
        config = {**CONFIG, **self.config}
        fig_dict["config"] = {**config, **(fig_dict.get("config") or {})}
        live = json.loads(pio.to_json(fig_dict, validate=False, remove_uids=False))
        alt = describe(live)
        return {PLOTLY_MIME: live, "text/html": static_figure_html(live, alt=alt), "text/plain": alt}


_REPLACES = ("plotly_mimetype", "jupyterlab", "vscode", "nteract")


def use_page_renderer(*, force: bool = False) -> bool:
    """Register the ``"tl_lab"`` renderer and make it the default where figures go out as the plotly mimetype.

    Where the user or plotly chose a different default (a browser tab, Colab, a static image …) it stays, unless
    ``force``. Returns whether ``"tl_lab"`` is now the default.
    """
    if RENDERER_NAME not in pio.renderers:
        pio.renderers[RENDERER_NAME] = PageRenderer()
    if force or pio.renderers.default in _REPLACES:
        pio.renderers.default = RENDERER_NAME
    return pio.renderers.default == RENDERER_NAME
