"""The multi-task figure: does sharing one body help each task, beside one network per task and raw pixels?

Data in (``tl_lab.experiments.multitask(...).to_records()``), ``go.Figure`` out; nothing is trained here.

Example::

    >>> recs = [{"shots": 10, "task": "shape", "method": "pretrained, single", "test_acc": 0.5, "chance": 1 / 6},
    ...         {"shots": 10, "task": "shape", "method": "pretrained, shared", "test_acc": 0.55, "chance": 1 / 6}]
    >>> [t.name for t in sharing_bars(recs).data]
    ['pretrained, single', 'pretrained, shared', 'chance']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tl_lab.plots.style import GREY, OKABE_ITO, base_layout, check_accuracy, check_records, legend_below, ordered_unique

__all__ = ["SHARING_COLORS", "sharing_bars"]

# a light and a dark shade per start: single task light, shared body dark, so each pair reads as one comparison
SHARING_COLORS: Mapping[str, str] = {
    "raw pixels": GREY,
    "pretrained, single": OKABE_ITO["sky_blue"],
    "pretrained, shared": OKABE_ITO["blue"],
    "scratch, single": OKABE_ITO["orange"],
    "scratch, shared": OKABE_ITO["vermillion"],
}


def sharing_bars(records: Sequence[Mapping[str, Any]], *,
                 title: str = "Does one shared body help each task, or hurt it?",
                 subtitle: str | None = "test accuracy per task: one network per task (single) against one body "
                                        "with a head per task (shared), on the same images; black ticks: chance"
                 ) -> go.Figure:
    """Grouped bars, one panel per shot count: a group per task, a bar per method (raw pixels, single, shared).

    ``records`` need ``shots``, ``task``, ``method`` and ``test_acc`` (``chance`` draws a tick per task).
    Repeated records (seeds) are averaged.
    """
    rows = check_records(records, ("shots", "task", "method", "test_acc"), what="sharing_bars records")
    shots = ordered_unique(r["shots"] for r in rows)
    tasks = ordered_unique(r["task"] for r in rows)
    methods = [m for m in SHARING_COLORS if any(r["method"] == m for r in rows)]
    methods += [m for m in ordered_unique(r["method"] for r in rows) if m not in methods]
    fig = make_subplots(rows=1, cols=len(shots), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"{'all' if k is None else k} images per shape class" for k in shots])
    for col, k in enumerate(shots, start=1):
        for i, method in enumerate(methods):
            ys = []
            for task in tasks:
                match = [check_accuracy(r["test_acc"], what=f"test_acc of {method}") for r in rows
                         if (r["shots"], r["task"], r["method"]) == (k, task, method)]
                ys.append(float(np.mean(match)) if match else None)
            fig.add_bar(name=method, x=tasks, y=ys, text=[f"{y:.2f}" if y is not None else "" for y in ys],
                        textposition="outside", textfont=dict(size=11), cliponaxis=False, legendgroup=method,
                        showlegend=col == 1, marker_color=SHARING_COLORS.get(method, OKABE_ITO["reddish_purple"]),
                        hovertemplate=f"{method}<br>%{{x}}: test accuracy %{{y:.3f}}<extra>{k} shots</extra>",
                        row=1, col=col)
        chance = {r["task"]: float(r["chance"]) for r in rows if r["shots"] == k and r.get("chance") is not None}
        if chance:
            fig.add_scatter(x=list(chance), y=list(chance.values()), mode="markers", name="chance",
                            legendgroup="chance", showlegend=col == 1,
                            marker=dict(symbol="line-ew", size=46, line=dict(width=2, color="#000000")),
                            hovertemplate="%{x}: chance %{y:.3f}<extra></extra>", row=1, col=col)
    fig.update_yaxes(range=[0, 1.1], tickformat=".1f")
    fig.update_yaxes(title_text="test accuracy", row=1, col=1)
    fig.update_xaxes(title_text="task")
    width = max(640, 70 * len(tasks) * max(1, len(methods)) * len(shots) // 2 + 160)
    base_layout(fig, title=title, subtitle=subtitle, width=width, height=520, barmode="group", extra_top=20)
    legend_below(fig)
    fig.update_layout(legend=dict(y=-0.2))
    return fig
