"""The Train tab's run settings: plan, forgetting remedy, epochs, head LR, batch size, augmentation.

Why: every box refuses what the run could not use and says so in the panel's status line (a bounded box or a slider
would silently clamp what was typed); the plan menu follows the Freeze tab's plan through the shared state. This
module holds the controls and turns them into ``fit``'s keyword arguments; the panel starts the run.

Example::

    >>> settings = RunSettings(LabState(), StatusLine())
    >>> settings.plan_choice.value = "fine_tune"; settings.chosen()[1]   # (plan, pretrained, default epochs)
    True
"""

from __future__ import annotations

import math

import ipywidgets as W

from tl_lab.training.freeze import FreezePlan
from tl_lab.training.recipes import RECIPES
from tl_lab.training.retention import Retain
from tl_lab.widgets.common import StatusLine
from tl_lab.widgets.keep_old_task import KeepOldTask
from tl_lab.widgets.state import LabState
from tl_lab.widgets.train_options import EPOCHS_RANGE, LR_RANGE, PLAN_CHOICES

__all__ = ["RunSettings"]

_NARROW = {"description_width": "110px"}
_BATCH_SIZES = (4, 8, 16, 32, 64)


class RunSettings(W.VBox):
    """Plan menu ("custom": ``plan`` given, or the Freeze tab's), remedy, epochs, LR, batch size, augment."""

    def __init__(self, state: LabState, status: StatusLine, *, plan: FreezePlan | None = None,
                 epochs: int | None = None, lr: float = 3e-3, batch_size: int = 16, augment: bool = False,
                 retain: Retain | str | None = None) -> None:
        self.state, self.status, self.custom_plan = state, status, plan
        self.plan_choice = W.Dropdown(options=self._plan_options(), description="plan", style=_NARROW,
                                      layout=W.Layout(width="620px"))
        self.plan_choice.add_class("tl-plan-choice")
        self.keep = KeepOldTask(status, retain)
        self.epochs = W.IntText(value=epochs or 0, description="epochs", style=_NARROW,
                                layout=W.Layout(width="190px"),
                                tooltip=f"0 = fit's default (100 for a head on cached features, else 30); "
                                        f"else {EPOCHS_RANGE[0]} to {EPOCHS_RANGE[1]}")
        self.epochs_hint = W.HTML("<span style='color:#666'>0 = auto</span>", layout=W.Layout(width="70px"))
        self.lr = W.FloatText(value=lr, description="head LR", style=_NARROW, layout=W.Layout(width="230px"),
                              tooltip=f"the new head's learning rate, {LR_RANGE[0]:g} to {LR_RANGE[1]:g}")
        self.lr_hint = W.HTML(f"<span style='color:#666'>{LR_RANGE[0]:g} to {LR_RANGE[1]:g}</span>",
                              layout=W.Layout(width="110px"))
        self.batch_size = W.Dropdown(options=list(_BATCH_SIZES), value=batch_size if batch_size in _BATCH_SIZES else 16,
                                     description="batch size", style=_NARROW, layout=W.Layout(width="220px"))
        self.augment = W.Checkbox(value=augment, description="augment (random flips and shifts; slower: no feature "
                                                             "cache)", indent=False, layout=W.Layout(width="520px"))
        self.epochs.observe(self._on_epochs, names="value")
        self.lr.observe(self._on_lr, names="value")
        state.observe(self._on_state_plan, names="plan")
        super().__init__(children=[self.plan_choice, self.keep, W.HBox([self.epochs, self.epochs_hint,
                                                                         self.batch_size]),
                                   W.HBox([self.lr, self.lr_hint]), self.augment])

    def chosen(self) -> tuple[FreezePlan, bool, int | None]:
        """(plan, pretrained, default epochs) of the selected plan choice."""
        choice = self.plan_choice.value
        if choice == "custom":
            return (self.custom_plan or self.state.plan), True, None
        recipe = RECIPES[choice]
        return recipe.plan, recipe.pretrained, (recipe.epochs if choice == "scratch" else None)

    def fit_kwargs(self, plan: FreezePlan, pretrained: bool, default_epochs: int | None,
                   retain: Retain | None) -> dict:
        """``fit``'s keyword arguments for a new run with these settings."""
        return dict(plan=plan, epochs=self.epochs.value or default_epochs, lr=float(self.lr.value),
                    batch_size=int(self.batch_size.value), augment=bool(self.augment.value), pretrained=pretrained,
                    retain=None if retain is None else [retain])

    def _plan_options(self) -> list[tuple[str, str]]:
        options = list(PLAN_CHOICES)
        if self.custom_plan is not None:
            options.insert(0, (f"as given: {self.custom_plan.describe()}", "custom"))
        elif self.state.plan != FreezePlan():
            options.insert(0, (f"from the Freeze tab: {self.state.plan.describe()}", "custom"))
        return options

    def _on_state_plan(self, change: dict) -> None:
        if self.custom_plan is not None:
            return
        # The learner just set a plan in the Freeze tab: that is the plan the next run uses.
        self.plan_choice.options = [(f"from the Freeze tab: {change['new'].describe()}", "custom"), *PLAN_CHOICES]
        self.plan_choice.value = "custom"

    def _on_epochs(self, change: dict) -> None:
        value = change["new"]
        if value != 0 and not EPOCHS_RANGE[0] <= value <= EPOCHS_RANGE[1]:
            self.epochs.value = change["old"]  # refused, and said so: never trained as something else
            self.status.set(f"epochs {value} is not allowed: type 0 for automatic (fit's default) or a number from "
                            f"{EPOCHS_RANGE[0]} to {EPOCHS_RANGE[1]}. Kept {change['old']}.", "warn")

    def _on_lr(self, change: dict) -> None:
        value = change["new"]
        if not (math.isfinite(value) and LR_RANGE[0] <= value <= LR_RANGE[1]):
            self.lr.value = change["old"]
            self.status.set(f"head LR {value:g} is not allowed: type a value from {LR_RANGE[0]:g} to "
                            f"{LR_RANGE[1]:g} (3e-3 is the default). Kept {change['old']:g}.", "warn")
