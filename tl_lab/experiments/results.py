"""What every experiment returns: tidy records, wall time, a printable summary; table helpers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tl_lab.training.recipes import Records

# ---- results -----------------------------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    """What an experiment measured: ``records`` (one dict per measurement), wall time, settings, notes."""

    experiment: str
    records: Records
    seconds: float
    config: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    columns: tuple[str, ...] = ()
    pivot: tuple[tuple[str, ...], str] | None = None  # (row keys, column key): summary() shows mean test_acc

    def to_records(self) -> Records:
        """Copies of the records: a list of flat dicts (``pandas.DataFrame(result.to_records())``)."""
        return [dict(r) for r in self.records]

    def summary(self) -> str:
        if self.pivot is not None:
            table = f"test accuracy by {self.pivot[1]}\n" + pivot_table(self.records, *self.pivot)
        else:
            table = format_table(self.records, self.columns or (tuple(self.records[0]) if self.records else ()))
        lines = [f"{self.experiment}: {_describe(self.config)}", table]
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"{len(self.records)} records in {self.seconds:.1f} s")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def format_table(records: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain-text table of ``columns`` (floats to 3 decimals, None as ``-``)."""
    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    rows = [[cell(r.get(c)) for c in columns] for r in records]
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(columns)]

    def fmt(cells: Sequence[str]) -> str:  # first column left-aligned, the rest right-aligned
        return "  ".join(s.rjust(w) if i else s.ljust(w) for i, (s, w) in enumerate(zip(cells, widths)))

    return "\n".join([fmt(columns), "-" * (sum(widths) + 2 * max(len(widths) - 1, 0)), *map(fmt, rows)])


def pivot_table(records: Sequence[dict], rows: Sequence[str], column: str, value: str = "test_acc") -> str:
    """Mean ``value`` per (row keys) x ``column`` value, as text; rows and columns in first-seen order."""
    cells: dict[tuple, dict[Any, list[float]]] = {}
    for r in records:
        cells.setdefault(tuple(r[k] for k in rows), {}).setdefault(r[column], []).append(float(r[value]))
    cols = list(dict.fromkeys(r[column] for r in records))
    table = [{**dict(zip(rows, key)), **{str(c): float(np.mean(per[c])) if c in per else None for c in cols}}
             for key, per in cells.items()]
    return format_table(table, [*rows, *map(str, cols)])


def _describe(config: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items() if not isinstance(v, dict))


def _curves(records: Sequence[dict]) -> dict[str, list[tuple[int, float]]]:
    """Per strategy, (shots, mean test accuracy over seeds) sorted by shots, strategies in first-seen order."""
    acc: dict[str, dict[int, list[float]]] = {}
    for r in records:
        acc.setdefault(r["strategy"], {}).setdefault(int(r["shots"]), []).append(float(r["test_acc"]))
    return {s: [(k, float(np.mean(v))) for k, v in sorted(per.items())] for s, per in acc.items()}
