"""Figures that look inside a network: first-layer filters, feature maps, attributions, feature embeddings.

Why: "pretrained filters are edges and colour blobs", "stage 3 lights up on strokes", "the fine-tuned model looks
at the object, the scratch one at the background" are things a learner should see, not read. The builders take
what ``features.filters``, ``features.feature_maps``, ``attribution.explain`` and ``features.embed`` return
(numpy arrays) and draw them; no torch here.

Example::

    >>> import numpy as np
    >>> from tl_lab.plots import filter_grid
    >>> fig = filter_grid(np.random.default_rng(0).random((32, 3, 3, 3)))
    >>> fig.data[0].type
    'image'
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tl_lab.plots.style import (
    SEQUENTIAL,
    as_array,
    base_layout,
    check_labels,
    series_color,
)

__all__ = ["filter_grid", "feature_map_grid", "attribution_overlays", "embedding_scatter"]

# Overlay colour scales carry their own transparency: a zero attribution leaves the image visible, a strong one
# covers it. Sequential: inferno's ramp; diverging: blue (against the class) / red (for it), as in captum.
_OVERLAY_POSITIVE = [[0.0, "rgba(0,0,4,0)"], [0.2, "rgba(40,11,84,0.05)"], [0.4, "rgba(136,34,106,0.4)"],
                     [0.7, "rgba(228,90,49,0.8)"], [1.0, "rgba(252,255,164,0.95)"]]
_OVERLAY_SIGNED = [[0.0, "rgba(5,48,97,0.9)"], [0.25, "rgba(67,147,195,0.7)"], [0.45, "rgba(209,229,240,0.05)"],
                   [0.5, "rgba(255,255,255,0)"], [0.55, "rgba(253,219,199,0.05)"], [0.75, "rgba(214,96,77,0.7)"],
                   [1.0, "rgba(103,0,31,0.9)"]]
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "star")


def _uint8_rgb(image: Any, *, what: str) -> np.ndarray:
    """(H, W, 3) uint8 from uint8 or [0, 1] float pixels, (H, W, 3) or (3, H, W)."""
    a = as_array(image, ndim=3, what=what, shape_hint="(H, W, 3)")
    if a.shape[-1] != 3 and a.shape[0] == 3:
        a = a.transpose(1, 2, 0)
    if a.shape[-1] != 3:
        raise ValueError(f"{what} must have shape (H, W, 3), got {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(float) * 255), 0, 255).astype(np.uint8)
    return a


def _png_uri(pixels: np.ndarray) -> str:
    """A PNG data URI: a go.Image ``source`` is far lighter in HTML than the same pixels as a ``z`` array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _hide_axes(fig: go.Figure) -> None:
    fig.update_xaxes(visible=False, showgrid=False)
    fig.update_yaxes(visible=False, showgrid=False)


