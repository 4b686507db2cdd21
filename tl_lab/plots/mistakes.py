"""Figures of what a classifier gets wrong: the confusion matrix and a gallery of the highest-loss images, each with
its attribution map beside it.

Why: a learner believes "the model confuses sheep with dogs" when they see the sheep it called a dog, and sees *why*
when the map beside it lights up on the grass. The builders take a :class:`~tl_lab.training.mistakes.Mistakes` (from
``run.mistakes()``), the images of its ``top_losses`` (:func:`tl_lab.inside.mistakes.top_loss_images`) and,
optionally, their attribution maps (:func:`tl_lab.inside.mistakes.explain_mistakes`); no torch here.

Example::

    >>> import numpy as np
    >>> from tl_lab.training.mistakes import mistakes_from_logits
    >>> m = mistakes_from_logits(np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), np.array([0, 1, 1]), ("cat", "dog"))
    >>> images = np.zeros((len(m.top_losses), 32, 32, 3), np.uint8)
    >>> fig = top_loss_figure(m, images, attributions=np.ones((3, 32, 32)))
    >>> [t.type for t in fig.data].count("image"), fig.layout.annotations[0].text
    (6, 'dog → cat<br>p 0.95, loss 3.05')
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tl_lab.plots.style import as_array, base_layout
from tl_lab.plots.training import confusion_matrix

__all__ = ["confusion_figure", "top_loss_figure", "attribution_pixels", "GALLERY_WIDTH"]

GALLERY_WIDTH = 848
"""Width of the gallery in px: fits a JupyterLab output area and a course page's text column."""

# Overlay colours for |attribution| in [0, 1] (inferno's ramp): dark = unused, bright = relied on.
_RAMP = np.array([[0, 0, 4], [40, 11, 84], [136, 34, 106], [228, 90, 49], [252, 255, 164]], dtype=float)


def confusion_figure(m: Any, *, normalize: bool = True) -> go.Figure:
    """The confusion matrix of ``m`` (rows true class, columns predicted), through the kit's one confusion heatmap
    (:func:`tl_lab.plots.confusion_matrix`): each row as fractions of its class, hover for counts."""
    wrong = m.n - int(np.trace(m.confusion))
    return confusion_matrix(m.confusion, m.classes, normalize=normalize,
                            title="Which classes does the model confuse?",
                            subtitle=f"{m.split} split: {wrong} of {m.n} images wrong, accuracy {m.accuracy:.3f}")


def _uint8_hwc(images: Any) -> np.ndarray:
    a = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    a = as_array(a, ndim=4, what="images", shape_hint="(N, H, W, 3) or (N, 3, H, W)")
    if a.shape[-1] != 3 and a.shape[1] == 3:
        a = a.transpose(0, 2, 3, 1)
    if a.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3) or (N, 3, H, W) RGB; got shape {a.shape}")
    if a.dtype != np.uint8:
        a = np.clip(np.rint(a.astype(float) * 255), 0, 255).astype(np.uint8)
    return a


