"""Figures for sharing and keeping knowledge: accuracy against trainable parameters; the forgetting trade-off.

Why: parameter-efficient methods (norm-only, BitFit, LoRA) promise most of fine-tuning's accuracy for a sliver
of its parameters. One point per method on a log axis of trainable parameters, one panel per dataset, with raw
pixels and training from scratch as the floor, shows whether that promise holds on the learner's data.

Example::

    >>> fig = efficiency_scatter([{"dataset": "digits", "method": "bias only", "trainable": 33818, "test_acc": 0.8},
    ...                           {"dataset": "digits", "method": "full fine-tune", "trainable": 3383818, "test_acc": 0.9}])
    >>> fig.data[0].x
    (33818,)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

import re

from tl_lab.plots.style import (
    GREY,
    MAX_WIDTH,
    OKABE_ITO,
    STRATEGY_COLORS,
    base_layout,
    check_records,
    ordered_unique,
    place_trace_labels,
    strategy_name,
)
from tl_lab.training.retention import REMEDY_NAMES

__all__ = ["efficiency_scatter", "forgetting_tradeoff", "METHOD_COLORS", "REMEDY_COLORS", "method_name",
           "run_name"]

METHOD_COLORS: dict[str, str] = {
    "raw pixels": GREY,
    "scratch": STRATEGY_COLORS["scratch"],
    "linear probe": STRATEGY_COLORS["linear_probe"],
    "norm only": OKABE_ITO["orange"],
    "bias only": OKABE_ITO["yellow"],
    "last stages": OKABE_ITO["blue"],
    "full fine-tune": STRATEGY_COLORS["fine_tune"],
}
"""One colour per method; LoRA ranks share reddish purple and differ by symbol (in order: hexagon, hexagram, ...)."""

PLAN_NAMES = {"frozen_head": "frozen body", "fine_tune": "fine-tune all"}


def method_name(method: str) -> str:
    """A readable method name: ``"lora_r4"`` or ``"lora4"`` -> ``"LoRA r=4"``, ``"bias_only"`` -> ``"bias only"``;
    names already readable are kept."""
    m = re.fullmatch(r"lora_?r?=?(\d+)", str(method).strip().lower())
    if m:
        return f"LoRA r={m.group(1)}"
    return str(method).replace("_", " ")


def run_name(plan: str, remedy: str = "none") -> str:
    """A forgetting run's readable name: ``("fine_tune", "ewc 10000")`` -> ``"EWC 10000"``, ``("frozen_head",
    "none")`` -> ``"frozen body"``."""
    if remedy == "none":
        return PLAN_NAMES.get(plan, strategy_name(plan).replace("_", " "))
    key, _, strength = str(remedy).partition(" ")
    return f"{REMEDY_NAMES.get(key, key)} {strength}".strip()


_LORA_SYMBOLS = ("hexagon", "hexagram", "hourglass", "bowtie")

_SYMBOLS = {"scratch": "diamond", "linear probe": "circle", "norm only": "square",
            "bias only": "triangle-up", "last stages": "pentagon", "full fine-tune": "star"}


def efficiency_scatter(records: Sequence[Mapping[str, Any]], *,
                       title: str = "What does each trainable parameter buy?",
                       subtitle: str | None = "test accuracy against parameters trained (log scale); "
                                              "one panel per dataset") -> go.Figure:
    """Test accuracy (y) against trainable parameters (x, log) per method; one subplot per dataset.

    ``records``: ``parameter_efficiency(...).to_records()`` rows with ``dataset``, ``method``, ``trainable``,
    ``test_acc``. Each method is one trace (legend shared across panels; LoRA ranks share a colour and differ by
    symbol). Raw pixels are a dashed line per panel: the floor every method must beat.
    """
    rows = check_records(records, ("dataset", "method", "trainable", "test_acc"), what="efficiency_scatter records")
    rows = [{**r, "method": method_name(r["method"])} for r in rows]
    datasets = ordered_unique(r["dataset"] for r in rows)
    fig = make_subplots(rows=1, cols=len(datasets), subplot_titles=[str(d) for d in datasets], shared_yaxes=True,
                        horizontal_spacing=0.06)
    shown: set[str] = set()
    trained = [r for r in rows if r["method"] != "raw pixels"]
    lora = [m for m in ordered_unique(r["method"] for r in trained) if m not in _SYMBOLS]
    symbols = {**{m: _LORA_SYMBOLS[i % len(_LORA_SYMBOLS)] for i, m in enumerate(lora)}, **_SYMBOLS}
    if trained:
        low = min(int(r["trainable"]) for r in trained)
        high = max(int(r["trainable"]) for r in trained)
        x_range = [math.log10(low) - 0.3, math.log10(high) + 0.3]
    for col, dataset in enumerate(datasets, start=1):
        for method in ordered_unique(r["method"] for r in trained if r["dataset"] == dataset):
            pts = [r for r in trained if r["dataset"] == dataset and r["method"] == method]
            color = METHOD_COLORS.get(method, OKABE_ITO["reddish_purple"])
            fig.add_trace(go.Scatter(
                x=tuple(int(r["trainable"]) for r in pts), y=tuple(float(r["test_acc"]) for r in pts),
                mode="markers+text", text=[method] * len(pts), textfont=dict(size=11),
                marker=dict(color=color, size=13, symbol=symbols[method],
                            line=dict(color="#333333", width=1)),
                name=method, legendgroup=method, showlegend=method not in shown,
                hovertemplate=f"{method}<br>%{{x:,}} trainable<br>test accuracy %{{y:.3f}}<extra>{dataset}</extra>",
            ), row=1, col=col)
            shown.add(method)
        for r in rows:  # raw pixels: a floor to beat, not a point on the parameter axis (after the traces:
            # plotly skips lines on subplots that are still empty)
            if r["dataset"] == dataset and r["method"] == "raw pixels":
                fig.add_hline(y=float(r["test_acc"]), line=dict(color=GREY, dash="dash"), row=1, col=col, exclude_empty_subplots=False,
                              annotation_text=f"raw pixels {float(r['test_acc']):.2f}", annotation_position="top left",
                              annotation_font=dict(color=GREY, size=12))
        fig.update_xaxes(type="log", title_text="parameters trained (log)", row=1, col=col,
                         range=x_range if trained else None)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.05], row=1, col=1)
    base_layout(fig, title=title, subtitle=subtitle, width=min(MAX_WIDTH, max(560, 420 * len(datasets))), height=520,
                extra_top=20)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    for col, dataset in enumerate(datasets, start=1):  # each point's name beside it, no two on top of each other
        suffix = "" if col == 1 else str(col)
        panel = [t for t in fig.data if t.xaxis == f"x{suffix}"]
        place_trace_labels(fig, panel, xaxis=f"xaxis{suffix}", yaxis="yaxis", marker_size=13)
    return fig


REMEDY_COLORS: dict[str, str] = {"none": GREY, "lwf": OKABE_ITO["blue"], "ewc": OKABE_ITO["orange"],
                                 "l2sp": OKABE_ITO["bluish_green"]}
"""One colour per forgetting remedy (``"none"``: the plans without a remedy, frozen body and fine-tuning)."""


def forgetting_tradeoff(records: Sequence[Mapping[str, Any]], *, images: str | None = None,
                        title: str = "Learn the new task, keep the old one: what does each remedy trade?",
                        subtitle: str | None = None) -> go.Figure:
    """New-task test accuracy (y) against old-task (ImageNet) top-1 agreement (x), one point per run.

    ``records``: ``tl_lab.forgetting(..., remedies=...).to_records()`` (``plan``, ``remedy``, ``images``,
    ``top1_agreement``, ``task_b_test_acc``); ``images`` chooses the image set the agreement is measured on
    (default: the first). The top-right corner is the goal: a frozen body sits at agreement 1, full fine-tuning
    lower; a remedy's points (one per strength, joined in order of agreement) show what it buys and costs.
    """
    rows = check_records(records, ("plan", "images", "top1_agreement", "task_b_test_acc"),
                         what="forgetting_tradeoff records")
    sets = ordered_unique(r["images"] for r in rows)
    if images is None:
        images = sets[0]
    elif images not in sets:
        raise ValueError(f"no records for images={images!r}; choose one of: {', '.join(map(str, sets))}")
    rows = [r for r in rows if r["images"] == images]
    fig = go.Figure()
    groups: dict[str, list] = {}
    for r in rows:
        remedy = str(r.get("remedy", "none"))
        key = "none" if remedy == "none" else remedy.split()[0]
        groups.setdefault(key, []).append(r)
    for key, pts in groups.items():
        pts = sorted(pts, key=lambda r: r["top1_agreement"])
        labels = [run_name(str(r["plan"]), str(r.get("remedy", "none"))) for r in pts]
        fig.add_trace(go.Scatter(
            x=[r["top1_agreement"] for r in pts], y=[r["task_b_test_acc"] for r in pts],
            mode="markers+text" if key == "none" else "lines+markers+text", text=labels,
            textfont=dict(size=11),
            marker=dict(size=12, color=REMEDY_COLORS.get(key, OKABE_ITO["reddish_purple"]),
                        line=dict(color="#333333", width=1)),
            line=dict(color=REMEDY_COLORS.get(key, OKABE_ITO["reddish_purple"]), dash="dot"),
            name={"none": "no remedy", **REMEDY_NAMES}.get(key, key),
            hovertemplate="%{text}<br>old-task agreement %{x:.3f}<br>new-task accuracy %{y:.3f}<extra></extra>",
        ))
    base_layout(fig, title=title, subtitle=subtitle or f"old task = agreement with the original ImageNet "
                f"predictions on {images}; new task = test accuracy", width=820, height=540)
    fig.update_xaxes(title_text="old task kept: top-1 agreement with the original network", range=[-0.02, 1.08])
    fig.update_yaxes(title_text="new task: test accuracy", range=[0, 1.05])
    place_trace_labels(fig, list(fig.data))  # the runs' names beside their points, none on top of another
    return fig