def filter_grid(
    tiles: Any,
    *,
    title: str = "What do the first-layer filters look for?",
    subtitle: str | None = "one tile per filter, its weights shown as RGB: grey = 0, light = positive, dark = negative",
    columns: int | None = None,
    max_tiles: int = 64,
    tile_px: int = 80,
) -> go.Figure:
    """The first convolution's filters as one mosaic image of enlarged tiles, separated by white gaps.

    Why: pretrained first layers hold oriented edges and colour-opponent blobs, random ones hold noise; seeing both
    is the quickest answer to "what did ImageNet teach?". ``tiles``: (K, h, w, 3) floats in [0, 1], as
    ``features.filters(backbone).tiles`` gives. Tiny kernels (3x3) are enlarged with nearest-neighbour to about
    ``tile_px`` screen pixels so every weight stays a crisp square; the mosaic travels as one PNG (``source``), a
    few kB where the same pixels as numbers would weigh hundreds. At most ``max_tiles`` filters are shown.

    Example::

        >>> fig = filter_grid(filters(load_backbone()).tiles)     # 32 tiles of 3x3 -> 4 rows of 8
        >>> fig.data[0].source[:22], fig.data[1].z.shape         # the mosaic; the hover grid of filter indices
        ('data:image/png;base64,', (4, 8))
    """
    t = as_array(tiles, ndim=4, what="tiles", shape_hint="(K, h, w, 3)")
    if t.shape[-1] != 3:
        raise ValueError(f"tiles must have shape (K, h, w, 3) with RGB last, got {t.shape}")
    if t.dtype != np.uint8 and (np.nanmin(t) < -1e-6 or np.nanmax(t) > 1 + 1e-6):
        raise ValueError(f"tiles must be floats in [0, 1] (got [{np.nanmin(t):.3g}, {np.nanmax(t):.3g}]); "
                         "features.filters() already scales them")
    total = len(t)
    t = _uint8_rgb_stack(t[:max_tiles])
    k, h, w, _ = t.shape
    cols = columns or min(k, 8 if k <= 32 else 16)
    rows = -(-k // cols)
    # Enlarge each weight to a block of whole pixels, about as big as it will be drawn, so the browser never
    # smooths it: the PNG carries the exact nearest-neighbour picture.
    up = max(1, round(min(tile_px, 700 / cols * 0.9) / max(h, w)))
    gap = max(2, up // 3)
    th, tw = h * up, w * up
    mosaic = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), 255, dtype=np.uint8)
    index = np.full((rows, cols), np.nan)
    for i, tile in enumerate(t):
        r, c = divmod(i, cols)
        mosaic[r * (th + gap): r * (th + gap) + th, c * (tw + gap): c * (tw + gap) + tw] = tile.repeat(up, 0).repeat(up, 1)
        index[r, c] = i
    fig = go.Figure(go.Image(source=_png_uri(mosaic), hoverinfo="skip", name="filters"))
    # An invisible heatmap, one cell per tile, so hovering anywhere on a tile names the filter.
    fig.add_trace(go.Heatmap(z=index, x0=(tw - 1) / 2, dx=tw + gap, y0=(th - 1) / 2, dy=th + gap, opacity=0,
                             showscale=False, hovertemplate="filter %{z}<extra></extra>", name="filter index"))
    fig.update_xaxes(range=[-0.5, mosaic.shape[1] - 0.5])
    fig.update_yaxes(range=[mosaic.shape[0] - 0.5, -0.5], scaleanchor="x")
    shown = f"{k} filters of {h}x{w}" + (f" (the first {k} of {total})" if total > k else "")
    scale = 700 / mosaic.shape[1]  # the mosaic is drawn 700 px wide, whatever its pixel size
    base_layout(fig, title=title, subtitle=f"{subtitle}. {shown}." if subtitle else shown,
                width=760, height=int(mosaic.shape[0] * scale) + 30 + 90)
    fig.update_layout(margin=dict(l=30, r=30, b=30))
    _hide_axes(fig)
    return fig


def _uint8_rgb_stack(t: np.ndarray) -> np.ndarray:
    if t.dtype == np.uint8:
        return t
    return np.clip(np.rint(t.astype(float) * 255), 0, 255).astype(np.uint8)


