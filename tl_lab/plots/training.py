"""Figures of training outcomes: learning curves, strategy comparisons, data efficiency, freeze sweeps, confusions.

Why: every lesson claim about training ("pretrained wins with little data", "freezing the low stages costs
nothing") is a comparison of runs. These builders take the plain records that ``Run.history``, ``Run.table_row``
and the experiment recipes produce; strategies keep one colour everywhere (see ``plots_style.STRATEGY_COLORS``).

Example::

    >>> from tl_lab.plots import comparison_bars
    >>> fig = comparison_bars([{"strategy": "fine_tune", "test_acc": 0.91}, {"strategy": "scratch", "test_acc": 0.4}])
    >>> fig.data[0].y
    (0.91, 0.4)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tl_lab.plots.style import (
    INIT_COLORS,
    STRATEGY_NAMES,
    as_array,
    base_layout,
    check_accuracy,
    check_labels,
    check_records,
    color_for,
    heatmap_frame,
    legend_below,
    mean_std,
    ordered_unique,
    series_color,
    strategy_key,
    strategy_name,
)

__all__ = ["training_curves", "empty_training_figure", "append_epoch", "append_epochs", "add_run", "data_efficiency", "freeze_sweep",
           "comparison_bars", "confusion_matrix", "TRAINING_METRICS", "TASK_LOSS", "TERM_PREFIX", "term_keys",
           "term_label"]

TRAINING_METRICS = ("train_loss", "val_loss", "train_acc", "val_acc")
"""The four curves of every run in :func:`training_curves`, in trace order (each trace's ``meta["metric"]``). The
``train_loss`` curve draws :data:`TASK_LOSS` when a history row has it (the objective alone), else ``train_loss``."""

TASK_LOSS = "train_task_loss"
"""The history key of the training objective alone (cross-entropy), without the added loss terms; ``train_loss`` is
the total the optimiser minimised. Only the objective is comparable with ``val_loss``."""

TERM_PREFIX = "term_"
"""History keys ``term_<name>`` hold each added loss term's mean per example (``term_lwf``, ``term_domain_confusion`` …);
they are drawn in a panel of their own, never on the task-loss axis."""

_TERM_NAMES = {
    "lwf": "LwF: distance to the original network's outputs",
    "ewc": "EWC: pull back the weights ImageNet relied on (Fisher-weighted)",
    "l2sp": "L2-SP: pull back to the pretrained weights",
    "domain_confusion": "domain confusion: the domain classifier's loss",
}
_TERMS_AXIS = "added loss terms"
_SUBTITLE = "solid: validation · dashed: training"
_TERMS_SUBTITLE = ("solid: validation · dashed: training (the task's loss alone) · dotted: loss terms added to it "
                   "(own panel)")


def term_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``term_*`` keys of ``rows`` (history rows or EpochEnd metrics), in order of first appearance."""
    return ordered_unique(k for r in rows for k in r if isinstance(k, str) and k.startswith(TERM_PREFIX))


def term_label(key: str) -> str:
    """How a learner reads a term's curve: ``term_lwf`` -> ``"LwF: distance to the original network's outputs"``."""
    name = key[len(TERM_PREFIX):] if key.startswith(TERM_PREFIX) else key
    return _TERM_NAMES.get(name, name.replace("_", " "))


def _source(metric: str, row: Mapping[str, Any]) -> str | None:
    """The history key a curve draws from ``row``: the task loss for the training-loss curve when recorded."""
    if metric == "train_loss" and TASK_LOSS in row:
        return TASK_LOSS
    return metric if metric in row else None


def training_curves(runs: Sequence[Mapping[str, Any]], *, title: str = "Is the model still learning, or overfitting?",
                    subtitle: str | None = _SUBTITLE) -> go.Figure:
    """Loss (top) and accuracy (bottom) against epoch for several runs, one colour per run.

    Why: the gap between the dashed train curve and the solid validation curve is overfitting; a flat validation
    curve means more epochs will not help. ``runs``: ``[{"label": str, "history": Run.history}, ...]``; each history
    entry holds ``epoch`` and any of ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``. Each run has four
    traces in :data:`TRAINING_METRICS` order, tagged ``meta={"run": label, "metric": key}``; only the validation
    loss trace shows in the legend, named with the run's label.

    A run trained with added loss terms (a forgetting remedy such as LwF, domain confusion) minimises their sum with
    the task's loss; that total is not comparable with the validation loss (LwF's distillation term alone can be
    twice the task loss). So the dashed training curve draws :data:`TASK_LOSS` (``train_task_loss``) when the
    history has it, and each ``term_<name>`` is a dotted curve in a panel of its own between loss and accuracy
    (``meta={"run": label, "metric": "term_<name>"}``, in the legend as "label: what the term does").

    Example::

        >>> history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "train_acc": 0.2 * e, "val_acc": 0.18 * e}
        ...            for e in (1, 2, 3)]                    # run.history of a fit
        >>> fig = training_curves([{"label": "fine-tune", "history": history}])
        >>> [t.meta["metric"] for t in fig.data]
        ['train_loss', 'val_loss', 'train_acc', 'val_acc']
    """
    runs = check_records(runs, ("label", "history"), what="runs")
    labels = [str(r["label"]) for r in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"run labels must be unique (they name the legend entries), got {labels}")
    terms = any(term_keys(r["history"]) for r in runs)
    if terms and subtitle == _SUBTITLE:
        subtitle = _TERMS_SUBTITLE
    fig = _training_layout(title=title, subtitle=subtitle)
    if terms:
        _add_terms_panel(fig)
    for i, run in enumerate(runs):
        history = run["history"]
        if history:
            check_records(history, ("epoch",), what=f"history of run {run['label']!r}")
        _add_run_traces(fig, str(run["label"]), history, series_color(i))
        for key in term_keys(history):
            _add_term_trace(fig, str(run["label"]), key, history, series_color(i))
    _epoch_ticks(fig, max((float(h["epoch"]) for r in runs for h in r["history"]), default=1.0))
    return fig


def empty_training_figure(label: str = "this run", *, epochs: int | None = None, color: str | None = None,
                          title: str = "Is the model still learning, or overfitting?",
                          note: str | None = None) -> go.Figure:
    """The :func:`training_curves` figure with one run's four traces and no points, for live updating.

    Why: a widget wraps it in a ``go.FigureWidget`` and extends it after every epoch with :func:`append_epoch`
    (inside ``batch_update()``), so the live chart and the finished figure look the same. ``epochs``: the planned
    number of epochs fixes the x axis, so the chart does not rescale as points arrive. Until the first epoch a
    note says the chart is waiting (or ``note``, e.g. before any run was started); :func:`append_epoch` removes it.

    Example::

        >>> fig = empty_training_figure("fine-tune", epochs=10)
        >>> append_epoch(fig, {"epoch": 1, "train_loss": 1.2, "val_loss": 1.0, "train_acc": 0.6, "val_acc": 0.7})
        >>> fig.data[1].y
        (1.0,)
    """
    fig = _training_layout(title=title, subtitle=_SUBTITLE)
    _add_run_traces(fig, str(label), [], color or series_color(0))
    if epochs is not None:
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        fig.update_xaxes(range=[0.5, int(epochs) + 0.5])
        _epoch_ticks(fig, float(epochs))
    else:  # no points yet: plotly's empty axis would run from -1, an epoch nobody trains
        fig.update_xaxes(rangemode="nonnegative")
    text = f"{label}: waiting for the first epoch…" if note is None else note
    fig.add_annotation(name="waiting", text=text, x=0.5, y=0.78, xref="paper",
                       yref="paper", showarrow=False, font=dict(size=15, color="#777777"))
    return fig


def append_epoch(fig: go.Figure, metrics: Mapping[str, Any], *, label: str | None = None) -> None:
    """Add one epoch's ``metrics`` to the matching traces of ``fig`` (the run named ``label``, or the only run).

    Works on ``go.Figure`` and ``go.FigureWidget``. For several epochs at once use :func:`append_epochs`: inside a
    FigureWidget's ``batch_update()`` a trace's ``x`` still reads its old value until the block ends, so two
    ``append_epoch`` calls in one batch would keep only the last point.
    """
    append_epochs(fig, [metrics], label=label)


def append_epochs(fig: go.Figure, epochs: Sequence[Mapping[str, Any]], *, label: str | None = None) -> None:
    """Add several epochs' metrics (in order) to the run named ``label``; one assignment per trace."""
    epochs = list(epochs)
    for m in epochs:
        if "epoch" not in m:
            raise ValueError(f"metrics need an 'epoch' key, got keys {sorted(m)}")
    traces = [t for t in fig.data if isinstance(t.meta, Mapping) and _drawn_metric(t.meta.get("metric"))]
    runs = ordered_unique(t.meta["run"] for t in traces)
    if label is None:
        if len(runs) != 1:
            raise ValueError(f"the figure holds runs {runs}; name one with label=")
        label = runs[0]
    if label not in runs:
        raise ValueError(f"no run {label!r} in this figure; it holds {runs}")
    if not epochs:
        return
    if any(a.name == "waiting" for a in fig.layout.annotations):
        fig.layout.annotations = [a for a in fig.layout.annotations if a.name != "waiting"]
    mine = [t for t in traces if t.meta["run"] == label]
    for t in mine:
        metric = t.meta["metric"]
        rows = [(m, key) for m in epochs if (key := _source(metric, m)) is not None]
        if rows:
            t.x = (*(t.x or ()), *(float(m["epoch"]) for m, _ in rows))
            t.y = (*(t.y or ()), *(_number(m[key]) for m, key in rows))
    drawn = {t.meta["metric"] for t in mine}
    new_terms = [k for k in term_keys(epochs) if k not in drawn]
    if new_terms:  # a term's first epoch: its curve (and, for the figure's first term, its panel) appears
        if not _has_terms_panel(fig):
            _add_terms_panel(fig)
        color = next((t.line.color for t in mine if t.meta["metric"] == "val_loss"), None) or series_color(0)
        for key in new_terms:
            _add_term_trace(fig, label, key, epochs, color)
    last = max(float(m["epoch"]) for m in epochs)
    _epoch_ticks(fig, max(last, (fig.layout.xaxis.range or (0, 0))[1] - 0.5))


def add_run(fig: go.Figure, label: str, *, history: Sequence[Mapping[str, Any]] = (), color: str | None = None,
            epochs: int | None = None) -> None:
    """Add one more run's four traces to a :func:`training_curves` / :func:`empty_training_figure` figure.

    Why: a live chart overlays every run a learner makes; each new run gets the next colour (or ``color``) and
    later :func:`append_epoch` calls with ``label=`` extend it. ``epochs`` widens the x axis to fit the run.
    """
    runs = ordered_unique(t.meta["run"] for t in fig.data if isinstance(t.meta, Mapping) and "run" in t.meta)
    if label in runs:
        raise ValueError(f"the figure already holds a run named {label!r}; labels must be unique")
    _add_run_traces(fig, str(label), history, color or series_color(len(runs)))
    if epochs is not None:
        right = max(float(epochs), (fig.layout.xaxis.range or (0, 0))[1] - 0.5)
        fig.update_xaxes(range=[0.5, right + 0.5])
        _epoch_ticks(fig, right)


def _epoch_ticks(fig: go.Figure, last_epoch: float) -> None:
    """Whole-epoch ticks (never 2.5), about a dozen at most however long the run."""
    step = max(1, int(np.ceil(last_epoch / 12)))
    if fig.layout.xaxis.dtick != step:
        fig.update_xaxes(tick0=0, dtick=step)


def _number(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _drawn_metric(metric: Any) -> bool:
    return isinstance(metric, str) and (metric in TRAINING_METRICS or metric.startswith(TERM_PREFIX))


def _has_terms_panel(fig: go.Figure) -> bool:
    return "yaxis3" in fig.layout and fig.layout.yaxis3.title.text == _TERMS_AXIS


def _add_terms_panel(fig: go.Figure) -> None:
    """A third panel, between loss and accuracy, for the added loss terms: their scale is not the task loss's.

    The panel is laid out on a plain copy of the layout and its two new axes are then set whole, once: inside a
    FigureWidget's ``batch_update()`` a new axis followed by edits of its children would reach plotly.js as one
    relayout holding both ``yaxis3`` and ``yaxis3.domain``, which it refuses ("cannot set yaxis3.domain and a
    parent attribute simultaneously"), and the live chart would lose the panel in the browser.
    """
    plain = go.Figure(layout=fig.layout)
    _lay_out_terms_panel(plain)
    fig.layout.xaxis3, fig.layout.yaxis3 = plain.layout.xaxis3, plain.layout.yaxis3
    fig.update_layout({k: v for k, v in plain.layout.to_plotly_json().items() if k not in ("xaxis3", "yaxis3")})


def _lay_out_terms_panel(fig: go.Figure) -> None:
    fig.update_layout(
        yaxis=dict(domain=[0.70, 1.0]),
        yaxis3=dict(domain=[0.385, 0.645], anchor="x3", title=dict(text=_TERMS_AXIS), rangemode="tozero"),
        xaxis3=dict(anchor="y3", matches="x2", showticklabels=False),
        yaxis2=dict(domain=[0.0, 0.33]),
    )
    meta = dict(fig.layout.meta) if isinstance(fig.layout.meta, Mapping) else {}
    base_layout(fig, title=meta.get("title", "Is the model still learning, or overfitting?"),
                subtitle=_TERMS_SUBTITLE if meta.get("subtitle", _SUBTITLE) == _SUBTITLE else meta.get("subtitle"),
                width=860, height=820, hovermode="x unified")
    fig.update_xaxes(tick0=0, dtick=fig.layout.xaxis.dtick or 1)


def _add_term_trace(fig: go.Figure, label: str, key: str, history: Sequence[Mapping[str, Any]], color: str) -> None:
    rows = [h for h in history if key in h]
    name = term_label(key)
    fig.add_trace(go.Scatter(
        x=[float(h["epoch"]) for h in rows], y=[_number(h[key]) for h in rows], mode="lines+markers",
        name=f"{label}: {name}", legendgroup=label, showlegend=True, meta={"run": label, "metric": key},
        xaxis="x3", yaxis="y3", line=dict(color=color, width=1.8, dash="dot"), marker=dict(size=4, symbol="diamond"),
        hovertemplate=f"{label}: {name} %{{y:.3f}}<extra></extra>"))


def _training_layout(*, title: str, subtitle: str | None) -> go.Figure:
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.07)
    base_layout(fig, title=title, subtitle=subtitle, width=860, height=620, hovermode="x unified")
    fig.update_layout(meta={"title": title, "subtitle": subtitle})  # for a terms panel added later (live charts)
    fig.update_yaxes(title="loss (cross-entropy)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title="accuracy (fraction correct)", range=[0, 1.02], tickformat=".1f", row=2, col=1)
    fig.update_xaxes(title="epoch", row=2, col=1)
    fig.update_xaxes(tick0=0, dtick=1)
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=-0.12, yanchor="top"))
    return fig


