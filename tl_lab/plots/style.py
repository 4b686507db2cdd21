"""The shared look of every tl_lab figure, and the input checks the builders share.

Why one place: a learner compares figures across lessons, so "fine-tune" must be the same colour in the
data-efficiency curve, the comparison bars and the freeze sweep, and every figure must read the same way (white
template, readable fonts, a colour-blind-safe palette). The palette is Okabe & Ito's eight colours
(https://jfly.uni-koeln.de/color/), safe for the common forms of colour blindness; sequential maps are viridis /
cividis and diverging maps are red-blue, both readable by colour-blind viewers and in greyscale.

Example::

    >>> from tl_lab.plots.style import OKABE_ITO, color_for
    >>> color_for("fine_tune"), OKABE_ITO["blue"]
    ('#009E73', '#0072B2')
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

__all__ = [
    "OKABE_ITO",
    "SERIES_COLORS",
    "STRATEGY_COLORS",
    "STRATEGY_NAMES",
    "INIT_COLORS",
    "TEMPLATE",
    "color_for",
    "series_color",
    "strategy_name",
    "MAX_WIDTH",
    "COLOR_WORDS",
    "color_word",
    "place_labels",
    "label_box",
    "robust_range",
    "place_trace_labels",
]

OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
"""Okabe-Ito colours by name; the one palette every figure draws from."""

SERIES_COLORS: tuple[str, ...] = tuple(
    OKABE_ITO[k] for k in ("blue", "orange", "bluish_green", "vermillion", "reddish_purple", "sky_blue", "black", "yellow")
)
"""Order for unnamed series (runs, datasets, classes): strong colours first, yellow (weak on white) last."""

GREY = "#7F7F7F"

STRATEGY_NAMES: dict[str, str] = {
    "raw_pixels": "raw pixels",
    "scratch": "from scratch",
    "linear_probe": "linear probe",
    "frozen_head": "frozen backbone + new head",
    "fine_tune": "fine-tune all",
    "prototypes": "prototypes (nearest class mean)",
    "zero_shot": "zero-shot (no labels)",
}
"""Display names for the strategy keys that experiments use; other keys are shown as given."""

STRATEGY_COLORS: dict[str, str] = {
    "raw_pixels": GREY,
    "scratch": OKABE_ITO["vermillion"],
    "linear_probe": OKABE_ITO["sky_blue"],
    "frozen_head": OKABE_ITO["blue"],
    "fine_tune": OKABE_ITO["bluish_green"],
    "prototypes": OKABE_ITO["orange"],
    "zero_shot": OKABE_ITO["reddish_purple"],
}

INIT_COLORS: dict[str, str] = {"pretrained": OKABE_ITO["blue"], "random": OKABE_ITO["vermillion"]}

TEMPLATE = "plotly_white"
FONT = dict(family="Arial, Helvetica, sans-serif", size=14)
SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"


def strategy_key(name: str) -> str:
    """``"fine-tune"``, ``"Fine tune"`` and ``"fine_tune"`` all mean the same strategy."""
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def strategy_name(name: str) -> str:
    """The display name of a strategy key (``"fine_tune"`` -> ``"fine-tune all"``); unknown keys as given."""
    return STRATEGY_NAMES.get(strategy_key(name), str(name))


def color_for(name: str, index: int = 0) -> str:
    """The fixed colour of a known strategy or init ("pretrained"/"random"), else the ``index``-th series colour."""
    key = strategy_key(name)
    if key in STRATEGY_COLORS:
        return STRATEGY_COLORS[key]
    if key in INIT_COLORS:
        return INIT_COLORS[key]
    return series_color(index)


def series_color(index: int) -> str:
    return SERIES_COLORS[index % len(SERIES_COLORS)]


MAX_WIDTH = 840
"""The widest a figure may be: JupyterLab's output area is 848 px wide, and a wider figure is cut at its right edge
(plotly does not shrink a figure with a fixed width)."""

COLOR_WORDS: dict[str, str] = {
    OKABE_ITO["black"]: "black", OKABE_ITO["orange"]: "orange", OKABE_ITO["sky_blue"]: "light blue",
    OKABE_ITO["bluish_green"]: "green", OKABE_ITO["yellow"]: "yellow", OKABE_ITO["blue"]: "blue",
    OKABE_ITO["vermillion"]: "dark orange", OKABE_ITO["reddish_purple"]: "pink", GREY: "grey",
}
"""What a reader calls each palette colour: a figure's text names a colour with :func:`color_word`, never by hand,
so it cannot say red where the points are orange (Okabe-Ito's vermillion reads as dark orange)."""


def color_word(color: str) -> str:
    """The word for a palette colour (``"#D55E00"`` -> ``"dark orange"``)."""
    try:
        return COLOR_WORDS[color.upper()]
    except KeyError:
        raise ValueError(f"{color!r} is not a palette colour; name one of: {', '.join(COLOR_WORDS)}") from None


TITLE_SIZE, SUBTITLE_SIZE, TITLE_MIDDLE = 19, 13, 26
_SUBTITLE_LINE = f"<br><span style='font-size:{SUBTITLE_SIZE}px;color:#555555'>{{}}</span>"  # one subtitle line


def subtitle_of(fig: go.Figure) -> str:
    """The subtitle :func:`base_layout` wrote under a figure's title (its lines joined by ``<br>``), or ""."""
    pattern = re.escape(_SUBTITLE_LINE).replace(r"\{\}", "(.*?)")
    return "<br>".join(re.findall(pattern, fig.layout.title.text or ""))


def wrap(text: str, width_px: int, char_px: float) -> tuple[str, int]:
    """``text`` broken with ``<br>`` so each line fits ``width_px``; returns it and its number of lines.

    Plotly never wraps titles itself: a long subtitle is simply cut off at the figure's edge.
    """
    if not text:
        return "", 0
    lines = textwrap.wrap(text, max(20, int(width_px / char_px)), break_on_hyphens=False)
    return "<br>".join(lines), len(lines)


def base_layout(fig: go.Figure, *, title: str, subtitle: str | None = None, width: int = 800, height: int = 480,
                extra_top: int = 0, **layout: Any) -> go.Figure:
    """Apply the house look: white template, a title that asks the figure's question, an optional subtitle.

    Title and subtitle are wrapped to the figure's width and the top margin (and height) grow to hold them;
    ``extra_top`` adds room below them for subplot titles.

    The subtitle is written into the title's text, smaller and grey, rather than as plotly's ``title.subtitle``:
    plotly.js places a subtitle from the title's measured box, and a chart first drawn while not on screen (a
    FigureWidget's first render, a hidden tab, a collapsed section of a course page) measures nothing and draws
    the subtitle above the title. One text block needs no measuring.
    """
    title_text, title_lines = wrap(title, width - 30, 10.0)
    sub_text, sub_lines = wrap(subtitle or "", width - 30, 6.6)
    if sub_text:
        title_text += "".join(_SUBTITLE_LINE.format(line) for line in sub_text.split("<br>"))
    # The first line's middle sits TITLE_MIDDLE px below the top, and the block grows down from it: plotly spaces
    # every line of a title 1.3 title font sizes apart (measured in Chromium: the block's top stays 9-16 px down
    # for 1-3 lines; a "top" anchor instead pushes a multi-line title 3 px above the figure).
    lines = title_lines + sub_lines
    top = round(TITLE_MIDDLE + TITLE_SIZE * 0.6 + 1.3 * TITLE_SIZE * (lines - 1)) + 22 + extra_top
    total_height = height + max(0, top - 90)
    fig.update_layout(
        template=TEMPLATE,
        font=FONT,
        title=dict(text=title_text, x=0.01, xanchor="left", yref="container", y=1 - TITLE_MIDDLE / total_height,
                   yanchor="middle", font=dict(size=TITLE_SIZE), automargin=False),
        width=width,
        height=total_height,
        margin=dict(l=70, r=30, t=top, b=60),
        hoverlabel=dict(font_size=13),
        **layout,
    )
    return fig


def top_margin(fig: go.Figure) -> int:
    return int(fig.layout.margin.t)


def heatmap_frame(fig: go.Figure, *, xlabels: Sequence[str], ylabels: Sequence[str], cell: int,
                  xtitle: str, ytitle: str, title: str, subtitle: str | None) -> go.Figure:
    """Size a labelled heatmap so its cells are ``cell`` pixels square and every tick label fits beside it."""
    ylab = max(len(s) for s in ylabels) * 8.5
    xlab = max(len(s) for s in xlabels) * 8.5
    rotate = xlab > cell - 6
    left, bottom = int(ylab + 70), int((xlab * 0.72 if rotate else 20) + 60)
    width, height = left + cell * len(xlabels) + 140, cell * len(ylabels) + bottom
    base_layout(fig, title=title, subtitle=subtitle, width=max(width, 520), height=height + 90)
    fig.update_layout(margin=dict(l=left, r=140 + max(0, 520 - width), b=bottom))
    fig.update_xaxes(title=xtitle, type="category", tickangle=-45 if rotate else 0, showgrid=False)
    fig.update_yaxes(title=ytitle, type="category", autorange="reversed", showgrid=False, scaleanchor="x",
                     constrain="domain", ticklabelstandoff=6)
    fig.update_xaxes(ticklabelstandoff=4)
    return fig


# ---- labels beside points, placed so they do not overlap ------------------------------------------------------

LABEL_POSITIONS = ("top center", "bottom center", "middle right", "middle left", "top right", "top left",
                   "bottom right", "bottom left")
CHAR_PX = 0.62  # a character of plotly's sans-serif text is about 0.62 font sizes wide (measured in Chromium)


def label_box(x: float, y: float, text: str, position: str, *, font_size: int = 11,
              marker_size: int = 12) -> tuple[float, float, float, float]:
    """The pixel box ``(left, top, right, bottom)`` (y down) that plotly gives ``text`` at ``position`` beside a
    marker at pixel ``(x, y)``: the text sits just outside the marker, centred or aligned as named."""
    w, h, gap = len(text) * font_size * CHAR_PX, font_size * 1.25, marker_size / 2 + 2
    vertical, horizontal = position.split()
    left = {"center": x - w / 2, "right": x + (gap if vertical == "middle" else 0),
            "left": x - w - (gap if vertical == "middle" else 0)}[horizontal]
    top = {"top": y - gap - h, "bottom": y + gap, "middle": y - h / 2}[vertical]
    return left, top, left + w, top + h


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(points: Sequence[tuple[float, float]], texts: Sequence[str], *, font_size: int = 11,
                 marker_size: int = 12, area: tuple[float, float, float, float] | None = None) -> list[str]:
    """A ``textposition`` per point (pixel coordinates, y down) so that labels cover neither each other nor a
    marker, where the plot ``area`` (left, top, right, bottom) allows; greedy, in the order given. Empty texts get
    "top center" and take no room. Plotly places every label "top center" unless told: close points then print
    their names on top of each other."""
    half = marker_size / 2
    markers = [(x - half, y - half, x + half, y + half) for x, y in points]
    placed: list[tuple[float, float, float, float]] = []
    chosen = []
    for (x, y), text in zip(points, texts):
        if not text:
            chosen.append("top center")
            continue
        best, best_cost = LABEL_POSITIONS[0], float("inf")
        for position in LABEL_POSITIONS:
            box = label_box(x, y, text, position, font_size=font_size, marker_size=marker_size)
            cost = sum(_overlap(box, other) for other in placed) + sum(_overlap(box, m) for m in markers)
            if area is not None:  # outside the plot area: as bad as covering that much of another label
                inside = _overlap(box, area)
                cost += (box[2] - box[0]) * (box[3] - box[1]) - inside
            if cost < best_cost - 1e-9:
                best, best_cost = position, cost
            if cost == 0:
                break
        placed.append(label_box(x, y, text, best, font_size=font_size, marker_size=marker_size))
        chosen.append(best)
    return chosen


def axis_pixels(fig: go.Figure, axis: str) -> tuple[float, float]:
    """The pixel span ``(start, end)`` of a laid-out axis (``"xaxis"``, ``"yaxis2"``): from the figure's size,
    margins and the axis' domain. y runs down the page, so a y axis' start is its bottom."""
    layout = fig.layout
    domain = getattr(layout, axis).domain or (0, 1)
    if axis.startswith("x"):
        plot = layout.width - layout.margin.l - layout.margin.r
        return layout.margin.l + plot * domain[0], layout.margin.l + plot * domain[1]
    plot = layout.height - layout.margin.t - layout.margin.b
    return layout.margin.t + plot * (1 - domain[0]), layout.margin.t + plot * (1 - domain[1])


def to_pixels(values: Sequence[float], axis_range: Sequence[float], span: tuple[float, float], *,
              log: bool = False) -> list[float]:
    """Data values on an axis with ``axis_range`` (log10 units for a log axis) as pixels along ``span``."""
    lo, hi = axis_range
    out = []
    for v in values:
        u = (np.log10(v) if log else v) - lo
        out.append(span[0] + (span[1] - span[0]) * u / (hi - lo))
    return out


def place_trace_labels(fig: go.Figure, traces: Sequence[Any], *, xaxis: str = "xaxis", yaxis: str = "yaxis",
                       font_size: int = 11, marker_size: int = 12) -> None:
    """Give the text labels of ``traces`` (drawn on ``xaxis``/``yaxis``, whose ranges must be set) positions that do
    not overlap (:func:`place_labels`), after :func:`base_layout` has fixed the figure's size and margins."""
    traces = [t for t in traces if t.mode and "text" in t.mode]  # legend keys and bare markers carry no labels
    xa, ya = getattr(fig.layout, xaxis), getattr(fig.layout, yaxis)
    if xa.range is None or ya.range is None:
        raise ValueError(f"place_trace_labels needs explicit ranges on {xaxis} and {yaxis}")
    xspan, yspan = axis_pixels(fig, xaxis), axis_pixels(fig, yaxis)
    points, texts, owners = [], [], []
    for t in traces:
        xs = to_pixels([float(v) for v in t.x], xa.range, xspan, log=xa.type == "log")
        ys = to_pixels([float(v) for v in t.y], ya.range, yspan)
        labels = list(t.text) if t.text is not None and not isinstance(t.text, str) else [t.text or ""] * len(xs)
        points += list(zip(xs, ys))
        texts += [str(v) for v in labels]
        owners += [t] * len(xs)
    area = (xspan[0], yspan[1], xspan[1], yspan[0])
    positions = place_labels(points, texts, font_size=font_size, marker_size=marker_size, area=area)
    for t in traces:
        t.textposition = [p for p, o in zip(positions, owners) if o is t]


def robust_range(values: Any, *, low: float = 1.0, high: float = 99.0, fence: float = 0.5,
                 pad: float = 0.05) -> tuple[list[float], int]:
    """An axis range that leaves out only far outliers, and how many values it leaves out.

    Values more than ``fence`` times the ``low``-``high`` percentile span beyond those percentiles are outliers;
    the range spans every other value, padded by ``pad`` of its extent. One far point no longer squeezes every
    other point into a corner, while a cloud's ordinary tails stay on the axes.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return [-1.0, 1.0], 0
    lo, hi = np.percentile(v, [low, high])
    span = hi - lo
    kept = v[(v >= lo - fence * span) & (v <= hi + fence * span)]
    start, end = float(kept.min()), float(kept.max())
    extent = (end - start) or (abs(end) or 1.0)
    return [start - pad * extent, end + pad * extent], int(v.size - kept.size)


def legend_below(fig: go.Figure) -> None:
    """A horizontal legend under the plot: it never covers the data."""
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=-0.18, yanchor="top"))


def ordered_unique(values: Iterable[Any]) -> list[Any]:
    seen: dict[Any, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


# ---- input checks ---------------------------------------------------------------------------------------------


def check_records(records: Any, required: Sequence[str], *, what: str) -> list[Mapping[str, Any]]:
    """``records`` as a non-empty list of mappings that all hold ``required``; the error names what is missing."""
    if isinstance(records, Mapping) or not isinstance(records, Sequence) or isinstance(records, str):
        raise ValueError(f"{what}: expected a list of dict records, got {type(records).__name__}")
    if len(records) == 0:
        raise ValueError(f"{what}: no records to plot")
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise ValueError(f"{what}: record {i} is a {type(r).__name__}, not a dict")
        missing = [k for k in required if k not in r]
        if missing:
            raise ValueError(f"{what}: record {i} lacks {missing}; it has keys {sorted(r)} (needs {list(required)})")
    return list(records)


def check_accuracy(value: Any, *, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{what} must be an accuracy in [0, 1], got {v}")
    return v


def as_array(x: Any, *, ndim: int | tuple[int, ...], what: str, shape_hint: str) -> np.ndarray:
    """``x`` as a numpy array (torch tensors welcome) with the expected number of dimensions."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if a.ndim not in dims:
        raise ValueError(f"{what} must have shape {shape_hint}, got shape {a.shape}")
    return a


def check_labels(labels: Sequence[Any], n: int, *, what: str, expected: str) -> list[str]:
    labels = [str(s) for s in labels]
    if len(labels) != n:
        raise ValueError(f"{what} has {len(labels)} names but {expected} has {n}")
    return labels


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0, len(a)
