"""Keeping the old task while learning a new one: loss terms that pull the network back towards what it knew.

Fine-tuning on a new task (task B) moves the pretrained body and the ImageNet task (task A) is partly forgotten
(McCloskey & Cohen 1989). Each remedy here adds one term to the batch's loss, ``loss = CE_B + sum of terms``: a
:class:`RetainTerm` (a loss term of :mod:`tl_lab.training.terms`, ``term_<method>`` in the history); each has a
strength:

- **LwF**, Learning without Forgetting (Li & Hoiem 2016, ECCV/TPAMI): the original network's ImageNet outputs on
  the *new* images are the targets of a distillation term, ``KL(softmax(z0 / T) || softmax(z / T))`` with
  temperature ``T = 2``, where ``z`` is the ImageNet head (kept, frozen) applied to the current body's features.
  Li & Hoiem write it as a cross-entropy with soft targets (the same gradient; the KL is 0 at the start) and also
  train the old head after a warm-up; here the old head stays fixed.
- **EWC**, Elastic Weight Consolidation (Kirkpatrick et al. 2017, PNAS): ``(lambda / 2) sum_i F_i (w_i - w0_i)^2``,
  a pull back to the original weights ``w0`` weighted by the diagonal Fisher information ``F`` of the ImageNet
  task: ``F_i = mean_x (d log p(y_hat | x) / d w_i)^2`` with ``y_hat`` the original network's own ImageNet
  prediction for ``x`` (here: the new task's training images, since no ImageNet images ship offline; the paper
  averages over the old task's data and samples ``y`` from the model).
- **L2-SP** (Li, Grandvalet & Davoine 2018, ICML): ``(alpha / 2) ||w - w0||^2``, weight decay towards the
  pretrained weights instead of towards zero (the paper also drops ordinary weight decay on the body; tl_lab keeps
  the run's ``weight_decay``).

EWC's pull is stiff where the Fisher is large: with plain SGD it diverges once ``lr * lambda * max F > 2``
(measured on Lite0's stage7 with lr 0.05: lambda = 10 already did); AdamW's per-parameter step sizes keep it
stable. EWC and L2-SP cover the trainable body parameters (the new head has no pretrained counterpart). They need
``params="all"``, ``"norm"`` or ``"bias"``: LoRA's factors have no original value to pull towards.

Example::

    >>> import tl_lab
    >>> data = tl_lab.load_dataset("clipart", shots=10, image_size=64)
    >>> run = tl_lab.fit("efficientnet_lite0", data, plan=tl_lab.FreezePlan.fine_tune(),  # doctest: +SKIP
    ...                  retain=[tl_lab.Retain("lwf", 1.0)], progress=False)
    >>> run.history[-1]["term_lwf"], run.history[-1]["train_task_loss"]   # the term apart  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from tl_lab._eval_mode import eval_mode
from tl_lab.training.terms import Batch, LossTerm, Tap, TermContext

if TYPE_CHECKING:
    from tl_lab.training.freeze import FreezeSummary

__all__ = ["Remedy", "REMEDIES", "REMEDY_NAMES", "DEFAULT_STRENGTH", "Retain", "RetainTerm", "retain_terms", "check_remedies",
           "lwf_loss", "l2sp_penalty", "ewc_penalty", "diagonal_fisher"]

Remedy = Literal["lwf", "ewc", "l2sp"]
REMEDIES: tuple[str, ...] = get_args(Remedy)
DEFAULT_STRENGTH = {"lwf": 1.0, "ewc": 100.0, "l2sp": 0.1}
REMEDY_NAMES = {"lwf": "LwF", "ewc": "EWC", "l2sp": "L2-SP"}
"""How figures, tables and messages name each remedy."""


@dataclass(frozen=True)
class Retain:
    """One remedy and its strength (``lambda`` for LwF and EWC, ``alpha`` for L2-SP); ``temperature`` for LwF."""

    method: Remedy
    strength: float | None = None
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if self.method not in REMEDIES:
            raise ValueError(f"remedy must be one of {', '.join(map(repr, REMEDIES))}; got {self.method!r}")
        strength = DEFAULT_STRENGTH[self.method] if self.strength is None else self.strength
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not (
                math.isfinite(strength) and strength >= 0):
            raise ValueError(f"{self.method} strength must be a number >= 0; got {self.strength!r} (the default, "
                             f"{DEFAULT_STRENGTH[self.method]:g}, is a good start)")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (Li & Hoiem use 2); got {self.temperature!r}")
        object.__setattr__(self, "strength", float(strength))

    def label(self) -> str:
        return f"{self.method} {self.strength:g}"

    @classmethod
    def from_label(cls, label: str) -> Retain:
        """The remedy a :meth:`label` names (``"lwf 1"``, as ``run.config["retain"]`` records it)."""
        method, _, strength = label.partition(" ")
        return cls(method, float(strength) if strength else None)  # type: ignore[arg-type]


# ---- the terms, as formulas (tests check these against direct implementations) ------------------------------------


def lwf_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float = 2.0) -> torch.Tensor:
    """``mean_x KL(softmax(z0/T) || softmax(z/T))``: 0 when the student's old-task outputs equal the teacher's."""
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_q = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")


def l2sp_penalty(params: Iterable[tuple[str, torch.Tensor]], anchors: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(1/2) sum ||w - w0||^2`` over ``params`` named in ``anchors`` (multiply by ``alpha``)."""
    terms = [(w - anchors[name]).pow(2).sum() for name, w in params if name in anchors]
    return 0.5 * torch.stack(terms).sum() if terms else torch.zeros(())