def attribution_pixels(image: np.ndarray, amap: np.ndarray, *, percentile: float = 99.0) -> np.ndarray:
    """(H, W, 3) uint8: ``|amap|`` scaled to its ``percentile`` (clipping a few extreme pixels, as captum's
    visualisation does) in an inferno ramp, laid over a darkened grey copy of ``image`` (H, W, 3) uint8."""
    v = np.abs(np.asarray(amap, dtype=float))
    scale = np.nanpercentile(v, percentile) if v.size else 0.0
    scale = scale if scale > 0 else (np.nanmax(v) if v.size and np.nanmax(v) > 0 else 1.0)
    t = np.clip(np.nan_to_num(v / scale), 0.0, 1.0)
    pos = t * (len(_RAMP) - 1)
    lo = np.minimum(pos.astype(int), len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    colour = _RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac
    grey = (image.astype(float) @ np.array([0.299, 0.587, 0.114]))[..., None] * 0.5 + 30
    alpha = np.clip(t * 1.4, 0.0, 0.9)[..., None]
    return np.clip(np.rint(grey * (1 - alpha) + colour * alpha), 0, 255).astype(np.uint8)


def _png_uri(pixels: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _maps(attributions: Any, n: int, h: int, w: int) -> tuple[np.ndarray | None, str]:
    if attributions is None:
        return None, ""
    name = getattr(attributions, "display_name", "attribution")
    a = getattr(attributions, "maps", attributions)
    a = as_array(a, ndim=3, what="attributions", shape_hint="(N, H, W)").astype(float)
    if a.shape[0] < n or a.shape[1:] != (h, w):
        raise ValueError(f"attributions must be (N, H, W) = ({n}, {h}, {w}), one map per image; got {a.shape}")
    return a[:n], name


def top_loss_figure(m: Any, images: Any, attributions: Any = None, *, columns: int | None = None,
                    title: str = "Which images does the model get most wrong?") -> go.Figure:
    """The highest-loss images of ``m``, highest first, each titled "true → predicted, p, loss"; with
    ``attributions`` ((N, H, W) maps, or the :class:`~tl_lab.inside.attribution.Attribution` of
    :func:`~tl_lab.inside.mistakes.explain_mistakes`) each image has its map beside it.

    ``images``: the images of ``m.top_losses`` in the same order (uint8 (N, H, W, 3) or (N, 3, H, W)); the first
    ``min(len(images), len(m.top_losses))`` are drawn. ``p`` is the probability the model gave its (wrong)
    prediction. ``columns``: images per row (default 3 pairs with maps, 6 images without). The figure is
    :data:`GALLERY_WIDTH` px wide.
    """
    rows_info = list(m.top_losses)
    imgs = _uint8_hwc(images)
    n = min(len(imgs), len(rows_info))
    if n == 0:
        raise ValueError("no images to show: pass the images of m.top_losses (top_loss_images(m, split)); "
                         "m.top_losses is empty when top=0")
    imgs = imgs[:n]
    h, w = imgs.shape[1:3]
    maps, method = _maps(attributions, n, h, w)
    per = 2 if maps is not None else 1
    cols = columns or (3 if maps is not None else 5)
    cols = max(1, min(cols, n))
    grid_rows = -(-n // cols)
    fig = make_subplots(rows=grid_rows, cols=cols * per, horizontal_spacing=0.012 if per == 2 else 0.02,
                        vertical_spacing=min(0.3, 0.16 / max(grid_rows, 1) + 0.04))
    for i in range(n):
        r, c = divmod(i, cols)
        row = rows_info[i]
        hover = (f"#{row['index']}: true {row['true']}, predicted {row['predicted']}<br>"
                 f"p(predicted) {row['prob_pred']:.3f}, p(true) {row['prob_true']:.3f}, loss {row['loss']:.3f}")
        if row.get("file"):
            hover += f"<br>{row['file']}"
        fig.add_trace(go.Image(source=_png_uri(imgs[i]), name=f"#{row['index']}",
                               hovertemplate=hover + "<extra></extra>"), r + 1, c * per + 1)
        if maps is not None:
            fig.add_trace(go.Image(source=_png_uri(attribution_pixels(imgs[i], maps[i])), name=f"{method} #{row['index']}",
                                   hovertemplate=f"{method}<br>" + hover + "<extra></extra>"), r + 1, c * per + 2)
    fig.update_xaxes(visible=False, showgrid=False)
    fig.update_yaxes(visible=False, showgrid=False)
    # one two-line title over each image (and its map), as an annotation centred on the pair
    annotations = []
    width_px = (GALLERY_WIDTH - 40) / cols
    for i in range(n):
        r, c = divmod(i, cols)
        row = rows_info[i]
        first = (r * cols * per) + c * per + 1
        last = first + per - 1
        xa = fig.layout["xaxis" if first == 1 else f"xaxis{first}"].domain
        xb = fig.layout["xaxis" if last == 1 else f"xaxis{last}"].domain
        ya = fig.layout["yaxis" if first == 1 else f"yaxis{first}"].domain
        correct = row["true"] == row["predicted"]
        head = f"{row['true']} → {row['predicted']}"
        if len(head) * 7.2 > width_px:  # about 7 px a character at 12 px: too wide for its column, break it
            head = f"{row['true']} →<br>{row['predicted']}"
        text = f"{head}<br>p {row['prob_pred']:.2f}, loss {row['loss']:.2f}"
        annotations.append(dict(text=text, x=(xa[0] + xb[1]) / 2, y=ya[1], xref="paper", yref="paper",
                                xanchor="center", yanchor="bottom", showarrow=False,
                                font=dict(size=12, color="#1b6e20" if correct else "#b00020")))
    fig.update_layout(annotations=annotations)
    panel = (GALLERY_WIDTH - 40) / (cols * per)
    lines = max(a["text"].count("<br>") + 1 for a in annotations)
    note = (f"left: the image; right: {method} for the predicted class (bright = pixels the prediction relies on)"
            if maps is not None else "hover an image for its probabilities")
    subtitle = f"{m.split} split, highest cross-entropy loss first; title: true → predicted, p(predicted), loss. {note}"
    base_layout(fig, title=title, subtitle=subtitle, width=GALLERY_WIDTH,
                height=int(grid_rows * (panel + 16 * lines + 12) + 40), extra_top=16 * lines + 2)
    fig.update_layout(margin=dict(l=20, r=20, b=20), showlegend=False)
    return fig
