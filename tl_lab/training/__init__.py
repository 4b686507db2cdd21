"""Training: the one loop (:func:`fit`), its loss terms (:class:`LossTerm`: :mod:`tl_lab.training.terms`), freeze
plans, events and stop tokens, checkpoints, device choice, the frozen-prefix feature cache, :class:`Run` and the
named recipes. Imports :mod:`tl_lab.data` and
:mod:`tl_lab.backbones`, nothing above."""

from tl_lab.training.events import (
           BatchEnd,
           Callback,
           EpochEnd,
           FitEnd,
           FitStart,
           StopCause,
           Stopped,
           StopToken,
)
from tl_lab.training.freeze import FreezePlan, FreezeSummary
from tl_lab.training.loop import fit
from tl_lab.training.recipes import RECIPES, Recipe
from tl_lab.training.run import Run
from tl_lab.training.settings import FitSettings
from tl_lab.training.terms import Batch, LossTerm, Tap, TermContext, register_term

__all__ = ["RECIPES", "Batch", "BatchEnd", "Callback", "EpochEnd", "FitEnd", "FitStart", "FreezePlan", "FreezeSummary",
           "FitSettings", "LossTerm", "Recipe", "Run", "StopCause", "StopToken", "Stopped", "Tap", "TermContext", "fit",
           "register_term"]
