"""Multi-run experiments that turn a lesson's claims into measurements.

Each trains a handful of seeded runs through :func:`tl_lab.fit` with the named recipes of
:mod:`tl_lab.training.recipes` and returns an :class:`ExperimentResult` (tidy records, wall time, a printable
summary). Nothing here draws; :mod:`tl_lab.plots` does.
"""

from tl_lab.experiments.backbone_ranking import (
           RankingResult,
           kendall_tau,
           rank_backbones,
           verify_ranking,
)
from tl_lab.experiments.data_efficiency import (
           EfficiencyResult,
           data_efficiency,
           shots_to_reach,
)
from tl_lab.experiments.domain_shift import domain_shift, negative_transfer
from tl_lab.experiments.forgetting import forgetting
from tl_lab.experiments.freeze_sweep import freeze_sweep
from tl_lab.experiments.multitask import multitask, sharing_effects
from tl_lab.experiments.parameter_efficiency import parameter_efficiency
from tl_lab.experiments.results import ExperimentResult, format_table, pivot_table

__all__ = ["EfficiencyResult", "ExperimentResult", "data_efficiency", "domain_shift", "forgetting", "format_table",
           "freeze_sweep", "kendall_tau", "multitask", "negative_transfer", "parameter_efficiency", "pivot_table", "rank_backbones",
           "RankingResult", "sharing_effects", "verify_ranking", "shots_to_reach"]
