"""Figures for adapting to a new domain: accuracy per method and shift, the domain classifier, the embedding.

Data in (``domain_shift`` records, per-epoch domain accuracies, 2-D points), ``go.Figure`` out; nothing is trained
here. Each figure asks its question in the title:

- :func:`adaptation_bars`: how much of a shift's loss does each method win back, without and with target labels?
- :func:`domain_accuracy_curves`: can the domain classifier still tell the domains apart (0.5 = confused)?
- :func:`domain_embedding`: do source and target features overlap, before and after adapting?

Example::

    >>> recs = [{"strategy": "fine_tune", "shift": "inverted", "training": "clean", "test_acc": 0.4},
    ...         {"strategy": "fine_tune", "shift": "inverted", "training": "dann", "test_acc": 0.5}]
    >>> [t.name for t in adaptation_bars(recs).data]
    ['source only (fine-tune)', 'domain confusion (DANN)']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tl_lab.plots.style import (
    GREY,
    MAX_WIDTH,
    OKABE_ITO,
    as_array,
    base_layout,
    check_accuracy,
    check_records,
    color_word,
    legend_below,
    ordered_unique,
    robust_range,
)

__all__ = ["ADAPTATION_METHODS", "adaptation_bars", "domain_accuracy_curves", "domain_embedding", "DOMAIN_COLORS"]

# label -> (strategy, training) in domain_shift's records, with a fixed colour; drawn in this order when present.
ADAPTATION_METHODS: Mapping[str, tuple[str, str, str]] = {
    "raw pixels (source only)": ("raw_pixels", "clean", GREY),
    "source only (fine-tune)": ("fine_tune", "clean", OKABE_ITO["vermillion"]),
    "AdaBN, naive (frozen head)": ("frozen_head", "adabn", OKABE_ITO["yellow"]),
    "source only (fine-tune, BN train)": ("fine_tune_bn", "clean", OKABE_ITO["orange"]),
    "AdaBN, sound (fine-tune, BN train)": ("fine_tune_bn", "adabn", OKABE_ITO["sky_blue"]),
    "domain confusion (DANN)": ("fine_tune", "dann", OKABE_ITO["blue"]),
    "LP-FT (source only)": ("lp_ft", "clean", OKABE_ITO["reddish_purple"]),
    "raw pixels (target labels)": ("raw_pixels", "target_only", "#BBBBBB"),
    "from scratch (target labels)": ("scratch", "target_only", OKABE_ITO["black"]),
    "labelled oracle (fine-tune on target)": ("fine_tune", "adapted", OKABE_ITO["bluish_green"]),
}
DOMAIN_COLORS = {"source": OKABE_ITO["blue"], "target": OKABE_ITO["vermillion"]}


def adaptation_bars(
    records: Sequence[Mapping[str, Any]],
    *,
    methods: Sequence[str] | None = None,
    shifts: Sequence[str] | None = None,
    title: str = "How much of the shift's loss does each method win back?",
    subtitle: str | None = None,
) -> go.Figure:
    """Grouped bars: one group per shift, one bar per method (keys of :data:`ADAPTATION_METHODS`) present.

    ``records``: ``domain_shift(...).to_records()``. ``methods``: which to draw, in order (default every one found);
    ``shifts``: which groups (default every shift but ``none``). Unsupervised methods' hover says how many unlabelled
    target images they used. Repeated records (seeds) are averaged.
    """
    rows = check_records(records, ("strategy", "shift", "training", "test_acc"), what="adaptation_bars records")
    wanted = list(methods) if methods is not None else list(ADAPTATION_METHODS)
    unknown = [m for m in wanted if m not in ADAPTATION_METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from: {', '.join(ADAPTATION_METHODS)}")
    groups = list(shifts) if shifts is not None else [s for s in ordered_unique(r["shift"] for r in rows) if s != "none"]
    if not groups:
        raise ValueError("adaptation_bars needs records of at least one shift (shift != 'none')")
    fig = go.Figure()
    for label in wanted:
        strategy, training, color = ADAPTATION_METHODS[label]
        ys, texts, hovers = [], [], []
        for s in groups:
            match = [r for r in rows if (r["strategy"], r["training"], r["shift"]) == (strategy, training, s)]
            if not match:
                ys.append(None), texts.append(""), hovers.append("")
                continue
            acc = float(np.mean([check_accuracy(r["test_acc"], what=f"test_acc of {label}") for r in match]))
            ys.append(acc), texts.append(f"{acc:.2f}")
            n = match[0].get("unlabelled_images") or 0
            hovers.append(f"{n} unlabelled target images" if n else "no unlabelled target images")
        if all(y is None for y in ys):
            continue
        fig.add_bar(name=label, x=groups, y=ys, text=texts, textposition="outside", marker_color=color,
                    customdata=hovers, cliponaxis=False, textfont=dict(size=11),
                    hovertemplate=f"{label}<br>%{{x}}: test accuracy %{{y:.3f}}<br>%{{customdata}}<extra></extra>")
    if not fig.data:
        raise ValueError(f"no records match these methods; found (strategy, training): "
                         f"{sorted({(r['strategy'], r['training']) for r in rows})}")
    base_layout(fig, title=title, subtitle=subtitle or "test accuracy on the shifted test images; only the oracle "
                "and the bars marked '(target labels)' use target labels", width=min(MAX_WIDTH, max(760, 110 * len(groups) * max(1, len(fig.data)) // 2)),
                height=520, barmode="group")
    legend_below(fig)
    fig.update_xaxes(title="shift (target domain)")
    fig.update_yaxes(title="test accuracy", range=[0, 1.1], tickformat=".1f")
    return fig


def domain_accuracy_curves(
    histories: Mapping[str, Sequence[float]],
    *,
    title: str = "Can the domain classifier still tell source from target?",
    subtitle: str | None = None,
) -> go.Figure:
    """One line per run (e.g. per shift): the domain classifier's training accuracy per epoch, chance at 0.5.

    ``histories``: ``{name: [domain_acc of epoch 1, 2, ...]}`` (``domain_shift``'s ``dann`` records carry it as
    ``domain_acc``; a Run's ``[h["domain_acc"] for h in run.history]``). Falling towards 0.5 means the features
    no longer tell the domains apart (Ganin & Lempitsky 2015).
    """
    if not histories:
        raise ValueError("domain_accuracy_curves needs at least one history {name: [accuracy per epoch]}")
    fig = go.Figure()
    for i, (name, accs) in enumerate(histories.items()):
        ys = [check_accuracy(a, what=f"domain accuracy of {name!r}") for a in accs]
        if not ys:
            raise ValueError(f"history {name!r} is empty; pass one accuracy per epoch")
        fig.add_scatter(x=list(range(1, len(ys) + 1)), y=ys, mode="lines+markers", name=str(name),
                        line=dict(color=list(OKABE_ITO.values())[(i + 1) % len(OKABE_ITO)], width=2.5),
                        hovertemplate=f"{name}<br>epoch %{{x}}: domain accuracy %{{y:.3f}}<extra></extra>")
    fig.add_hline(y=0.5, line=dict(color="#555555", dash="dot", width=1.5))
    fig.add_annotation(x=1, xref="paper", y=0.5, text="chance<br>0.5", showarrow=False, xanchor="left", xshift=6,
                       align="left", font=dict(size=12, color="#555555"))
    base_layout(fig, title=title, subtitle=subtitle or "fraction of source and target images the domain classifier "
                "put in the right domain, per training epoch", width=760, height=460)
    fig.update_layout(margin_r=80)
    legend_below(fig)
    fig.update_xaxes(title="epoch", dtick=1 if max(len(v) for v in histories.values()) <= 20 else None)
    fig.update_yaxes(title="domain classifier accuracy", range=[0.3, 1.02], tickformat=".1f")
    return fig


def domain_embedding(
    panels: Mapping[str, Any],
    domains: Any,
    *,
    title: str = "Do source and target features overlap?",
    subtitle: str | None = None,
) -> go.Figure:
    """Side-by-side 2-D embeddings coloured by domain, e.g. ``{"before": xy0, "after DANN": xy1}``.

    ``panels``: name -> points ``(N, 2)`` (``tl_lab.embed_features`` of source and target features stacked);
    ``domains``: ``(N,)`` with 0 = source, 1 = target (or the strings ``"source"`` / ``"target"``), the same rows
    in every panel. Two separate clouds: a classifier trained on the source sees unfamiliar inputs on the target.
    """
    if not panels:
        raise ValueError("domain_embedding needs at least one panel {name: points (N, 2)}")
    d = np.asarray(domains)
    if d.dtype.kind in "US":
        bad = sorted(set(d.tolist()) - {"source", "target"})
        if bad:
            raise ValueError(f"domains must be 0/1 or 'source'/'target'; got {bad[:3]}")
        d = (d == "target").astype(int)
    d = d.astype(int)
    arrays = {}
    for name, points in panels.items():
        p = as_array(points, ndim=2, what=f"points of {name!r}", shape_hint="(N, 2)")
        if p.shape != (len(d), 2):
            raise ValueError(f"points of {name!r} have shape {p.shape}; expected ({len(d)}, 2) to match domains")
        arrays[name] = p
    # each panel's axes leave out points far beyond its 1st-99th percentiles (robust_range): one far point no longer
    # squeezes the rest into a corner; how many lie outside is said in the panel's title
    ranges = {name: (robust_range(p[:, 0]), robust_range(p[:, 1])) for name, p in arrays.items()}
    outside = {name: int(((p[:, 0] < rx[0][0]) | (p[:, 0] > rx[0][1]) | (p[:, 1] < ry[0][0]) | (p[:, 1] > ry[0][1])).sum())
               for (name, p), (rx, ry) in zip(arrays.items(), ranges.values())}
    titles = [name + (f"<br><span style='font-size:12px;color:#555555'>{n} outlying point{'s' * (n != 1)} beyond "
                      "the axes</span>" if n else "") for name, n in outside.items()]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, horizontal_spacing=0.06)
    for col, (name, p) in enumerate(arrays.items(), start=1):
        for k, domain in enumerate(("source", "target")):
            sel = d == k
            fig.add_scatter(x=p[sel, 0], y=p[sel, 1], mode="markers", name=domain, legendgroup=domain,
                            showlegend=col == 1, marker=dict(color=DOMAIN_COLORS[domain], size=6, opacity=0.7),
                            hovertemplate=f"{domain}<extra>{name}</extra>", row=1, col=col)
        (x_range, _), (y_range, _) = ranges[name]
        fig.update_xaxes(title="component 1", showticklabels=False, range=x_range, row=1, col=col)
        fig.update_yaxes(title="component 2" if col == 1 else None, showticklabels=False, range=y_range, row=1,
                         col=col)
    clipped = "; the axes leave out points far beyond each component's 1st-99th percentile" if any(outside.values()) else ""
    base_layout(fig, title=title, subtitle=subtitle or "pooled features of the last body stage, projected to 2-D; "
                f"{color_word(DOMAIN_COLORS['source'])}: source (clean) images, "
                f"{color_word(DOMAIN_COLORS['target'])}: target (shifted) images{clipped}",
                width=min(MAX_WIDTH, 360 * len(panels) + 120), height=470, extra_top=38 if clipped else 20)
    legend_below(fig)
    return fig