def feature_map_grid(
    maps: Any,
    *,
    image: Any = None,
    stage: str = "stage",
    channels: Sequence[int] | None = None,
    columns: int | None = None,
    title: str | None = None,
    subtitle: str | None = "the most active channels for this image; brighter = stronger, each map on its own scale",
) -> go.Figure:
    """One image's strongest activation maps at one stage, the input image first.

    Why: early stages respond to edges where the image has them, later ones to parts at a coarse grid; putting the
    input beside the maps lets a learner match the two. ``maps``: (k, h, w) floats, e.g.
    ``feature_maps(bb, images, "stage3")["stage3"].top_maps[0]``; ``channels``: their channel indices
    (``.top_channels[0]``); ``image``: (H, W, 3) uint8 or [0, 1] pixels.

    Example::

        >>> fig = feature_map_grid(np.random.rand(4, 8, 8), image=np.zeros((64, 64, 3), np.uint8),
        ...                        stage="stage3", channels=[5, 1, 9, 2])
        >>> [t.type for t in fig.data]
        ['image', 'heatmap', 'heatmap', 'heatmap', 'heatmap']
    """
    m = as_array(maps, ndim=3, what="maps", shape_hint="(k, h, w)").astype(np.float32)  # half the bytes of float64
    k = len(m)
    chans = list(range(k)) if channels is None else [int(c) for c in channels]
    if len(chans) != k:
        raise ValueError(f"channels has {len(chans)} indices but maps has {k} maps")
    img = None if image is None else _uint8_rgb(image, what="image")
    n = k + (img is not None)
    cols = columns or min(n, 5)
    rows = -(-n // cols)
    names = (["input image"] if img is not None else []) + [f"channel {c}" for c in chans]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.02, vertical_spacing=0.08)
    panel = 0
    if img is not None:
        fig.add_trace(go.Image(source=_png_uri(img), name="input image", hoverinfo="skip"), 1, 1)
        panel = 1
    for c, a in zip(chans, m):
        r, cc = divmod(panel, cols)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        fig.add_trace(go.Heatmap(
            z=a, zmin=lo, zmax=hi if hi > lo else lo + 1, colorscale=SEQUENTIAL, showscale=False, name=f"channel {c}",
            hovertemplate=f"channel {c}<br>cell (%{{x}}, %{{y}})<br>activation %{{z:.3g}}<extra></extra>"), r + 1, cc + 1)
        panel += 1
    for i in range(1, rows * cols + 1):
        suffix = "" if i == 1 else str(i)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{suffix}", constrain="domain", selector=dict(anchor=f"x{suffix}"))
        fig.update_xaxes(constrain="domain", selector=dict(anchor=f"y{suffix}"))
    _hide_axes(fig)
    fig.update_annotations(font_size=13)
    # at most MAX_WIDTH wide: the notebook's output area (and the dashboard's tab) is about 930 px, and a wider
    # figure is cut, not shrunk (the fifth column disappeared)
    tile = min(190, (MAX_WIDTH - 60) // cols)
    base_layout(fig, title=title or f"What does {stage} respond to in this image?", subtitle=subtitle,
                width=tile * cols + 60, height=tile * rows + 120, extra_top=24)
    fig.update_layout(margin=dict(l=20, r=20, b=20))
    return fig


MAX_WIDTH = 900
"""The widest figure these builders make, in px: a JupyterLab output area is about 930 px wide."""


def wrap_title(text: str, width_px: float, *, font_px: float = 13) -> str:
    """``text`` broken at spaces (``<br>``) into lines that fit ``width_px`` at ``font_px`` (about 0.58 em a
    character in plotly's default sans-serif), so neighbouring column titles never run into each other.

    >>> wrap_title("Integrated Gradients", 100)
    'Integrated<br>Gradients'
    """
    most = max(4, int(width_px / (0.58 * font_px)))
    lines: list[str] = []
    for word in str(text).split():
        if lines and len(lines[-1]) + 1 + len(word) <= most:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines) or str(text)


