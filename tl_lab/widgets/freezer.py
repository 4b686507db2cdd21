"""StageFreezer: decide which stages train, how BatchNorm behaves, and at what learning rate, with the counts in view.

One button per stage, in forward order. Clicking a frozen stage unfreezes it and everything after it; clicking the
first trainable stage freezes it (training starts one stage later). The head always trains. The parameter totals,
the per-stage table and the resulting :class:`~tl_lab.training.freeze.FreezePlan` update on every change; nothing here counts
parameters itself (``FreezePlan.summary`` does).

Example::

    >>> freezer = StageFreezer("efficientnet_lite0")
    >>> freezer.set_trainable_from("stage6")
    >>> freezer.plan
    FreezePlan(trainable_from='stage6', bn='frozen', lr_mult=...)
    >>> freezer.trainable == freezer.plan.summary(freezer.backbone).trainable
    True
"""

from __future__ import annotations

import ipywidgets as W

from tl_lab.backbones.registry import Backbone, load_backbone
from tl_lab.training.freeze import BODY, FreezePlan
from tl_lab.training.recipes import RECIPES
from tl_lab.widgets.common import StatusLine, fmt_int, guarded
from tl_lab.widgets.state import LabState

__all__ = ["StageFreezer", "BN_CHOICES", "FINE_TUNE_BODY_LR"]

FINE_TUNE_BODY_LR = float(RECIPES["fine_tune"].plan.lr_mult.get(BODY, 1.0))
"""The body's learning-rate factor of the fine-tune recipe: the default once pretrained stages train."""

BN_CHOICES = (
    ("frozen: only trainable stages update", "frozen"),
    ("eval: none update (safest, few-shot)", "eval"),
    ("train: all re-estimate (the pitfall)", "train"),
)
# A dropdown shows its option on one line and cuts what does not fit; the full sentence goes below it.
BN_HINTS = {
    "frozen": "Frozen stages keep their ImageNet statistics; trainable stages update theirs from your batches.",
    "eval": "Every BatchNorm keeps its ImageNet statistics: the safest choice for few-shot fine-tuning.",
    "train": "Every BatchNorm re-estimates its statistics from your batches, frozen stages too: the pitfall "
             "(frozen layers drift away from the weights that expect ImageNet's statistics).",
}


PARAM_OPTIONS = (("everything (full fine-tuning of those stages)", "all"),
                 ("BatchNorm scale and shift only (Frankle et al. 2021)", "norm"),
                 ("biases only (BitFit)", "bias"),
                 ("LoRA, rank 4 (needs tl-lab[peft] to train)", "lora:4"),
                 ("LoRA, rank 8 (needs tl-lab[peft] to train)", "lora:8"),
                 ("LoRA, rank 16 (needs tl-lab[peft] to train)", "lora:16"))
"""The freezer's "what trains" menu: ``FreezePlan.params`` (and ``lora_rank`` after the colon)."""

PARAM_NEEDS = {
    "norm": "it trains the BatchNorm scale and shift inside the trainable body stages",
    "bias": "it trains the biases inside the trainable body stages",
    "lora": "LoRA adapts the body's layers (small low-rank matrices beside their frozen weights)",
}
"""Why each "what trains" choice needs trainable body stages (said when only the head trains)."""

