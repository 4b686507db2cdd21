"""The Train tab's runs table: one row per run, one raw-pixel row per dataset, what each run kept of ImageNet.

Why: every accuracy is read beside the raw-pixel baseline of the same data, and beside how much of the old task the
run's body kept. This module only arranges numbers the library measured (``Run.table_row``, the baselines, the
old-task agreement) into rows and HTML; a test can build a table from hand-made runs.

Example::

    >>> html = runs_table([(run, "frozen head, digits", kept)], baselines={data_key(run.data): 0.84})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tl_lab.training.run import Run
from tl_lab.widgets.common import html_table
from tl_lab.widgets.keep_old_task import KEPT_COLUMNS, MEASURING, kept_cells, kept_note, remedy_label
from tl_lab.widgets.train_options import data_key, data_label

__all__ = ["RAW_PIXELS", "runs_rows", "runs_table"]

RAW_PIXELS = "raw pixels (logistic regression)"
"""The run cell of each dataset's raw-pixel baseline row."""


def runs_rows(entries: Sequence[tuple[Run, str, Any]], baselines: Mapping[tuple, float]
              ) -> tuple[list[dict], dict[str, str]]:
    """(rows, reasons): one row per ``(run, label, kept)`` entry (``kept``: the old-task agreement, why it has none
    as a string, or :data:`~tl_lab.widgets.keep_old_task.MEASURING`), then one raw-pixel row per dataset listed
    (its accuracy from ``baselines``, keyed by :func:`~tl_lab.widgets.train_options.data_key`); ``reasons``: the
    runs whose old-task cells read n/a, and why."""
    rows, datasets, reasons = [], {}, {}
    for run, label, kept in entries:
        row = run.table_row()
        if isinstance(kept, str) and kept_cells(kept)["ImageNet kept (photos)"] == "n/a":
            reasons[label] = kept
        rows.append({"run": label, "data": data_label(run.config), "best val acc": row.pop("best val acc"),
                     "test acc": row.pop("test acc"), "keep old task": remedy_label(run.config), **kept_cells(kept),
                     **{k: v for k, v in row.items() if k != "run"}})
        if run.data is not None:
            datasets.setdefault(data_key(run.data), run)
    for key, run in datasets.items():
        rows.append({"run": RAW_PIXELS, "data": data_label(run.config), "best val acc": None,
                     "test acc": baselines.get(key), "keep old task": None, **kept_cells(None), "best epoch": None,
                     "epochs run": None, "seconds": None, "trainable params": None, "stopped": ""})
    return rows, reasons


def runs_table(entries: Sequence[tuple[Run, str, Any]], baselines: Mapping[tuple, float]) -> str:
    """The table's HTML (column meanings as header tooltips) and the note under it."""
    if not entries:
        return html_table([], css_class="tl-run-table", empty="no runs yet: click Train")
    rows, reasons = runs_rows(entries, baselines)
    pending = [label for _, label, kept in entries if kept_cells(kept)["ImageNet kept (photos)"] == MEASURING]
    return (html_table(rows, css_class="tl-run-table", titles=KEPT_COLUMNS)
            + kept_note(reasons, measuring=pending))