def ewc_penalty(params: Iterable[tuple[str, torch.Tensor]], anchors: dict[str, torch.Tensor],
                fisher: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(1/2) sum F (w - w0)^2`` over ``params`` named in ``anchors`` (multiply by ``lambda``)."""
    terms = [(fisher[name] * (w - anchors[name]).pow(2)).sum() for name, w in params if name in anchors]
    return 0.5 * torch.stack(terms).sum() if terms else torch.zeros(())


def diagonal_fisher(model: nn.Module, inputs: Iterable[torch.Tensor], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """``F_i = mean_x (d log p(y_hat|x) / d w_i)^2`` for ``model``'s parameters ``names``, one image at a time.

    ``y_hat`` is the model's own top prediction for ``x``; ``inputs`` yields batches (split into single images
    here, since the Fisher squares each image's gradient). The model is used in eval mode.
    """
    params = dict(model.named_parameters())
    chosen = {n: params[n] for n in names}
    was = {n: p.requires_grad for n, p in params.items()}
    for n, p in params.items():
        p.requires_grad_(n in chosen)
    fisher = {n: torch.zeros_like(p) for n, p in chosen.items()}
    seen = 0
    with eval_mode(model):
        try:
            for batch in inputs:
                for x in batch.split(1):
                    log_p = F.log_softmax(model(x).float(), dim=1)
                    grads = torch.autograd.grad(log_p[0, log_p[0].argmax()], list(chosen.values()), allow_unused=True)
                    for n, g in zip(chosen, grads):
                        if g is not None:
                            fisher[n] += g.detach().pow(2)
                    seen += 1
        finally:
            for n, p in params.items():
                p.requires_grad_(was[n])
    return {n: f / max(seen, 1) for n, f in fisher.items()}


# ---- what fit uses ----------------------------------------------------------------------------------------------


def check_remedies(remedies: Sequence[Retain | str] | Retain | str | None, layout: "FreezeSummary", *,
                   pretrained: bool = True) -> tuple[Retain, ...]:
    """``remedies`` as :class:`Retain` objects, or a ValueError naming the fix when the run cannot use them.

    The checks fit makes before it builds anything (and that a widget can make before it starts a run): a remedy
    keeps a pretrained body close to what it knew, so it needs ``pretrained`` weights and a plan (``layout``, a
    :class:`~tl_lab.training.freeze.FreezeSummary`) that trains at least one body stage; EWC and L2-SP also need
    weights with pretrained values (not LoRA's new factors).

        >>> check_remedies("lwf", FreezePlan.fine_tune().summary(load_backbone()))
        (Retain(method='lwf', strength=1.0, temperature=2.0),)
    """
    if remedies is None:
        return ()
    if isinstance(remedies, (str, Retain)):
        remedies = [remedies]
    remedies = tuple(r if isinstance(r, Retain) else Retain(r) for r in remedies)
    if not remedies:
        return ()
    names = " and ".join(dict.fromkeys(REMEDY_NAMES[r.method] for r in remedies))
    if not pretrained:
        raise ValueError(f"{names} keeps what a pretrained network knew, but this network starts from random "
                         "weights (from scratch): it never learnt ImageNet, so there is no old task to keep; train "
                         "a pretrained network, or use no remedy")
    head = layout.rows[-1].stage
    if not any(r.trainable for r in layout.rows if r.stage != head):
        raise ValueError(f"{names} holds the body back while it trains, but this plan trains only the head: the "
                         "body keeps its ImageNet weights, so nothing of the old task can be forgotten; unfreeze "
                         "some body stages (e.g. the fine-tune plan), or use no remedy")
    if any(r.method in ("ewc", "l2sp") for r in remedies) and layout.plan.params == "lora":
        raise ValueError("EWC and L2-SP pull weights back to their pretrained values, but LoRA (params='lora') "
                         "trains new low-rank factors that have none; use LwF with LoRA, or train all weights, "
                         "the norms or the biases (params='all', 'norm' or 'bias')")
    return remedies


class _Teacher(nn.Module):
    """The network as it was before training, with its ImageNet head: what LwF distils and EWC's Fisher uses."""

    def __init__(self, model: nn.Module, start: str | None, pooled: bool, head: str, imagenet: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model)
        self.model.get_submodule(head).classifier = copy.deepcopy(imagenet)
        self.start, self.pooled, self.head = start, pooled, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooled:
            return self.model.get_submodule(self.head).classifier(x)
        return self.model.forward_range(x, start=self.start)


class RetainTerm(LossTerm):
    """One remedy as a loss term of the loop (:mod:`tl_lab.training.terms`): ``strength * term`` each batch.

    :meth:`setup` runs once in ``fit`` after the plan is applied: it records the original trainable body weights
    (the anchors) and, for LwF and EWC, copies the original network with its ImageNet head (the teacher) and, for
    EWC, their Fisher information on the training images. LwF reads the current body's features from the input of
    the head's classifier, tapped by the loop during its own forward pass, so it costs one extra (no-grad) forward
    of the teacher per batch and no second forward of the student. ``last`` holds the latest batch's value.
    """

    def __init__(self, remedy: Retain | str) -> None:
        self.remedy = remedy if isinstance(remedy, Retain) else Retain(remedy)
        self.name = self.remedy.method
        self.taps: tuple[Tap, ...] = ()
        self.teacher: _Teacher | None = None
        self.imagenet: nn.Module | None = None
        self.fisher: dict[str, torch.Tensor] | None = None
        self.anchors: dict[str, torch.Tensor] = {}
        self.model: nn.Module | None = None
        self.last = float("nan")

    def setup(self, ctx: TermContext) -> None:
        backbone, layout, feed = ctx.backbone, ctx.layout, ctx.feed
        check_remedies([self.remedy], layout, pretrained=backbone.meta.get("pretrained", True))
        model = self.model = backbone.model
        body = tuple(f"{s}." for s in layout.trainable_stages if s != backbone.head)
        names = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith(body)]
        self.anchors = {n: p.detach().clone() for n, p in model.named_parameters() if n in set(names)}
        if self.remedy.method == "l2sp":
            return
        from tl_lab.backbones.registry import load_backbone

        reference = load_backbone(backbone.name)
        if reference.meta.get("categories") is None:
            raise ValueError(f"LwF and EWC need the original ImageNet head; {backbone.name} has none "
                             "(use 'l2sp', or a backbone with ImageNet weights)")
        device = next(model.parameters()).device
        self.imagenet = reference.model.get_submodule(reference.head).classifier.to(device).eval()
        for p in self.imagenet.parameters():
            p.requires_grad_(False)
        self.teacher = _Teacher(model, feed.suffix.start, feed.suffix.classifier is not None, backbone.head,
                                self.imagenet).to(device).eval()
        if self.remedy.method == "ewc":
            n = len(feed.data.train)
            batches = (feed.inputs("train", torch.arange(i, min(i + 32, n)), step=0) for i in range(0, n, 32))
            fisher = diagonal_fisher(self.teacher, batches, ["model." + k for k in names])
            self.fisher = {k[len("model."):]: v for k, v in fisher.items()}
            self.teacher = None  # EWC needed the teacher for its Fisher only
        else:
            self.taps = (Tap(f"{backbone.head}.classifier", "input"),)  # the pooled features the head reads
        for p in (self.teacher.parameters() if self.teacher is not None else ()):
            p.requires_grad_(False)

    def loss(self, batch: Batch) -> torch.Tensor:
        """``strength`` times the remedy's term for this batch (after the student's forward on ``batch.inputs``)."""
        r = self.remedy
        if r.method == "lwf":
            with torch.no_grad():
                target = self.teacher(batch.inputs)
            term = lwf_loss(self.imagenet(batch.taps[self.taps[0]].float()), target, temperature=r.temperature)
        else:
            params = [(n, p) for n, p in self.model.named_parameters() if n in self.anchors]
            term = (l2sp_penalty(params, self.anchors) if r.method == "l2sp"
                    else ewc_penalty(params, self.anchors, self.fisher))
        term = r.strength * term.to(batch.logits.device)
        self.last = float(term.detach())
        return term

    def config(self) -> dict:
        r = self.remedy
        return {"kind": "retain", "name": self.name, "label": r.label(), "method": r.method, "strength": r.strength,
                "temperature": r.temperature}

    @classmethod
    def from_config(cls, config: dict) -> RetainTerm:
        if "method" in config:
            return cls(Retain(config["method"], config["strength"], config.get("temperature", 2.0)))
        return cls(Retain.from_label(config["label"]))

    def close(self) -> None:
        self.teacher = self.imagenet = None


def retain_terms(remedies: Sequence[Retain | str] | Retain | str | None) -> list[RetainTerm]:
    """``fit(retain=...)`` as loss terms, one per remedy (their names ``lwf``, ``ewc``, ``l2sp`` must differ)."""
    if remedies is None:
        return []
    if isinstance(remedies, (str, Retain)):
        remedies = [remedies]
    return [RetainTerm(r) for r in remedies]
