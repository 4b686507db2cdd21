"""Per-stage figures: linear-probe accuracy along the network, and CKA similarity between two networks' stages.

Why: the lessons' central claims are per stage ("a mid-level stage beats the final features on digits", "low
stages barely change when fine-tuning"). These builders take the plain records that ``ProbeResult.to_records()``
and ``StageSimilarity`` give and draw them with the stages in network order, input on the left.

Example::

    >>> from tl_lab.plots import probe_by_stage
    >>> fig = probe_by_stage([{"stage": "stem", "test_acc": 0.36}, {"stage": "stage1", "test_acc": 0.48}],
    ...                      baseline=0.90)
    >>> [t.name for t in fig.data]
    ['linear probe', 'raw pixels: 0.90']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from tl_lab.plots.style import (
    GREY,
    SEQUENTIAL,
    base_layout,
    check_accuracy,
    check_labels,
    check_records,
    heatmap_frame,
    legend_below,
    ordered_unique,
    series_color,
)

__all__ = ["probe_by_stage", "cka_by_stage", "cka_matrix"]

Records = Sequence[Mapping[str, Any]]


def _by_label(value: Any, *, default_label: str, what: str) -> dict[str, Any]:
    """``{label: value}`` from either one value or a mapping of labels (the multi-dataset overlay)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        if not value:
            raise ValueError(f"{what}: empty mapping, nothing to plot")
        return {str(k): v for k, v in value.items()}
    return {default_label: value}