def _add_run_traces(fig: go.Figure, label: str, history: Sequence[Mapping[str, Any]], color: str) -> None:
    x = [float(h["epoch"]) for h in history]
    for metric in TRAINING_METRICS:
        split, kind = metric.split("_")
        row = 1 if kind == "loss" else 2
        y = [_number(h.get(_source(metric, h) or metric)) for h in history]
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=label, legendgroup=label, showlegend=metric == "val_loss",
            meta={"run": label, "metric": metric},
            line=dict(color=color, width=2.5 if split == "val" else 1.8, dash="solid" if split == "val" else "dash"),
            marker=dict(size=6 if split == "val" else 4),
            hovertemplate=f"{label}: {split} {kind} %{{y:.3f}}<extra></extra>"), row, 1)


def _aggregate(records: Sequence[Mapping[str, Any]], group: str, x: str, *, what: str) -> dict[Any, dict[Any, list[float]]]:
    """``{group value: {x value: [test_acc, ...]}}``: several seeds of one point are averaged later."""
    out: dict[Any, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        out[r[group]][r[x]].append(check_accuracy(r["test_acc"], what=f"{what} test_acc at {group}={r[group]!r}"))
    return out


def _error_bars(stds: list[float], ns: list[int]) -> dict | None:
    return dict(type="data", array=stds, visible=True, thickness=1.5, width=5) if max(ns) > 1 else None


def data_efficiency(records: Sequence[Mapping[str, Any]], *, title: str = "How much labelled data does each strategy need?",
                    subtitle: str | None = None) -> go.Figure:
    """Test accuracy against labelled examples per class, one line per strategy, error bars over seeds.

    Why: the lesson's headline claim, that pretrained features win when labels are scarce and the gap closes with
    more data, is this figure. ``records``: dicts with ``strategy`` (``scratch``, ``linear_probe``,
    ``frozen_head``, ``fine_tune``, ``prototypes``, ``raw_pixels`` or any name), ``shots`` (int) and
    ``test_acc``; a ``zero_shot`` record at ``shots=0`` is drawn as a dashed level across the plot (a log axis
    has no 0), so where each curve crosses it reads as "labels needed to beat zero-shot"; with several
    ``seed`` values per point, the line is their mean and the bars ±1 standard deviation. The x axis is
    logarithmic with a tick at every measured shot count.

    Example::

        >>> fig = data_efficiency([{"strategy": "fine_tune", "shots": s, "test_acc": a}
        ...                        for s, a in [(1, 0.5), (5, 0.8), (10, 0.9)]])
        >>> fig.data[0].x, fig.data[0].y
        ((1, 5, 10), (0.5, 0.8, 0.9))
    """
    records = check_records(records, ("strategy", "shots", "test_acc"), what="data_efficiency records")
    for r in records:
        if not float(r["shots"]) > 0 and not (float(r["shots"]) == 0 and strategy_key(r["strategy"]) == "zero_shot"):
            raise ValueError(f"shots must be a positive count of examples per class (0 only for strategy "
                             f"'zero_shot'), got {r['shots']!r}")
    # zero-shot uses no labels: a log axis has no 0, so it is drawn as a level across the plot
    levels = [r for r in records if float(r["shots"]) == 0]
    records = [r for r in records if float(r["shots"]) > 0]
    groups = _aggregate(records, "strategy", "shots", what="data_efficiency")
    known = [s for s in STRATEGY_NAMES if s in {strategy_key(g) for g in groups}]
    order = sorted(groups, key=lambda g: known.index(strategy_key(g)) if strategy_key(g) in known else len(known))
    fig = go.Figure()
    most = 1
    for i, strategy in enumerate(order):
        shots = sorted(groups[strategy])
        stats = [mean_std(groups[strategy][s]) for s in shots]
        most = max(most, *(n for _, _, n in stats))
        name = strategy_name(strategy)
        raw = strategy_key(strategy) == "raw_pixels"
        fig.add_trace(go.Scatter(
            x=shots, y=[m for m, _, _ in stats], name=name, mode="lines+markers", customdata=[[sd, n] for _, sd, n in stats],
            error_y=_error_bars([sd for _, sd, _ in stats], [n for _, _, n in stats]),
            line=dict(color=color_for(strategy, i), width=2 if raw else 3, dash="dot" if raw else "solid"),
            marker=dict(size=8, symbol="square" if raw else "circle"),
            hovertemplate=f"{name}<br>%{{x}} per class<br>test accuracy %{{y:.3f}} ± %{{customdata[0]:.3f}}"
                          f" (%{{customdata[1]}} seeds)<extra></extra>"))
    ticks = sorted({r["shots"] for r in records}) or [1]
    for strategy, per in _aggregate(levels, "strategy", "shots", what="data_efficiency").items():
        acc = float(np.mean(per[next(iter(per))]))
        name = strategy_name(strategy)
        fig.add_trace(go.Scatter(
            x=[ticks[0], ticks[-1]] if len(ticks) > 1 else [ticks[0] * 0.8, ticks[0] * 1.25], y=[acc, acc],
            name=f"{name}: {acc:.3f}", mode="lines", line=dict(color=color_for(strategy), width=3, dash="dash"),
            hovertemplate=f"{name}<br>0 labelled examples<br>test accuracy {acc:.3f}<extra></extra>"))
    note = f"mean of {most} seeds, bars: ±1 standard deviation" if most > 1 else "one seed per point"
    base_layout(fig, title=title, subtitle=subtitle or note, width=860, height=520)
    fig.update_xaxes(title="labelled examples per class (log scale)", type="log", tickvals=ticks,
                     ticktext=[str(t) for t in ticks])
    fig.update_yaxes(title="test accuracy", range=[0, 1.02], tickformat=".1f")
    legend_below(fig)
    return fig


def freeze_sweep(records: Sequence[Mapping[str, Any]], *, title: str = "How many stages can stay frozen?",
                 subtitle: str | None = None) -> go.Figure:
    """Test accuracy against where training starts: pretrained and random-init lines.

    Why: with pretrained weights, freezing the low stages costs little (and saves time); with random weights, every
    frozen stage is noise the head must cope with. ``records``: dicts with ``frozen_stages`` (int),
    ``trainable_from`` (stage name training starts at), ``init`` (``"pretrained"`` or ``"random"``) and
    ``test_acc``; several seeds per point are averaged with ±1 standard deviation bars.

    Example::

        >>> fig = freeze_sweep([{"frozen_stages": 0, "trainable_from": "stem", "init": "pretrained", "test_acc": 0.9},
        ...                     {"frozen_stages": 3, "trainable_from": "stage3", "init": "pretrained", "test_acc": 0.88}])
        >>> fig.data[0].y
        (0.9, 0.88)
    """
    records = check_records(records, ("frozen_stages", "trainable_from", "init", "test_acc"), what="freeze_sweep records")
    names: dict[int, str] = {}
    for r in records:
        if r["init"] not in INIT_COLORS:
            raise ValueError(f"init must be 'pretrained' or 'random', got {r['init']!r}")
        # trainable_from=None means every stage trains (nothing frozen): say so rather than "None"
        k, name = int(r["frozen_stages"]), "all stages" if r["trainable_from"] is None else str(r["trainable_from"])
        if names.setdefault(k, name) != name:
            raise ValueError(f"frozen_stages={k} is paired with both {names[k]!r} and {name!r}")
    order = sorted(names)
    tick = {k: f"{names[k]}<br>({k} frozen)" for k in order}
    groups = _aggregate(records, "init", "frozen_stages", what="freeze_sweep")
    fig = go.Figure()
    most = 1
    for init in [i for i in INIT_COLORS if i in groups]:
        ks = sorted(groups[init])
        stats = [mean_std(groups[init][k]) for k in ks]
        most = max(most, *(n for _, _, n in stats))
        label = "pretrained init" if init == "pretrained" else "random init"
        fig.add_trace(go.Scatter(
            x=[tick[k] for k in ks], y=[m for m, _, _ in stats], name=label, mode="lines+markers",
            error_y=_error_bars([sd for _, sd, _ in stats], [n for _, _, n in stats]),
            line=dict(color=INIT_COLORS[init], width=3, dash="solid" if init == "pretrained" else "dash"),
            marker=dict(size=9), customdata=[[k, names[k]] for k in ks],
            hovertemplate=f"{label}<br>trains from %{{customdata[1]}} (%{{customdata[0]}} stages frozen)"
                          f"<br>test accuracy %{{y:.3f}}<extra></extra>"))
    note = f"mean of {most} seeds, bars: ±1 standard deviation" if most > 1 else "stages before the named one are frozen"
    base_layout(fig, title=title, subtitle=subtitle or note, width=860, height=520)
    fig.update_xaxes(title="training starts at stage (earlier stages frozen)", type="category",
                     categoryorder="array", categoryarray=[tick[k] for k in order])
    fig.update_yaxes(title="test accuracy", range=[0, 1.02], tickformat=".1f")
    fig.update_layout(margin_b=110)
    legend_below(fig)
    fig.update_layout(legend_y=-0.25)
    return fig


def comparison_bars(rows: Sequence[Mapping[str, Any]], *, title: str = "Does starting from pretrained features help?",
                    subtitle: str | None = None, chance: float | None = None) -> go.Figure:
    """One bar per strategy, labelled with its test accuracy: lesson 0's "first result in a minute".

    Why: one glance shows pretrained features beating training from scratch on a small set, with the raw-pixel
    baseline beside them for honesty. ``rows``: dicts with ``strategy`` and ``test_acc`` (optional ``seconds``,
    shown on hover); repeated strategies (seeds) become their mean with a ±1 standard deviation bar. ``chance``:
    draw the chance level (1 / number of classes) as a dotted line.

    Example::

        >>> fig = comparison_bars([{"strategy": "frozen_head", "test_acc": 0.86}, {"strategy": "raw_pixels",
        ...                         "test_acc": 0.34}], chance=0.1)
        >>> fig.data[0].text
        ('0.86', '0.34')
    """
    rows = check_records(rows, ("strategy", "test_acc"), what="comparison_bars rows")
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[str(r["strategy"])].append(r)
    names, means, stds, ns, colors, secs = [], [], [], [], [], []
    for i, (strategy, rs) in enumerate(groups.items()):
        m, sd, n = mean_std([check_accuracy(r["test_acc"], what=f"test_acc of {strategy!r}") for r in rs])
        names.append(strategy_name(strategy))
        means.append(m), stds.append(sd), ns.append(n), colors.append(color_for(strategy, i))
        s = [float(r["seconds"]) for r in rs if r.get("seconds") is not None]
        secs.append(f"{np.mean(s):.0f} s" if s else "n/a")
    fig = go.Figure(go.Bar(
        x=names, y=means, text=[f"{m:.2f}" for m in means], textposition="outside", marker_color=colors,
        textfont=dict(size=16), error_y=_error_bars(stds, ns), customdata=[[n, s] for n, s in zip(ns, secs)],
        cliponaxis=False, name="test accuracy",
        hovertemplate="%{x}<br>test accuracy %{y:.3f}<br>%{customdata[0]} run(s), training time %{customdata[1]}<extra></extra>"))
    if chance is not None:
        c = check_accuracy(chance, what="chance")
        fig.add_hline(y=c, line=dict(color="#555555", dash="dot", width=1.5), layer="above")
        fig.add_annotation(x=1, xref="paper", y=c, text=f"chance<br>{c:.2f}", showarrow=False, xanchor="left",
                           xshift=6, align="left", font=dict(size=12, color="#555555"))
    note = "mean over seeds, bars: ±1 standard deviation" if max(ns) > 1 else "test accuracy of each strategy"
    base_layout(fig, title=title, subtitle=subtitle or note, width=max(560, 150 * len(names) + 160), height=480,
                showlegend=False)
    fig.update_xaxes(title="strategy")
    fig.update_layout(margin_r=80 if chance is not None else 30)
    fig.update_yaxes(title="test accuracy", range=[0, 1.08], tickformat=".1f")
    return fig


def confusion_matrix(matrix: Any, classes: Sequence[str], *, normalize: bool = True,
                     title: str = "Which classes get confused with which?", subtitle: str | None = None) -> go.Figure:
    """Heatmap of true class (rows) against predicted class (columns), annotated with each cell's value.

    Why: accuracy hides which classes fail; the off-diagonal cells show the mistakes a learner can then inspect.
    ``matrix``: (C, C) counts, row = true class. ``normalize``: colour and label each row as fractions of that
    class's images (recall on the diagonal), so rare classes are as visible as common ones; hover always shows the
    raw count. Cell labels are dropped above 20 classes, where they could not be read.

    Example::

        >>> fig = confusion_matrix([[8, 2], [1, 9]], ["cat", "dog"])
        >>> fig.data[0].z.tolist()
        [[0.8, 0.2], [0.1, 0.9]]
    """
    m = as_array(matrix, ndim=2, what="matrix", shape_hint="(C, C)").astype(float)
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"a confusion matrix is square (C, C), got shape {m.shape}")
    names = check_labels(classes, m.shape[0], what="classes", expected="the matrix")
    if (m < 0).any():
        raise ValueError("a confusion matrix holds counts; it has negative entries")
    totals = m.sum(axis=1, keepdims=True)
    z = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0) if normalize else m
    c = len(names)
    accuracy = np.trace(m) / m.sum() if m.sum() else float("nan")
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=names, customdata=m, colorscale="Blues", zmin=0, zmax=1 if normalize else None,
        texttemplate=("%{z:.2f}" if normalize else "%{z:.0f}") if c <= 20 else None,
        textfont=dict(size=12 if c <= 10 else 9), xgap=1, ygap=1,
        colorbar=dict(title=dict(text="fraction of<br>true class" if normalize else "images", side="right"), thickness=14),
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata:.0f} images"
                      + (" (%{z:.1%} of the class)" if normalize else "") + "<extra></extra>"))
    heatmap_frame(fig, xlabels=names, ylabels=names, cell=46 if c <= 12 else max(14, 560 // c),
                  xtitle="predicted class", ytitle="true class", title=title,
                  subtitle=subtitle or f"overall accuracy {accuracy:.3f} on {m.sum():.0f} images")
    return fig
