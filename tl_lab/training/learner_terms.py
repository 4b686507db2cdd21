"""From ``fit``'s learner keywords (``tasks=``, ``retain=``, ``adapt_to=``) to one objective and a list of loss terms.

The translation lives above :mod:`tl_lab.training.terms` (the protocol) and the modules that implement terms
(retention, domain confusion, multi-task heads), so the protocol imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tl_lab.data.datasets import DatasetSplits
from tl_lab.training.domain_confusion import DomainConfusion
from tl_lab.training.multitask import Tasks
from tl_lab.training.retention import retain_terms
from tl_lab.training.terms import (
    CrossEntropy,
    LossTerm,
    MultiTask,
    Objective,
    check_terms,
)

__all__ = ["learner_terms"]


def learner_terms(data: DatasetSplits, *, label_smoothing: float = 0.0, tasks: Any = None, retain: Any = None,
                  adapt_to: Any = None, terms: Sequence[LossTerm] | None = ()) -> tuple[Objective, list[LossTerm]]:
    """``fit``'s learner keywords (``tasks=``, ``retain=``, ``adapt_to=``) plus ``terms=`` as one objective and a
    list of terms, checked: each term an object with ``loss``, names unique, one ``keep`` policy."""
    objective: Objective = CrossEntropy(label_smoothing)
    if tasks is not None:
        if retain is not None or adapt_to is not None:
            raise ValueError("tasks= (multi-task heads) cannot be combined with retain= or adapt_to= in one run; "
                             "run them separately")
        objective = MultiTask(Tasks.build(tasks, data), label_smoothing)
    out: list[LossTerm] = []
    if retain is not None:
        out += retain_terms(retain)
    if adapt_to is not None:
        out.append(DomainConfusion(adapt_to))
    out += list(terms or ())
    check_terms(out)
    return objective, out
