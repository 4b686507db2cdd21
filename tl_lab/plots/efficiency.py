"""Figures for parameter-efficient fine-tuning: test accuracy against the number of parameters that train.

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

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tl_lab.plots.style import GREY, OKABE_ITO, STRATEGY_COLORS, base_layout, check_records, ordered_unique

__all__ = ["efficiency_scatter", "METHOD_COLORS"]

METHOD_COLORS: dict[str, str] = {
    "raw pixels": GREY,
    "scratch": STRATEGY_COLORS["scratch"],
    "linear probe": STRATEGY_COLORS["linear_probe"],
    "norm only": OKABE_ITO["orange"],
    "bias only": OKABE_ITO["yellow"],
    "last stages": OKABE_ITO["blue"],
    "full fine-tune": STRATEGY_COLORS["fine_tune"],
}
"""One colour per method; LoRA ranks share reddish purple (told apart by their label)."""

_SYMBOLS = {"raw pixels": "x", "scratch": "diamond", "linear probe": "circle", "norm only": "square",
            "bias only": "triangle-up", "last stages": "pentagon", "full fine-tune": "star"}


def efficiency_scatter(records: Sequence[Mapping[str, Any]], *,
                       title: str = "What does each trainable parameter buy?",
                       subtitle: str | None = "test accuracy against parameters trained (log scale); "
                                              "one panel per dataset") -> go.Figure:
    """Test accuracy (y) against trainable parameters (x, log) per method; one subplot per dataset.

    ``records``: ``parameter_efficiency(...).to_records()`` rows with ``dataset``, ``method``, ``trainable``,
    ``test_acc``. Each method is one trace (legend shared across panels), points labelled with the method.
    """
    rows = check_records(records, ("dataset", "method", "trainable", "test_acc"), what="efficiency_scatter records")
    datasets = ordered_unique(r["dataset"] for r in rows)
    fig = make_subplots(rows=1, cols=len(datasets), subplot_titles=[str(d) for d in datasets], shared_yaxes=True,
                        horizontal_spacing=0.06)
    shown: set[str] = set()
    for col, dataset in enumerate(datasets, start=1):
        for method in ordered_unique(r["method"] for r in rows if r["dataset"] == dataset):
            pts = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
            color = METHOD_COLORS.get(method, OKABE_ITO["reddish_purple"])
            fig.add_trace(go.Scatter(
                x=tuple(int(r["trainable"]) for r in pts), y=tuple(float(r["test_acc"]) for r in pts),
                mode="markers+text", text=[method] * len(pts), textposition="top center", textfont=dict(size=11),
                marker=dict(color=color, size=12, symbol=_SYMBOLS.get(method, "hexagon"),
                            line=dict(color="#333333", width=1)),
                name=method, legendgroup=method, showlegend=method not in shown,
                hovertemplate=f"{method}<br>%{{x:,}} trainable<br>test accuracy %{{y:.3f}}<extra>{dataset}</extra>",
            ), row=1, col=col)
            shown.add(method)
        fig.update_xaxes(type="log", title_text="parameters trained (log)", row=1, col=col)
    fig.update_yaxes(title_text="test accuracy", range=[0, 1.05], row=1, col=1)
    base_layout(fig, title=title, subtitle=subtitle, width=max(520, 460 * len(datasets)), height=520, extra_top=20)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return fig
