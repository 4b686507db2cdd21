"""Freeze plans: which stages train, what BatchNorm does, and each stage's learning rate.

A :class:`FreezePlan` is a small, immutable description; ``plan.apply(backbone)`` sets ``requires_grad``, locks the
frozen stages in eval mode (so their BatchNorm running statistics and dropout stay fixed even under
``model.train()``) and returns optimizer parameter groups, one per trainable stage. ``plan.summary(backbone)``
reports exactly what that means, stage by stage, as a table a lesson can print.

Example::

    >>> from tl_lab import FreezePlan, load_backbone
    >>> bb = load_backbone(num_classes=10)
    >>> plan = FreezePlan(trainable_from="stage7", lr_mult={"stage7": 0.1})
    >>> groups = plan.apply(bb, lr=1e-3)          # [{'stage': 'stage7', 'lr': 1e-4, ...}, ...]
    >>> print(plan.summary(bb))                   # per-stage table with trainable/frozen totals
    efficientnet_lite0: train from stage7 (LR stage7×0.1)
    stage         parameters     trains  status    BatchNorm    LR x
    ----------------------------------------------------------------
    stem                 928          0  frozen    fixed           -
    ...
    stage7           605,440    605,440  trainable updating      0.1
    conv_head        412,160    412,160  trainable updating        1
    head              12,810     12,810  trainable -               1
    ----------------------------------------------------------------
    trainable 1,030,410 (30.5%)   frozen 2,353,408   total 3,383,818

Why BatchNorm gets its own switch: a frozen stage whose BatchNorm layers are left in train mode keeps re-estimating
its statistics from tiny target batches, so the "frozen" features drift under the head (measured on 10-shot digits
with the PyTorch tutorial recipe: 0.496 test accuracy instead of 0.778). ``bn="train"`` exists so a lesson can show it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, get_args

from torch import nn

from tl_lab.training.peft_params import PARAM_CHOICES, ParamChoice, add_lora, chosen_parameters, count_chosen

if TYPE_CHECKING:
    from tl_lab.backbones.registry import Backbone

__all__ = ["FreezePlan", "FreezeSummary", "StageRow", "BNPolicy", "ParamChoice"]

BNPolicy = Literal["frozen", "eval", "train"]
_BN_POLICIES = get_args(BNPolicy)
BODY = "body"  # lr_mult key meaning "every stage except the head"


@dataclass(frozen=True)
class StageRow:
    """One stage under a plan: the single place its freezing, BatchNorm mode and LR factor are decided."""

    stage: str
    parameters: int
    trainable: bool
    bn: str  # "fixed" (eval, statistics frozen), "updating" (train mode), or "-" when the stage has no BatchNorm
    lr_mult: float
    bn_train: bool = False  # its BatchNorm layers run in train mode (re-estimate statistics) while training
    trains: int | None = None  # parameters that train inside the stage (None: all of them, ``parameters``)
    params: str = "all"  # what trains inside the stage: "all", "norm", "bias" or "lora" (frozen stages: "all")

    @property
    def trainable_count(self) -> int:
        """The exact number of parameters this stage trains (0 when frozen; LoRA counts its added factors)."""
        if not self.trainable:
            return 0
        return self.parameters if self.trains is None else self.trains


@dataclass(frozen=True)
class FreezeSummary:
    """What a plan does to a backbone, stage by stage. ``str()`` gives a table; notebooks render it as HTML."""

    backbone: str
    plan: "FreezePlan"
    rows: tuple[StageRow, ...]

    @property
    def trainable(self) -> int:
        """Parameters the optimizer updates (with LoRA: the low-rank factors, not the frozen weights they adapt)."""
        return sum(r.trainable_count for r in self.rows)

    @property
    def frozen(self) -> int:
        """Pretrained parameters left unchanged (inside trainable stages too, for norm/bias/LoRA)."""
        return sum(r.parameters for r in self.rows) - sum(r.trainable_count for r in self.rows if r.params != "lora")

    @property
    def total(self) -> int:
        """The pretrained model's parameters (LoRA's added factors are not counted: they merge into the weights)."""
        return sum(r.parameters for r in self.rows)

    @property
    def trainable_stages(self) -> tuple[str, ...]:
        """The stages whose parameters train (a multiplier of 0 freezes a stage), in forward order."""
        return tuple(r.stage for r in self.rows if r.trainable)

    @property
    def changing_stages(self) -> tuple[str, ...]:
        """The stages whose state can change while training: trainable parameters or BatchNorm statistics."""
        return tuple(r.stage for r in self.rows if r.trainable or r.bn_train)

    def apply(self, model: nn.Module, *, lr: float | None = None) -> list[dict]:
        """Act on the decisions in the rows: ``requires_grad``, eval-mode locks, one optimizer group per stage.

        Each group is ``{"params": [...], "stage": name, "lr_mult": m}`` plus ``"lr": lr * m`` when ``lr`` is given.
        A frozen stage is locked in eval mode whole, except its BatchNorm layers when they re-estimate statistics
        (``bn="train"``); a trainable stage whose statistics stay fixed (``bn="eval"``) has its BatchNorm locked.
        """
        locked: list[nn.Module] = []
        groups = []
        lora_stages = [r.stage for r in self.rows if r.trainable and r.params == "lora"]
        if lora_stages:
            add_lora(model, lora_stages, rank=self.plan.lora_rank)
        for row in self.rows:
            module = model.get_submodule(row.stage)
            for p in module.parameters():
                p.requires_grad_(False)
            chosen = chosen_parameters(module, row.params) if row.trainable else []
            for p in chosen:
                p.requires_grad_(True)
            if not row.trainable:
                locked.extend(m for m in module.modules() if not (row.bn_train and _is_batchnorm(m)))
            elif not row.bn_train:
                locked.extend(_batchnorms(module))
            params = chosen
            if params:
                group = {"params": params, "stage": row.stage, "lr_mult": row.lr_mult}
                if lr is not None:
                    group["lr"] = lr * row.lr_mult
                groups.append(group)
        model.lock_eval(locked)
        return groups

    def __str__(self) -> str:
        head = f"{'stage':<12}{'parameters':>12}{'trains':>11}  {'status':<10}{'BatchNorm':<11}{'LR x':>6}"
        lines = [f"{self.backbone}: {self.plan.describe()}", head, "-" * len(head)]
        for r in self.rows:
            lr = f"{r.lr_mult:g}" if r.trainable else "-"
            lines.append(f"{r.stage:<12}{r.parameters:>12,}{r.trainable_count:>11,}  {_status(r):<10}{r.bn:<11}{lr:>6}")
        lines.append("-" * len(head))
        pct = 100.0 * self.trainable / max(self.total, 1)
        lines.append(f"trainable {self.trainable:,} ({pct:.1f}%)   frozen {self.frozen:,}   total {self.total:,}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td>{r.stage}</td><td style='text-align:right'>{r.parameters:,}</td>"
            f"<td style='text-align:right'>{r.trainable_count:,}</td>"
            f"<td>{_status(r)}</td><td>{r.bn}</td>"
            f"<td>{f'{r.lr_mult:g}' if r.trainable else '-'}</td></tr>"
            for r in self.rows
        )
        return (
            f"<p><b>{self.backbone}</b>: {self.plan.describe()}</p><table><tr><th>stage</th><th>parameters</th>"
            f"<th>trains</th><th>status</th><th>BatchNorm</th><th>LR ×</th></tr>{cells}</table>"
            f"<p>trainable {self.trainable:,} · frozen {self.frozen:,} · total {self.total:,}</p>"
        )


@dataclass(frozen=True)
class FreezePlan:
    """Which stages train and how.

    Args:
        trainable_from: the first trainable stage; it and every later stage train, earlier ones are frozen.
            ``"head"`` trains only the classifier (a linear probe on frozen features); ``None`` trains everything.
        bn: ``"frozen"`` (default): BatchNorm in frozen stages keeps its pretrained statistics, trainable stages
            update theirs. ``"eval"``: every BatchNorm layer keeps its statistics (trainable stages still learn
            their BN scale and shift) - the safest choice for fine-tuning on a few images. ``"train"``: every
            BatchNorm layer re-estimates statistics from the target batches, frozen stages included (the pitfall).
        lr_mult: learning-rate factor per stage name (``"body"`` = every stage but the head); default 1.
        params: what trains inside the trainable body stages (the head always trains whole; see
            :mod:`tl_lab.training.peft_params`): ``"all"`` (default), ``"norm"`` (BatchNorm scale and shift only,
            Frankle et al. 2021), ``"bias"`` (every bias, BitFit: Ben Zaken et al. 2022) or ``"lora"`` (low-rank
            updates ``W + B A`` of convolutions and linear layers, Hu et al. 2022, through the ``peft`` library).
        lora_rank: the rank ``r`` of LoRA's factors (only with ``params="lora"``; default 8).

    Example (parameter-efficient)::

        >>> plan = FreezePlan(trainable_from=None, params="bias")   # BitFit: biases + head train
        >>> plan.summary(load_backbone(num_classes=10)).trainable   # exact count, see summary()
        33818
    """

    trainable_from: str | None = "head"
    bn: BNPolicy = "frozen"
    lr_mult: Mapping[str, float] = field(default_factory=dict)
    params: ParamChoice = "all"
    lora_rank: int | None = None

    def __post_init__(self) -> None:
        if self.bn not in _BN_POLICIES:
            raise ValueError(f"bn must be one of {', '.join(map(repr, _BN_POLICIES))}; got {self.bn!r}")
        if self.params not in PARAM_CHOICES:
            raise ValueError(f"params must be one of {', '.join(map(repr, PARAM_CHOICES))}; got {self.params!r}")
        if self.params != "all" and self.trainable_from == "head":
            raise ValueError(f"params={self.params!r} chooses what trains inside the trainable body stages, but "
                             "trainable_from='head' trains only the head; choose an earlier stage (or None) with it, "
                             "or params='all'")
        if self.lora_rank is not None and self.params != "lora":
            raise ValueError(f"lora_rank is for params='lora'; got params={self.params!r} (drop lora_rank or use "
                             "params='lora')")
        if self.params == "lora":
            rank = 8 if self.lora_rank is None else self.lora_rank
            if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
                raise ValueError(f"lora_rank must be a whole number >= 1 (e.g. 4, 8, 16); got {self.lora_rank!r}")
            if self.bn == "train":
                raise ValueError("params='lora' keeps the pretrained network fixed, but bn='train' re-estimates "
                                 "every BatchNorm statistic from the new batches; use bn='frozen' or bn='eval'")
            object.__setattr__(self, "lora_rank", rank)
        for stage, mult in self.lr_mult.items():
            if not isinstance(mult, (int, float)) or mult < 0:
                raise ValueError(f"lr_mult[{stage!r}] must be a number >= 0, got {mult!r}")
        object.__setattr__(self, "lr_mult", MappingProxyType(dict(self.lr_mult)))

    @classmethod
    def frozen_head(cls) -> "FreezePlan":
        """Train only the classifier on frozen pretrained features (fast: the body's outputs are cached)."""
        return cls(trainable_from="head")

    @classmethod
    def fine_tune(cls, *, body_lr_mult: float = 0.1, bn: BNPolicy = "eval") -> "FreezePlan":
        """Train everything, the body at ``body_lr_mult`` times the head's rate, BatchNorm statistics fixed.

        The recipe measured to work on few-shot data (10-shot digits, Lite0: 0.91 with AdamW, head LR 3e-3, body
        3e-4, one-cycle, 30 epochs); with BatchNorm re-estimating statistics from batches of ten images, or with
        10x the rates, it does much worse.
        """
        return cls(trainable_from=None, bn=bn, lr_mult={BODY: body_lr_mult})

    def to_dict(self) -> dict:
        """JSON-able form, stored in a Run's config; ``FreezePlan(**d)`` rebuilds it."""
        d = {"trainable_from": self.trainable_from, "bn": self.bn, "lr_mult": dict(self.lr_mult)}
        if self.params != "all":
            d.update(params=self.params, lora_rank=self.lora_rank)
        return d

    # ---- queries -------------------------------------------------------------------------------------------
    def trainable_stages(self, backbone: "Backbone") -> tuple[str, ...]:
        self.validate(backbone)
        if self.trainable_from is None:
            return backbone.stages
        return backbone.stages[backbone.stages.index(self.trainable_from) :]

    def frozen_stages(self, backbone: "Backbone") -> tuple[str, ...]:
        trainable = self.trainable_stages(backbone)
        return tuple(s for s in backbone.stages if s not in trainable)

    def stage_lr_mult(self, backbone: "Backbone", stage: str) -> float:
        if stage in self.lr_mult:
            return float(self.lr_mult[stage])
        if stage != backbone.head and BODY in self.lr_mult:
            return float(self.lr_mult[BODY])
        return 1.0

    def validate(self, backbone: "Backbone") -> None:
        valid = ", ".join(backbone.stages)
        if self.trainable_from is not None and self.trainable_from not in backbone.stages:
            raise ValueError(f"unknown stage {self.trainable_from!r} for {backbone.name}; valid stages: {valid}")
        for stage in self.lr_mult:
            if stage != BODY and stage not in backbone.stages:
                raise ValueError(f"lr_mult names unknown stage {stage!r} for {backbone.name}; valid stages: {valid}, body")

    def describe(self) -> str:
        """A short label for run tables and legends, e.g. ``"frozen to head"`` or ``"train from stage6"``."""
        if self.trainable_from is None:
            where = "fine-tune all"
        elif self.trainable_from == "head":
            where = "frozen to head"
        else:
            where = f"train from {self.trainable_from}"
        extras = [] if self.bn == "frozen" else [f"BN {self.bn}"]
        if self.params != "all":
            extras.insert(0, f"LoRA rank {self.lora_rank}" if self.params == "lora" else f"{self.params} only")
        if self.lr_mult:
            extras.append("LR " + ", ".join(f"{k}×{v:g}" for k, v in self.lr_mult.items()))
        return where + (f" ({'; '.join(extras)})" if extras else "")

    # ---- actions -------------------------------------------------------------------------------------------
    def apply(self, backbone: "Backbone", *, lr: float | None = None) -> list[dict]:
        """Set ``requires_grad`` and BatchNorm modes on ``backbone.model``; return optimizer parameter groups.

        Each group is ``{"params": [...], "stage": name, "lr_mult": m}`` plus ``"lr": lr * m`` when ``lr`` is given.
        Stages with no trainable parameters (or a multiplier of 0) are left out, and their parameters frozen.
        The same as ``plan.summary(backbone).apply(backbone.model, lr=lr)``: the summary holds every decision.
        """
        return self.summary(backbone).apply(backbone.model, lr=lr)

    def summary(self, backbone: "Backbone") -> FreezeSummary:
        """Decide, stage by stage, what trains, at which LR factor, and whether its BatchNorm statistics move."""
        trainable = set(self.trainable_stages(backbone))
        rows = []
        for stage in backbone.stages:
            module = backbone.model.get_submodule(stage)
            mult = self.stage_lr_mult(backbone, stage)
            train_it = stage in trainable and mult > 0
            # "train": every BatchNorm re-estimates; "frozen": only trainable stages'; "eval": none.
            bn_train = self.bn == "train" or (train_it and self.bn == "frozen")
            bn = "-" if not _batchnorms(module) else ("updating" if bn_train else "fixed")
            params = self.params if stage != backbone.head else "all"  # the head always trains whole
            base = sum(p.numel() for n, p in module.named_parameters() if not _is_lora_name(n))
            trains = None if params == "all" else count_chosen(module, params, rank=self.lora_rank)
            rows.append(StageRow(stage, base, train_it, bn, mult, bn_train, trains, params if train_it else "all"))
        return FreezeSummary(backbone.name, self, tuple(rows))


def _status(row: StageRow) -> str:
    if not row.trainable:
        return "frozen"
    return "trainable" if row.params == "all" else row.params


def _is_lora_name(name: str) -> bool:
    return "lora_" in name


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _batchnorms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if _is_batchnorm(m)]