def probe_by_stage(
    records: Records | Mapping[str, Records],
    *,
    baseline: float | Mapping[str, float] | None = None,
    random_records: Records | Mapping[str, Records] | None = None,
    show_train: bool = False,
    title: str = "Which stage's features separate the classes best?",
    subtitle: str | None = "linear probe on each stage's pooled features; dotted line: logistic regression on raw pixels",
) -> go.Figure:
    """Linear-probe test accuracy at each stage, beside the raw-pixel baseline (and optionally a random-init net).

    Why: a probe asks how linearly separable the classes are in a stage's features. Where the curve peaks is the
    stage to transfer from; where it falls below the raw-pixel line, the pretrained features are hurting.

    ``records``: dicts with ``"stage"`` and ``"test_acc"`` (optional ``"train_acc"``) in network order, as
    ``ProbeResult.to_records()`` gives; or ``{label: records}`` to overlay several datasets, one colour each.
    ``baseline``: raw-pixel test accuracy (or ``{label: accuracy}``, labels matching ``records``), drawn as a dotted
    line labelled with its value. ``random_records``: the same probes on a randomly initialised network (dashed).
    ``show_train``: also draw train accuracy (faint), to show where the probe overfits.

    Example::

        >>> digits = [{"stage": s, "test_acc": a} for s, a in zip(["stem", "stage1"], [0.36, 0.48])]
        >>> fig = probe_by_stage({"digits": digits}, baseline={"digits": 0.90})
        >>> fig.data[0].y, fig.data[1].y
        ((0.36, 0.48), (0.9, 0.9))
    """
    single = not isinstance(records, Mapping)
    runs = _by_label(records, default_label="linear probe", what="records")
    labels = list(runs)
    baselines = _by_label(baseline, default_label=labels[0], what="baseline")
    randoms = _by_label(random_records, default_label=labels[0], what="random_records")
    for name, extra in (("baseline", baselines), ("random_records", randoms)):
        unknown = sorted(set(extra) - set(runs))
        if unknown:
            raise ValueError(f"{name} has labels {unknown} that are not in records' labels {labels}")

    checked = {k: check_records(v, ("stage", "test_acc"), what=f"probe records {k!r}") for k, v in runs.items()}
    checked_random = {k: check_records(v, ("stage", "test_acc"), what=f"random_records {k!r}") for k, v in randoms.items()}
    stages = ordered_unique(str(r["stage"]) for recs in [*checked.values(), *checked_random.values()] for r in recs)

    fig = go.Figure()
    for i, (label, recs) in enumerate(checked.items()):
        color = series_color(i)
        x = [str(r["stage"]) for r in recs]
        if len(set(x)) != len(x):
            raise ValueError(f"probe records {label!r} repeat a stage: {x}")
        y = [check_accuracy(r["test_acc"], what=f"test_acc of {label!r} at {r['stage']!r}") for r in recs]
        hover = f"{label}<br>stage %{{x}}<br>test accuracy %{{y:.3f}}<extra></extra>"
        fig.add_trace(go.Scatter(x=x, y=y, name=label, mode="lines+markers", line=dict(color=color, width=3),
                                 marker=dict(size=9), legendgroup=label, hovertemplate=hover))
        if show_train and all("train_acc" in r for r in recs):
            fig.add_trace(go.Scatter(
                x=x, y=[float(r["train_acc"]) for r in recs], name=f"{label} (train)", mode="lines+markers",
                line=dict(color=color, width=1.5, dash="dot"), marker=dict(size=5, symbol="circle-open"),
                opacity=0.6, legendgroup=label,
                hovertemplate=f"{label}<br>stage %{{x}}<br>train accuracy %{{y:.3f}}<extra></extra>"))
        if label in checked_random:
            rr = checked_random[label]
            name = "random init" if single else f"{label}, random init"
            fig.add_trace(go.Scatter(
                x=[str(r["stage"]) for r in rr], y=[check_accuracy(r["test_acc"], what="random test_acc") for r in rr],
                name=name, mode="lines+markers", line=dict(color=color, width=2, dash="dash"),
                marker=dict(size=7, symbol="x"), legendgroup=label,
                hovertemplate=f"{name}<br>stage %{{x}}<br>test accuracy %{{y:.3f}}<extra></extra>"))
        if label in baselines:
            b = check_accuracy(baselines[label], what=f"baseline of {label!r}")
            name = f"raw pixels: {b:.2f}" if single else f"{label}, raw pixels: {b:.2f}"
            fig.add_trace(go.Scatter(
                x=[stages[0], stages[-1]], y=[b, b], name=name, mode="lines", legendgroup=label,
                line=dict(color=GREY if single else color, width=2, dash="dot"),
                hovertemplate=f"{name}<extra></extra>"))
            fig.add_annotation(x=1, xref="paper", y=b, text=f"raw pixels<br>{b:.2f}", showarrow=False, xanchor="left",
                               xshift=6, align="left", font=dict(size=12, color=GREY if single else color))
    base_layout(fig, title=title, subtitle=subtitle, width=860, height=500)
    fig.update_xaxes(title="stage (input → output)", type="category", categoryorder="array", categoryarray=stages,
                     range=[-0.4, len(stages) - 0.6])
    fig.update_yaxes(title="test accuracy", range=[0, 1.02], tickformat=".1f")
    fig.update_layout(margin_r=90 if baselines else 30)
    legend_below(fig)
    return fig