def _downsample(m: np.ndarray, f: int) -> np.ndarray:
    if f <= 1:
        return m
    h, w = (m.shape[0] // f) * f, (m.shape[1] // f) * f
    return m[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def attribution_overlays(
    images: Any,
    maps: Mapping[str, Any],
    *,
    row_titles: Sequence[str] | None = None,
    signed: bool | None = None,
    percentile: float = 99.0,
    max_side: int = 128,
    title: str = "Which pixels does each model use?",
    subtitle: str | None = None,
) -> go.Figure:
    """Images in rows, one column per attribution method or model, each map laid over a greyscale copy.

    Why: side by side, a learner sees whether the fine-tuned model looks at the object and the scratch model at the
    background. ``images``: (N, H, W, 3) uint8; ``maps``: ``{column title: (N, H, W)}`` (``Attribution.maps``),
    e.g. ``{"pretrained": a.maps, "fine-tuned": b.maps, "scratch": c.maps}``. Each map is divided by its own
    ``percentile`` of |value| (as captum's visualisation clips outliers) so one hot pixel cannot wash out the rest.
    ``signed`` (default: whether any map has negative values) uses a symmetric red/blue scale centred on 0:
    red = evidence for the class, blue = against; otherwise |value| on a transparent-to-bright scale. The overlays
    hold whole percents of that scale (int8, -100..100); maps larger than ``max_side`` are averaged down, images
    travel as PNGs and stay sharp, so the figure stays light in HTML.

    Example::

        >>> bb = tl_lab.load_backbone()
        >>> photos = [tl_lab.sample_photo(name).image() for name in ("cat", "coffee")]
        >>> cam = tl_lab.explain("grad_cam", bb, photos, None)       # None: each image's top class
        >>> sal = tl_lab.explain("saliency", bb, photos, None)
        >>> fig = attribution_overlays(cam.images, {"Grad-CAM": cam.maps, "Saliency": sal.maps},
        ...                            row_titles=["cat", "coffee"])
        >>> [t.type for t in fig.data].count("heatmap"), [a.text for a in fig.layout.annotations]   # 2 rows x 2 methods
        (4, ['image', 'Grad-CAM', 'Saliency', 'cat', 'coffee'])
    """
    imgs = as_array(images, ndim=(3, 4), what="images", shape_hint="(N, H, W, 3)")
    imgs = imgs[None] if imgs.ndim == 3 else imgs
    imgs = np.stack([_uint8_rgb(i, what="each image") for i in imgs])
    n, h, w, _ = imgs.shape
    if not isinstance(maps, Mapping) or not maps:
        raise ValueError("maps must be a non-empty dict {column title: (N, H, W) array}")
    arrays = {}
    for name, a in maps.items():
        a = as_array(a, ndim=(2, 3), what=f"maps[{name!r}]", shape_hint="(N, H, W)").astype(float)
        a = a[None] if a.ndim == 2 else a
        if a.shape != (n, h, w):
            raise ValueError(f"maps[{name!r}] has shape {a.shape}, but images need (N, H, W) = {(n, h, w)}")
        arrays[str(name)] = a
    rows = check_labels(row_titles, n, what="row_titles", expected="images") if row_titles is not None else None
    signed = any(np.nanmin(a) < 0 for a in arrays.values()) if signed is None else signed
    f = max(1, -(-max(h, w) // max_side))
    grey = (imgs.astype(float) @ np.array([0.299, 0.587, 0.114]))
    grey = np.rint(40 + 0.5 * grey).astype(np.uint8)  # darkened and flattened so the colours read on top of it

    cols = 1 + len(arrays)
    panel = min(170 if cols <= 4 else 140, (MAX_WIDTH - 150) // cols)
    # long titles ran into their neighbours ("Saliency (gradient)" into "Integrated Gradients"): a title gets
    # three quarters of its column, the rest keeps neighbours apart
    titles = [wrap_title(t, 0.75 * panel) for t in ["image", *arrays]]
    title_lines = max(t.count("<br>") + 1 for t in titles)
    fig = make_subplots(rows=n, cols=cols, column_titles=titles, row_titles=rows,
                        horizontal_spacing=0.01, vertical_spacing=0.02)
    lo = -100 if signed else 0
    for i in range(n):
        fig.add_trace(go.Image(source=_png_uri(imgs[i]), name="image", hoverinfo="skip"), i + 1, 1)
        background = _png_uri(np.repeat(grey[i][..., None], 3, axis=2))
        for j, (name, a) in enumerate(arrays.items()):
            v = a[i] if signed else np.abs(a[i])
            scale = np.nanpercentile(np.abs(v), percentile)
            scale = scale if scale > 0 else max(np.nanmax(np.abs(v)), 1e-12)
            # Whole percent of the map's scale, as int8: a quarter of the bytes of float32, and plenty for colour.
            z = np.rint(np.clip(_downsample(v / scale, f) * 100, lo, 100)).astype(np.int8)
            fig.add_trace(go.Image(source=background, name=f"{name} background", hoverinfo="skip"), i + 1, j + 2)
            fig.add_trace(go.Heatmap(
                z=z, x0=(f - 1) / 2, dx=f, y0=(f - 1) / 2, dy=f, zmin=lo, zmax=100, name=name,
                colorscale=_OVERLAY_SIGNED if signed else _OVERLAY_POSITIVE, showscale=i == 0 and j == 0,
                colorbar=dict(title=dict(text="attribution<br>(% of map's scale)", side="right"), thickness=12, len=0.6,
                              ticksuffix="%", x=1.0, xanchor="left", xpad=40 if rows else 10),
                hovertemplate=f"{name}<br>pixel (%{{x}}, %{{y}})<br>attribution %{{z}}% of this map's scale"
                              "<extra></extra>"),
                i + 1, j + 2)
    for k in range(1, n * cols + 1):
        suffix = "" if k == 1 else str(k)
        fig.update_yaxes(range=[h - 0.5, -0.5], scaleanchor=f"x{suffix}", selector=dict(anchor=f"x{suffix}"))
        fig.update_xaxes(range=[-0.5, w - 0.5], selector=dict(anchor=f"y{suffix}"))
    _hide_axes(fig)
    note = ("red = evidence for the class, blue = against" if signed else "bright = pixels the prediction relies on")
    extra = 16 * (title_lines - 1)
    base_layout(fig, title=title, subtitle=subtitle or f"{note}; each map scaled to its {percentile:g}th percentile",
                width=panel * cols + 150, height=panel * n + 130 + extra, extra_top=24 + extra)
    fig.update_layout(margin=dict(l=20, r=130 if rows else 100, b=20))
    fig.update_annotations(font_size=13)
    fig.update_annotations(selector=dict(textangle=90), xshift=10)  # row titles clear of the last column
    return fig


def embedding_scatter(
    points: Any,
    labels: Any,
    classes: Sequence[str],
    *,
    title: str = "Do the features group images by class?",
    subtitle: str | None = None,
    axis_titles: tuple[str, str] = ("component 1", "component 2"),
    indices: Sequence[int] | None = None,
) -> go.Figure:
    """A 2-D embedding of image features (PCA or t-SNE), one colour and symbol per class.

    Why: tight, separate clusters mean a linear head on these features will do well; a mixed cloud means it will
    not. ``points`` (N, 2) from ``features.embed``; ``labels`` (N,) class indices into ``classes``; ``indices``:
    each point's index in its split (default 0..N-1), shown on hover so a learner can look the image up.
    Okabe-Ito has eight colours, so classes 9+ reuse them with another marker symbol.

    Example::

        >>> fig = embedding_scatter(np.random.rand(20, 2), np.arange(20) % 2, ["cat", "dog"])
        >>> [t.name for t in fig.data]
        ['cat', 'dog']
    """
    p = as_array(points, ndim=2, what="points", shape_hint="(N, 2)")
    if p.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {p.shape}; reduce with features.embed first")
    y = as_array(labels, ndim=1, what="labels", shape_hint="(N,)")
    if len(y) != len(p):
        raise ValueError(f"labels has {len(y)} entries but points has {len(p)}")
    names = [str(c) for c in classes]
    if y.dtype.kind in "US":
        unknown = sorted(set(y.tolist()) - set(names))
        if unknown:
            raise ValueError(f"labels {unknown[:5]} are not in classes {names}")
        y = np.array([names.index(s) for s in y.tolist()])
    y = y.astype(int)
    if len(y) and (y.min() < 0 or y.max() >= len(names)):
        raise ValueError(f"labels must be class indices in [0, {len(names)}), got range [{y.min()}, {y.max()}]")
    idx = np.arange(len(p)) if indices is None else np.asarray(indices)
    if len(idx) != len(p):
        raise ValueError(f"indices has {len(idx)} entries but points has {len(p)}")
    fig = go.Figure()
    for c, name in enumerate(names):
        sel = y == c
        if not sel.any():
            continue
        fig.add_trace(go.Scatter(
            x=p[sel, 0], y=p[sel, 1], mode="markers", name=name, customdata=idx[sel],
            marker=dict(color=series_color(c), symbol=_SYMBOLS[(c // 8) % len(_SYMBOLS)], size=8, opacity=0.85,
                        line=dict(width=0.6, color="rgba(0,0,0,0.45)")),
            hovertemplate=f"{name}<br>image #%{{customdata}}<br>(%{{x:.2f}}, %{{y:.2f}})<extra></extra>"))
    base_layout(fig, title=title, subtitle=subtitle, width=760, height=580, legend_title_text="class")
    fig.update_xaxes(title=f"{axis_titles[0]} (no units)", zeroline=False)
    fig.update_yaxes(title=f"{axis_titles[1]} (no units)", zeroline=False)
    return fig
