"""Export figures: standalone offline HTML pages and PNG images.

Why: instructors embed figures in course pages that must work without a kernel and without a network, so the
HTML carries plotly.js itself, once per page however many figures it holds. PNGs (for slides and for checking
figures by eye) go through kaleido, which drives a Chrome or Chromium; it finds one on ``PATH`` or in the usual
install places, and the ``BROWSER_PATH`` environment variable points it at any other (e.g.
``BROWSER_PATH=/usr/bin/chromium``).

Example::

    >>> from tl_lab.plots import comparison_bars, save_html, to_png
    >>> fig = comparison_bars([{"strategy": "fine_tune", "test_acc": 0.9}])
    >>> save_html([fig, fig], "results.html", title="Lesson 0")       # one plotly.js bundle, two figures
    PosixPath('results.html')
    >>> to_png(fig, "results.png")                                      # needs Chrome/Chromium
    PosixPath('results.png')
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import plotly.graph_objects as go
import plotly.io as pio
from plotly.basedatatypes import BaseFigure

from tl_lab.plots.static import describe

__all__ = ["save_html", "to_png", "to_pngs", "find_browser", "plain_figure", "ImageExportError"]

_BROWSER_FIX = (
    "PNG export runs a headless Chrome/Chromium through kaleido. Install one (Debian/Ubuntu: "
    "`apt install chromium`; or `plotly_get_chrome` to download Chrome for Testing), or point kaleido at an "
    "installed one with the BROWSER_PATH environment variable, e.g. BROWSER_PATH=/usr/bin/chromium. "
    "HTML export (save_html) needs no browser."
)


def plain_figure(fig: BaseFigure) -> go.Figure:
    """A ``go.Figure`` copy of a figure or of a live ``FigureWidget`` (what a widget shows right now)."""
    return fig if type(fig) is go.Figure else go.Figure(fig.to_dict())


class ImageExportError(RuntimeError):
    """A figure could not be written as an image; the message says what to install or set."""


def save_html(
    fig_or_figs: go.Figure | Sequence[go.Figure | str],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    include_plotlyjs: bool | Literal["cdn", "directory"] = True,
) -> Path:
    """Write one or several figures into one standalone HTML page; returns the path.

    Why: with ``include_plotlyjs=True`` (the default) the page embeds plotly.js once, before the first figure, and
    opens offline from a USB stick or a course page; the later figures reuse it. Each figure carries its text
    description (:func:`tl_lab.plots.static.describe`) for screen readers and as a "Text description". ``"cdn"`` makes a small page that
    needs the network; ``False`` suits a page that already loads plotly.js. Items may also be strings: blocks of
    HTML (a run table, a paragraph) placed between the figures as they are.

    Example::

        >>> from tl_lab.plots import comparison_bars
        >>> fig = comparison_bars([{"strategy": "raw_pixels", "test_acc": 0.31}, {"strategy": "frozen_head", "test_acc": 0.6}])
        >>> save_html([fig, "<p>10 shots per class.</p>"], "lesson3.html", title="What stages transfer?")
        PosixPath('lesson3.html')
    """
    items = [fig_or_figs] if isinstance(fig_or_figs, (BaseFigure, str)) else list(fig_or_figs)
    if not any(isinstance(f, BaseFigure) for f in items):
        raise ValueError("save_html needs at least one figure")
    for i, f in enumerate(items):
        if not isinstance(f, (BaseFigure, str)):
            raise ValueError(f"item {i} is a {type(f).__name__}, not a plotly.graph_objects.Figure (or an HTML string)")
    if include_plotlyjs not in (True, False, "cdn", "directory"):
        raise ValueError(f"include_plotlyjs must be True, False, 'cdn' or 'directory', got {include_plotlyjs!r}")
    parts, first = [], True
    for item in items:
        if isinstance(item, str):
            parts.append(f'<div class="tl-block">\n{item}\n</div>')
            continue
        f = plain_figure(item)
        alt = html.escape(describe(f))  # screen readers cannot read plotly's SVG
        parts.append(f'<div class="tl-figure">\n<div role="img" aria-label="{alt}">' + f.to_html(
            full_html=False, include_plotlyjs=include_plotlyjs if first else False,
            config={"displaylogo": False, "responsive": True}, default_width=f.layout.width or "100%",
            default_height=f.layout.height or 480) + '</div>\n<details class="tl-alt" style="font-size:12px;'
            f'color:#555"><summary>Text description</summary>{alt}</details>\n</div>')
        first = False
    heading = f"<h1>{html.escape(title)}</h1>\n" if title else ""
    page = (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title or 'tl_lab figures')}</title>\n"
        "<style>body{font-family:Arial,Helvetica,sans-serif;margin:24px;color:#222}"
        " .tl-figure{margin:0 0 32px 0} .tl-block{margin:0 0 24px 0}</style>\n</head>\n<body>\n" + heading
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def find_browser() -> str:
    """The Chrome/Chromium kaleido will use: ``BROWSER_PATH`` if set, else one found on PATH or in the usual places.

    Raises :class:`ImageExportError` naming the fix when there is none.
    """
    override = os.environ.get("BROWSER_PATH")
    if override:
        if not (Path(override).is_file() and os.access(override, os.X_OK)):
            raise ImageExportError(f"BROWSER_PATH={override!r} is not an executable file. {_BROWSER_FIX}")
        return override
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError as e:  # kaleido >= 1 depends on choreographer; older kaleido is not supported
        raise ImageExportError(f"PNG export needs kaleido >= 1 (`pip install 'kaleido>=1'`): {e}") from e
    path = Chromium.find_browser(skip_local=False)
    if not path:
        raise ImageExportError(f"No Chrome or Chromium found. {_BROWSER_FIX}")
    return path


def _size(fig: go.Figure, width: int | None, height: int | None) -> tuple[int, int]:
    # plotly's write_images falls back to its 700x500 default rather than the layout's size; pass it explicitly.
    return int(width or fig.layout.width or 800), int(height or fig.layout.height or 500)


def to_png(fig: go.Figure, path: str | os.PathLike, *, width: int | None = None, height: int | None = None,
           scale: float = 2.0) -> Path:
    """Write ``fig`` as a PNG (``width`` x ``height`` layout pixels, default the figure's own, times ``scale``).

    Starts a headless browser for the one image (several seconds); for many figures use :func:`to_pngs`, which
    starts it once. Raises :class:`ImageExportError` naming the fix when no browser can be found or started.

    Example::

        >>> from tl_lab.plots import comparison_bars
        >>> rows = [{"strategy": "raw_pixels", "test_acc": 0.31}, {"strategy": "frozen_head", "test_acc": 0.6}]
        >>> to_png(comparison_bars(rows), "/tmp/first_result.png", scale=1)   # a headless browser  # doctest: +SKIP
        PosixPath('/tmp/first_result.png')
    """
    return to_pngs({path: fig}, width=width, height=height, scale=scale)[0]


def to_pngs(figs: Mapping[str | os.PathLike, go.Figure], *, width: int | None = None, height: int | None = None,
            scale: float = 2.0) -> list[Path]:
    """Write several figures as PNGs with one browser start: ``{path: figure}``; returns the paths in order."""
    if not figs:
        raise ValueError("to_pngs needs at least one {path: figure}")
    paths = [Path(p) for p in figs]
    for p, f in zip(paths, figs.values()):
        if not isinstance(f, BaseFigure):
            raise ValueError(f"the figure for {p} is a {type(f).__name__}, not a plotly.graph_objects.Figure")
        if p.suffix.lower() != ".png":
            raise ValueError(f"{p} does not end in .png")
        p.parent.mkdir(parents=True, exist_ok=True)
    find_browser()
    figs = {p: plain_figure(f) for p, f in figs.items()}
    sizes = [_size(f, width, height) for f in figs.values()]
    try:
        pio.write_images(list(figs.values()), paths, format="png", scale=scale,
                         width=[w for w, _ in sizes], height=[h for _, h in sizes])
    except (RuntimeError, OSError) as e:  # choreographer's BrowserFailedError / ChannelClosedError, plotly's wrapper
        raise ImageExportError(f"kaleido could not render with the browser at {find_browser()}: {e}. "
                               f"{_BROWSER_FIX}") from e
    return paths