def cka_by_stage(
    per_stage: Mapping[str, float] | Mapping[str, Mapping[str, float]],
    *,
    title: str = "How much did each stage change during fine-tuning?",
    subtitle: str | None = "linear CKA between the two networks' features on the same images (1 = same representation)",
    yaxis_title: str = "CKA similarity (0 to 1)",
) -> go.Figure:
    """CKA between two networks at each stage: ``{stage: cka}`` or ``{label: {stage: cka}}`` for several pairs.

    Why: fine-tuning keeps low stages almost unchanged (CKA near 1) and rewrites the top ones; the curve shows where.
    CKA is Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited"
    (https://arxiv.org/abs/1905.00414). Feed it ``StageSimilarity.per_stage``.

    Example::

        >>> fig = cka_by_stage({"pretrained vs fine-tuned": {"stem": 0.99, "stage7": 0.41}})
        >>> fig.data[0].x, fig.data[0].y
        (('stem', 'stage7'), (0.99, 0.41))
    """
    if not isinstance(per_stage, Mapping) or not per_stage:
        raise ValueError(f"per_stage must be a non-empty dict {{stage: cka}} or {{label: {{stage: cka}}}}, got {per_stage!r}")
    nested = [isinstance(v, Mapping) for v in per_stage.values()]
    if any(nested) and not all(nested):
        raise ValueError("per_stage mixes numbers and dicts; pass {stage: cka} or {label: {stage: cka}}, not both")
    series = {str(k): v for k, v in per_stage.items()} if all(nested) else {"CKA": per_stage}
    stages = ordered_unique(str(s) for d in series.values() for s in d)
    fig = go.Figure()
    for i, (label, d) in enumerate(series.items()):
        if not d:
            raise ValueError(f"per_stage[{label!r}] is empty")
        y = [check_accuracy(v, what=f"CKA of {label!r} at {s!r}") for s, v in d.items()]
        fig.add_trace(go.Scatter(
            x=[str(s) for s in d], y=y, name=label, mode="lines+markers", line=dict(color=series_color(i), width=3),
            marker=dict(size=9), hovertemplate=f"{label}<br>stage %{{x}}<br>CKA %{{y:.3f}}<extra></extra>"))
    base_layout(fig, title=title, subtitle=subtitle, width=860, height=480, showlegend=len(series) > 1)
    fig.update_xaxes(title="stage (input → output)", type="category", categoryorder="array", categoryarray=stages)
    fig.update_yaxes(title=yaxis_title, range=[0, 1.02], tickformat=".1f")
    legend_below(fig)
    return fig


def cka_matrix(
    matrix: Any,
    stages_a: Sequence[str],
    stages_b: Sequence[str],
    *,
    names: tuple[str, str] = ("network A", "network B"),
    title: str = "Which stages of the two networks compute similar features?",
    subtitle: str | None = "linear CKA of every stage pair (1 = same representation up to rotation and scale)",
) -> go.Figure:
    """Heatmap of CKA between every stage of network A (rows) and every stage of network B (columns).

    Why: a bright diagonal means the two networks build the same hierarchy stage by stage; where fine-tuning
    rewrote a stage, its row fades. ``matrix`` is ``StageSimilarity.matrix`` (len(stages_a), len(stages_b)) in [0, 1].

    Example::

        >>> fig = cka_matrix([[1.0, 0.4], [0.5, 0.9]], ["stem", "stage1"], ["stem", "stage1"],
        ...                  names=("pretrained", "fine-tuned"))
        >>> fig.data[0].z.tolist()
        [[1.0, 0.4], [0.5, 0.9]]
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D (len(stages_a), len(stages_b)), got shape {m.shape}")
    ya = check_labels(stages_a, m.shape[0], what="stages_a", expected="matrix's rows")
    xb = check_labels(stages_b, m.shape[1], what="stages_b", expected="matrix's columns")
    finite = m[np.isfinite(m)]
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        raise ValueError(f"CKA values must lie in [0, 1]; matrix spans [{finite.min():.3g}, {finite.max():.3g}]")
    n = max(m.shape)
    hover = f"{names[0]} %{{y}}<br>{names[1]} %{{x}}<br>CKA %{{z:.3f}}<extra></extra>"
    fig = go.Figure(go.Heatmap(
        z=m, x=xb, y=ya, zmin=0, zmax=1, colorscale=SEQUENTIAL, texttemplate="%{z:.2f}" if n <= 16 else None,
        textfont=dict(size=12 if n <= 10 else 10), hovertemplate=hover, xgap=1, ygap=1,
        colorbar=dict(title=dict(text="CKA", side="right"), thickness=14)))
    heatmap_frame(fig, xlabels=xb, ylabels=ya, cell=46 if n <= 12 else max(22, 560 // n),
                  xtitle=f"{names[1]} stage", ytitle=f"{names[0]} stage", title=title, subtitle=subtitle)
    return fig