class StageFreezer(W.VBox):
    """Toggle stages, pick the BatchNorm policy and LR multipliers; ``.plan`` is the resulting FreezePlan.

    ``backbone``: a Backbone, or a registered name (then a random-init copy is built just for counting: no network
    needed). ``num_classes``: the size of the new head the counts assume (default: the shared dataset's classes
    with a ``state``, else ImageNet's 1000). With a shared ``state`` the plan is written to ``state.plan`` and the
    freezer follows ``state.backbone_name``.
    """

    def __init__(self, backbone: Backbone | str = "efficientnet_lite0", plan: FreezePlan | None = None, *,
                 num_classes: int | None = None, state: LabState | None = None) -> None:
        self.state = state
        if num_classes is None and state is not None:
            num_classes = len(state.data().classes)
        self.num_classes = num_classes
        self.status = StatusLine("")
        self.stage_row = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.bn = W.Dropdown(options=BN_CHOICES, value="frozen", description="BatchNorm",
                             layout=W.Layout(width="400px"), style={"description_width": "90px"})
        self.bn.add_class("tl-bn-policy")
        self.bn_hint = W.HTML(layout=W.Layout(margin="0 0 4px 94px"))
        self.bn_hint.add_class("tl-bn-hint")
        self.body_lr = W.FloatLogSlider(value=1.0, base=10, min=-3, max=0, step=0.25, description="body LR ×",
                                        readout_format=".3g", style={"description_width": "90px"},
                                        layout=W.Layout(width="420px"),
                                        tooltip="learning-rate factor for every trainable stage except the head")
        self.params = W.Dropdown(options=PARAM_OPTIONS, value="all", description="what trains",
                                 layout=W.Layout(width="620px"), style={"description_width": "90px"},
                                 tooltip="inside the trainable stages (the head always trains whole)")
        self.stage_lr_box = W.GridBox(layout=W.Layout(grid_template_columns="repeat(4, 190px)"))
        self.count = W.HTML()
        self.count.add_class("tl-trainable-count")
        self.table = W.HTML()
        advanced = W.Accordion(children=[W.VBox([
            W.HTML("Per-stage learning-rate factors override <i>body LR ×</i> (0 freezes a stage's weights)."),
            self.stage_lr_box])], titles=("per-stage learning rates",))
        advanced.selected_index = None
        super().__init__(children=[
            W.HTML("<b>Which stages learn?</b> Click a stage to train it and every stage after it; click the first "
                   "green one to freeze it again. Frozen stages keep their ImageNet weights."),
            self.stage_row, self.count, self.params, self.bn, self.bn_hint, self.body_lr, advanced, self.table, self.status,
        ])
        self.add_class("tl-stage-freezer")
        self.backbone: Backbone = None  # type: ignore[assignment]
        self._set_backbone(backbone)
        self._trainable_from: str | None = self.backbone.head
        self._body_lr_chosen = False  # set once the learner (or a given plan) chose the body's LR factor
        self._note = ""
        if plan is not None:
            self.set_plan(plan)
        self.body_lr.observe(self._body_lr_typed, names="value")  # first: a typed factor is the learner's choice
        for w in (self.bn, self.body_lr, self.params):
            w.observe(self._changed, names="value")
        if state is not None:
            state.observe(self._on_state_backbone, names="backbone_name")
        self._update()

    # ---- public ---------------------------------------------------------------------------------------------
    @property
    def plan(self) -> FreezePlan:
        lr_mult = {}
        if self.body_lr.value != 1.0:
            lr_mult[BODY] = round(float(self.body_lr.value), 6)
        for w in self.stage_lr_box.children:
            if w.value is not None and w.value >= 0 and w.value != 1.0 and w.description in self.backbone.stages:
                lr_mult[w.description] = float(w.value)
        # inside the trainable stages: all, norm, bias or LoRA (only the head trains whole: no choice to make)
        choice = "all" if self._trainable_from == self.backbone.head else self.params.value
        params, _, rank = choice.partition(":")
        return FreezePlan(trainable_from=self._trainable_from, bn=self.bn.value, lr_mult=lr_mult, params=params,
                          lora_rank=int(rank) if rank else None)

    @property
    def trainable(self) -> int:
        return self.plan.summary(self.backbone).trainable

    def set_trainable_from(self, stage: str | None) -> None:
        """Make ``stage`` and every later stage trainable (None: all of them)."""
        if stage is not None and stage not in self.backbone.stages:
            raise ValueError(f"unknown stage {stage!r}; choose one of: {', '.join(self.backbone.stages)}")
        self._trainable_from = None if stage == self.backbone.stages[0] else stage
        self._default_body_lr()
        self._update()

    def set_plan(self, plan: FreezePlan) -> None:
        plan.validate(self.backbone)
        self._body_lr_chosen = True
        self._trainable_from = plan.trainable_from
        self.bn.value = plan.bn
        choice = f"lora:{plan.lora_rank}" if plan.params == "lora" else plan.params
        if choice not in [v for _, v in self.params.options]:
            self.params.options = [*self.params.options, (f"LoRA, rank {plan.lora_rank}", choice)]
        self.params.value = choice
        self.body_lr.value = float(plan.lr_mult.get(BODY, 1.0))
        for w in self.stage_lr_box.children:
            w.value = float(plan.lr_mult.get(w.description, 1.0))
        self._update()

    # ---- wiring ---------------------------------------------------------------------------------------------
    def _set_backbone(self, backbone: Backbone | str) -> None:
        if isinstance(backbone, str):
            # Counting needs only the architecture; a random-init copy never needs the network.
            backbone = load_backbone(backbone, pretrained=False, num_classes=self.num_classes)
        self.backbone = backbone
        params = backbone.stage_parameters()
        buttons = []
        for stage in backbone.stages:
            b = W.Button(description=stage, tooltip=f"{stage}: {params[stage]:,} parameters",
                         layout=W.Layout(width="auto", min_width="72px"))
            b.add_class("tl-stage-toggle")
            b.on_click(guarded(self.status)(lambda _b, s=stage: self._clicked(s)))
            buttons.append(b)
        self.stage_row.children = buttons
        inputs = []
        for stage in backbone.stages:
            w = W.BoundedFloatText(value=1.0, min=0.0, max=10.0, step=0.1, description=stage,
                                   style={"description_width": "80px"}, layout=W.Layout(width="180px"))
            w.observe(self._changed, names="value")
            inputs.append(w)
        self.stage_lr_box.children = inputs

    def _on_state_backbone(self, change: dict) -> None:
        guarded(self.status)(self._switch)(change["new"])

    def _switch(self, name: str) -> None:
        was_head = self._trainable_from == self.backbone.head
        self._set_backbone(name)
        if was_head or (self._trainable_from is not None and self._trainable_from not in self.backbone.stages):
            self._trainable_from = self.backbone.head
        self._update()

    def _clicked(self, stage: str) -> None:
        stages = self.backbone.stages
        first = stages[0] if self._trainable_from is None else self._trainable_from
        if stage == first and stage != self.backbone.head:
            self._trainable_from = stages[stages.index(stage) + 1]  # freeze it: training starts one stage later
        elif stage == stages[0]:
            self._trainable_from = None
        else:
            self._trainable_from = stage
        self._default_body_lr()
        self._update()

    def _default_body_lr(self) -> None:
        """Once pretrained stages train, their steps default to the fine-tune recipe's fraction of the head's: at
        the head's full rate they forget what ImageNet taught them and few-shot training turns unstable."""
        self._note = ""
        if self._trainable_from == self.backbone.head or self._body_lr_chosen:
            return
        if self.body_lr.value != FINE_TUNE_BODY_LR:
            self._setting_default = True
            try:
                self.body_lr.value = FINE_TUNE_BODY_LR
            finally:
                self._setting_default = False
        self._note = (f"body LR × is {FINE_TUNE_BODY_LR:g}, the fine-tune recipe's: pretrained stages take smaller "
                      "steps than the new head, or they lose what ImageNet taught them. Change it to try another.")

    def _body_lr_typed(self, _change: dict) -> None:
        if not getattr(self, "_setting_default", False):
            self._body_lr_chosen = True
            self._note = ""

    def _unused_params_note(self) -> str:
        """Why the "what trains" choice changes nothing while only the head trains, and the stages it needs."""
        params = self.params.value.partition(":")[0]
        if params == "all" or self._trainable_from != self.backbone.head:
            return ""
        label = dict((v, k) for k, v in self.params.options).get(self.params.value, self.params.value).split(" (")[0]
        last = self.backbone.body_stages[-1]
        return (f"'{label}' changes nothing yet: {PARAM_NEEDS[params]}, but this plan trains only the head (which "
                f"always trains whole). Click a body stage (e.g. {last}, the last one) to train it and the stages "
                f"after it this way.")

    def _changed(self, _change: dict) -> None:
        guarded(self.status)(self._update)()

    def _update(self) -> None:
        plan = self.plan
        summary = plan.summary(self.backbone)
        trainable = {r.stage for r in summary.rows if r.trainable}
        for b in self.stage_row.children:
            on = b.description in trainable
            b.button_style = "success" if on else ""
            b.icon = "unlock" if on else "lock"
        pct = 100.0 * summary.trainable / max(summary.total, 1)
        self.count.value = (
            f'<div style="font-size:14px;margin:4px 0">Trainable: <b class="tl-trainable-value">'
            f'{fmt_int(summary.trainable)}</b> parameters ({pct:.1f}%) · frozen: <b class="tl-frozen-value">'
            f'{fmt_int(summary.frozen)}</b> · plan: <i>{plan.describe()}</i> · head: '
            f'{self.num_classes or 1000} classes</div>'
        )
        self.table.value = summary._repr_html_()
        self.bn_hint.value = f'<span style="color:#555;font-size:12px">{BN_HINTS[self.bn.value]}</span>'
        unused = self._unused_params_note()
        self.status.set(unused or self._note, "warn" if unused else "info")
        if self.state is not None:
            self.state.plan = plan
