"""Plotly figure builders: plain data in, ``plotly.graph_objects.Figure`` out, never shown.

Why a separate layer: every figure a widget shows can be rebuilt in a plain script or a test from the numbers the
analyses return (``ProbeResult.to_records()``, ``StageSimilarity.per_stage``, ``Run.history``, ``Attribution.maps``),
so the display never hides a computation. Builders ask each figure's question in its title, label every axis
with units, use the Okabe-Ito colour-blind-safe palette with one fixed colour per strategy, and raise
``ValueError`` naming the problem when their inputs disagree.

Where things live (all re-exported here; import from ``tl_lab.plots``):

- ``plots_inside``: :func:`filter_grid`, :func:`feature_map_grid`, :func:`attribution_overlays`,
  :func:`embedding_scatter` (what the network sees).
- ``plots_stages``: :func:`probe_by_stage`, :func:`cka_by_stage`, :func:`cka_matrix` (one value per stage).
- ``plots_training``: :func:`training_curves`, :func:`empty_training_figure`, :func:`append_epoch`,
  :func:`data_efficiency`, :func:`freeze_sweep`, :func:`comparison_bars`, :func:`confusion_matrix`.
- ``plots_ranking``: :func:`transferability_scores`, :func:`score_vs_accuracy`, :func:`cost_vs_accuracy`
  (choosing a backbone).
- ``plots_adaptation``: :func:`adaptation_bars`, :func:`domain_accuracy_curves`, :func:`domain_embedding`
  (adapting to a new domain without its labels).
- ``plots.efficiency`` and ``plots.multitask``: :func:`efficiency_scatter`, :func:`forgetting_tradeoff`,
  :func:`sharing_bars` (sharing and keeping knowledge).
- ``plots_export``: :func:`save_html` (offline, one plotly.js per page), :func:`to_png` / :func:`to_pngs` (kaleido).
- ``plots.static``: :func:`describe` (a figure's text alternative), :func:`static_figure_html` and the ``"tl_lab"``
  plotly renderer, made the default in a Jupyter kernel when this package is imported: each figure goes out as the
  plotly mimetype (JupyterLab), a static-page HTML block (nbconvert, MyST-NB) and its text alternative.
- ``plots_style``: the palette (:data:`OKABE_ITO`, :data:`STRATEGY_COLORS`) and the shared layout.

Example::

    >>> from tl_lab.plots import probe_by_stage, save_html
    >>> backbone, data = tl_lab.load_backbone(), tl_lab.load_dataset("digits", shots=10)
    >>> result = probe_stages(backbone, data)   # tl_lab.inside; about 15 s  # doctest: +SKIP
    >>> fig = probe_by_stage(result.to_records(), baseline=result.baseline_test_acc)  # doctest: +SKIP
    >>> save_html(fig, "probes.html")  # doctest: +SKIP
    PosixPath('probes.html')
"""

from __future__ import annotations

from tl_lab.plots.efficiency import efficiency_scatter, forgetting_tradeoff
from tl_lab.plots.adaptation import (
    ADAPTATION_METHODS,
    adaptation_bars,
    domain_accuracy_curves,
    domain_embedding,
)
from tl_lab.plots.export import (
    ImageExportError,
    find_browser,
    save_html,
    to_png,
    to_pngs,
)
from tl_lab.plots.inside import (
    attribution_overlays,
    embedding_scatter,
    feature_map_grid,
    filter_grid,
)
from tl_lab.plots.multitask import sharing_bars
from tl_lab.plots.ranking import cost_vs_accuracy, score_vs_accuracy, transferability_scores
from tl_lab.plots.static import describe, static_figure_html, use_page_renderer
from tl_lab.plots.stages import cka_by_stage, cka_matrix, probe_by_stage
from tl_lab.plots.style import (
    INIT_COLORS,
    OKABE_ITO,
    STRATEGY_COLORS,
    STRATEGY_NAMES,
    TEMPLATE,
)
from tl_lab.plots.training import (
    TRAINING_METRICS,
    add_run,
    append_epoch,
    append_epochs,
    comparison_bars,
    confusion_matrix,
    data_efficiency,
    empty_training_figure,
    freeze_sweep,
    training_curves,
)

__all__ = [
    "ADAPTATION_METHODS",
    "adaptation_bars",
    "domain_accuracy_curves",
    "domain_embedding",
    "INIT_COLORS",
    "ImageExportError",
    "OKABE_ITO",
    "STRATEGY_COLORS",
    "STRATEGY_NAMES",
    "TEMPLATE",
    "TRAINING_METRICS",
    "add_run",
    "append_epoch",
    "append_epochs",
    "attribution_overlays",
    "cka_by_stage",
    "cka_matrix",
    "comparison_bars",
    "confusion_matrix",
    "cost_vs_accuracy",
    "describe",
    "data_efficiency",
    "efficiency_scatter",
    "forgetting_tradeoff",
    "embedding_scatter",
    "empty_training_figure",
    "feature_map_grid",
    "filter_grid",
    "find_browser",
    "freeze_sweep",
    "probe_by_stage",
    "score_vs_accuracy",
    "save_html",
    "sharing_bars",
    "static_figure_html",
    "to_png",
    "to_pngs",
    "training_curves",
    "transferability_scores",
    "use_page_renderer",
]

use_page_renderer()  # in a Jupyter kernel, figures also carry a static-page form and a text alternative
