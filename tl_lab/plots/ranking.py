"""Figures for choosing a backbone: transferability scores per candidate, the scores against measured accuracy,
and cost against accuracy. Data in (``RankingResult.to_records()``), ``go.Figure`` out.

Example::

    >>> data = tl_lab.load_dataset("clipart", shots=10, image_size=64)
    >>> r = tl_lab.rank_backbones(data)   # about a minute  # doctest: +SKIP
    >>> fig = transferability_scores(r.to_records())              # bars: one panel per metric  # doctest: +SKIP
    >>> fig = score_vs_accuracy(r.to_records(), tau=r.kendall_tau)  # did the scores rank like training?  # doctest: +SKIP
    >>> fig = cost_vs_accuracy(r.to_records(), cost="parameters")   # what does accuracy cost?  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tl_lab.plots.style import INIT_COLORS, MAX_WIDTH, base_layout, check_records, legend_below, place_trace_labels

__all__ = ["transferability_scores", "score_vs_accuracy", "cost_vs_accuracy", "METRIC_NAMES"]

METRIC_NAMES: dict[str, str] = {"logme": "LogME", "leep": "LEEP", "probe": "linear probe (val acc)"}
_COST_AXES = {
    "parameters": ("parameters (millions)", 1e-6, "{:.1f} M"),
    "images_per_second": ("inference images per second on this machine", 1.0, "{:.0f} img/s"),
    "train_seconds": ("training time (s)", 1.0, "{:.1f} s"),
    "score_seconds": ("scoring time (s)", 1.0, "{:.2f} s"),
}


def _metrics(records: Sequence[Mapping[str, Any]], metrics: Sequence[str] | None) -> list[str]:
    found = [m for m in METRIC_NAMES if all(r.get(m) is not None for r in records)]
    metrics = list(metrics) if metrics is not None else found
    missing = [m for m in metrics if m not in found]
    if missing or not metrics:
        raise ValueError(f"records lack scores for {missing or 'any metric'}; they have: {', '.join(found) or 'none'}")
    return metrics


def _color(r: Mapping[str, Any]) -> str:
    return INIT_COLORS["pretrained" if r.get("pretrained", True) else "random"]


def _legend_keys(fig: go.Figure, records: Sequence[Mapping[str, Any]]) -> None:
    """Two legend entries (pretrained, random init) drawn as invisible points: the bars share them."""
    for key, label in (("pretrained", "ImageNet weights"), ("random", "random init (negative control)")):
        if any(bool(r.get("pretrained", True)) == (key == "pretrained") for r in records):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=label, showlegend=True,
                                     marker=dict(color=INIT_COLORS[key], size=12, symbol="square")))


def transferability_scores(records: Sequence[Mapping[str, Any]], metrics: Sequence[str] | None = None, *,
                           title: str = "Which backbone do the scores predict will transfer best?",
                           subtitle: str | None = None) -> go.Figure:
    """Horizontal bars, one panel per metric: each candidate's score (higher = better), with its seconds.

    ``records``: dicts with ``label`` (or ``backbone``), ``pretrained``, one key per metric and ``score_seconds``.
    Scores of different metrics live on different scales, so each panel has its own axis.
    """
    records = check_records(records, ("backbone", "score_seconds"), what="transferability_scores records")
    metrics = _metrics(records, metrics)
    labels = [str(r.get("label", r["backbone"])) for r in records]
    fig = make_subplots(rows=1, cols=len(metrics), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[f"{METRIC_NAMES.get(m, m)} ↑" for m in metrics])
    for col, metric in enumerate(metrics, start=1):
        values = [float(r[metric]) for r in records]
        # Bars start left of the lowest score, so a longer bar is always a better score (LogME and LEEP are
        # negative: bars from zero would grow the wrong way).
        span = (max(values) - min(values)) or abs(max(values)) or 1.0
        start = 0.0 if min(values) >= 0 else min(values) - 0.15 * span
        fig.add_trace(go.Bar(
            y=labels, x=[v - start for v in values], base=start, orientation="h",
            marker_color=[_color(r) for r in records], showlegend=False,
            text=[f"{v:.3f}" for v in values], textposition="auto", insidetextanchor="end", name=metric,
            customdata=[[float(r["score_seconds"])] for r in records], cliponaxis=False,
            hovertext=[f"{v:.4f}" for v in values],
            hovertemplate="%{y}<br>" + METRIC_NAMES.get(metric, metric) + " %{hovertext}<br>all scores of this "
                          "backbone: %{customdata[0]:.2f} s<extra></extra>"), row=1, col=col)
        fig.update_xaxes(row=1, col=col, zeroline=False, range=[start, max(values) + 0.2 * span])
    seconds = [float(r["score_seconds"]) for r in records]
    ticks = [f"{lab}  <span style='color:#777'>{s:.1f} s</span>" for lab, s in zip(labels, seconds)]
    fig.update_yaxes(tickvals=labels, ticktext=ticks, autorange="reversed", row=1, col=1)
    _legend_keys(fig, records)
    note = subtitle or (f"higher = better; one forward pass over the training images, no training: "
                        f"{min(seconds):.1f}-{max(seconds):.1f} s per backbone (grey, beside each name)")
    longest = max(len(t) for t in labels)
    base_layout(fig, title=title, subtitle=note, width=max(760, 230 * len(metrics) + 8 * longest + 120),
                height=140 + 42 * len(records), extra_top=24)
    legend_below(fig)
    fig.update_layout(margin_l=int(8 * longest + 70), margin_b=80, legend_y=-0.12)
    return fig


def score_vs_accuracy(records: Sequence[Mapping[str, Any]], metrics: Sequence[str] | None = None, *,
                      tau: Mapping[str, float] | None = None, baseline: float | None = None,
                      title: str = "Did the scores rank the backbones as training did?",
                      subtitle: str | None = None) -> go.Figure:
    """One panel per metric: score (x) against measured test accuracy (y), one labelled point per candidate.

    ``tau``: Kendall's tau per metric, written in each panel's title. ``baseline``: the raw-pixel test accuracy,
    drawn as a dotted line (the floor every backbone should beat).
    """
    records = check_records(records, ("backbone", "test_acc"), what="score_vs_accuracy records")
    records = [r for r in records if r["test_acc"] is not None]
    if not records:
        raise ValueError("no record has a measured test_acc: run rank_backbones with verify='frozen_head'")
    metrics = _metrics(records, metrics)
    names = [f"{METRIC_NAMES.get(m, m)}" + (f": Kendall τ = {tau[m]:+.2f}" if tau and m in tau else "")
             for m in metrics]
    fig = make_subplots(rows=1, cols=len(metrics), shared_yaxes=True, horizontal_spacing=0.07, subplot_titles=names)
    for col, metric in enumerate(metrics, start=1):
        fig.add_trace(go.Scatter(
            x=[float(r[metric]) for r in records], y=[float(r["test_acc"]) for r in records], mode="markers+text",
            text=[_short(r) if r.get("pretrained", True) else "" for r in records], textposition="top center",
            textfont=dict(size=11),
            marker=dict(color=[_color(r) for r in records], size=12, line=dict(color="white", width=1)),
            showlegend=False, customdata=[[str(r.get("label", r["backbone"]))] for r in records],
            hovertemplate="%{customdata[0]}<br>score %{x:.4f}<br>test accuracy %{y:.3f}<extra></extra>"),
            row=1, col=col)
        xs = [float(r[metric]) for r in records]
        span = (max(xs) - min(xs)) or abs(max(xs)) or 1.0
        fig.update_xaxes(title=f"{METRIC_NAMES.get(metric, metric)} score", row=1, col=col,
                         range=[min(xs) - 0.12 * span, max(xs) + 0.12 * span])
        if baseline is not None:
            fig.add_hline(y=float(baseline), line=dict(color="#555555", dash="dot", width=1.5), row=1, col=col)
    if baseline is not None:
        fig.add_annotation(x=1, xref="paper", y=float(baseline), yref="y", text=f"raw pixels<br>{baseline:.2f}",
                           showarrow=False, xanchor="left", xshift=6, align="left", font=dict(size=12, color="#555"))
    _legend_keys(fig, records)
    recipe = records[0].get("recipe") or "training"
    base_layout(fig, title=title, subtitle=subtitle or f"x: predicted before training; y: measured test accuracy "
                f"after {recipe}; τ = 1 means the same order", width=min(MAX_WIDTH, max(720, 380 * len(metrics))),
                height=480,
                extra_top=24)
    fig.update_yaxes(title="measured test accuracy", range=[0, 1.05], tickformat=".1f", row=1, col=1)
    legend_below(fig)
    fig.update_layout(margin_r=90 if baseline is not None else 30, margin_b=120)
    for col in range(1, len(metrics) + 1):  # close points' names side by side, not on top of each other
        suffix = "" if col == 1 else str(col)
        place_trace_labels(fig, [t for t in fig.data if t.xaxis == f"x{suffix}"], xaxis=f"xaxis{suffix}")
    return fig


def cost_vs_accuracy(records: Sequence[Mapping[str, Any]], *,
                     cost: Literal["parameters", "images_per_second", "train_seconds", "score_seconds"] = "parameters",
                     baseline: float | None = None, title: str = "What does the accuracy cost?",
                     subtitle: str | None = None) -> go.Figure:
    """Measured test accuracy (y) against a cost (x): parameters, images/s (higher = cheaper), or seconds.

    Each candidate is one labelled point; pretrained and random-init copies share a cost but not an accuracy.
    """
    if cost not in _COST_AXES:
        raise ValueError(f"unknown cost {cost!r}; choose one of: {', '.join(_COST_AXES)}")
    records = check_records(records, ("backbone", "test_acc", cost), what="cost_vs_accuracy records")
    records = [r for r in records if r["test_acc"] is not None and r[cost] is not None]
    if not records:
        raise ValueError(f"no record has both test_acc and {cost}: run rank_backbones with verify='frozen_head'")
    axis, scale, fmt = _COST_AXES[cost]
    xs = [float(r[cost]) * scale for r in records]
    fig = go.Figure(go.Scatter(
        x=xs, y=[float(r["test_acc"]) for r in records], mode="markers+text", text=[_short(r) for r in records],
        textposition="top center", textfont=dict(size=11), showlegend=False,
        marker=dict(color=[_color(r) for r in records], size=13, line=dict(color="white", width=1)),
        customdata=[[str(r.get("label", r["backbone"])), fmt.format(x)] for r, x in zip(records, xs)],
        hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>test accuracy %{y:.3f}<extra></extra>"))
    if baseline is not None:
        fig.add_hline(y=float(baseline), line=dict(color="#555555", dash="dot", width=1.5))
        fig.add_annotation(x=1, xref="paper", y=float(baseline), text=f"raw pixels<br>{baseline:.2f}",
                           showarrow=False, xanchor="left", xshift=6, align="left", font=dict(size=12, color="#555"))
    _legend_keys(fig, records)
    better = "right = faster" if cost == "images_per_second" else "left = cheaper"
    base_layout(fig, title=title, subtitle=subtitle or f"up = more accurate, {better}", width=720, height=480)
    span = max(xs) - min(xs) or max(xs) or 1.0
    fig.update_xaxes(title=axis, range=[min(xs) - 0.15 * span, max(xs) + 0.15 * span])
    fig.update_yaxes(title="measured test accuracy", range=[0, 1.05], tickformat=".1f")
    legend_below(fig)
    fig.update_layout(margin_r=90 if baseline is not None else 30, margin_b=110)
    return fig


def _short(r: Mapping[str, Any]) -> str:
    name = str(r["backbone"]).replace("efficientnet_", "")
    return name if r.get("pretrained", True) else f"{name} (random)"
