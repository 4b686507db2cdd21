"""The loss a run trains on: one objective plus a list of terms, each a small object the loop knows how to call.

``loss = objective(logits, labels) + sum(term.loss(batch) for term in terms)``

- The **objective** is what the labels ask for: :class:`CrossEntropy` (one head) or :class:`MultiTask` (one head
  per task on a shared body, :mod:`tl_lab.training.multitask`).
- A **term** is anything else added to the loss: the forgetting remedies (LwF, EWC, L2-SP:
  :class:`~tl_lab.training.retention.RetainTerm`), domain confusion
  (:class:`~tl_lab.training.domain_confusion.DomainConfusion`), and whatever comes next. A new term is one module,
  one test and one lesson: ``fit(..., terms=[MyTerm(...)])``; ``loop.py`` never changes for it.

A term subclasses :class:`LossTerm` and overrides what it needs (everything but :meth:`LossTerm.loss` has a
default):

========================  =========================================================================================
``name``                  unique within a run; the history row gets ``term_<name>`` (mean per example, per epoch)
``taps``                  :class:`Tap` s: stage outputs (or a module's input) the term reads; the loop captures
                          them once per training batch and passes them in ``batch.taps``; no term hooks the model
``full_forward``          True when the term needs the whole network to run every batch (turns the feature cache
                          off, e.g. a tap inside the frozen prefix)
``keep``                  how the run's checkpoint is chosen: ``"best_val"`` (default) or ``"last"``
``setup(ctx)``            once per run, after the plan is applied and the inputs are ready (:class:`TermContext`)
``loss(batch)``           the term's (weighted) scalar loss for one :class:`Batch`
``param_groups(lr)``      extra optimizer groups (its own parameters, e.g. a domain classifier)
``epoch_metrics()``       extra history keys for the epoch (then start counting afresh)
``config()``              a JSON-able dict with ``kind``: written to ``run.json``, compared on resume and used by
                          ``tl-lab train`` to rebuild the term (:func:`register_term`, :func:`terms_from_config`)
``close()``               release what ``setup`` made
========================  =========================================================================================

Example, an L2 penalty on the head's weights (``c * ||W||^2``)::

    >>> class HeadL2(LossTerm):
    ...     name = "head_l2"
    ...     def __init__(self, c: float) -> None:
    ...         self.c = c
    ...     def setup(self, ctx: TermContext) -> None:
    ...         head = ctx.backbone.model.get_submodule(ctx.backbone.head)
    ...         self.weight = [m for m in head.modules() if isinstance(m, nn.Linear)][-1].weight
    ...     def loss(self, batch: Batch) -> torch.Tensor:
    ...         return self.c * self.weight.pow(2).sum()
    ...     def config(self) -> dict:
    ...         return {"kind": "head_l2", "name": self.name, "c": self.c}
    >>> register_term("head_l2", lambda cfg: HeadL2(cfg["c"]))      # lets tl-lab train rebuild it
    >>> run = tl_lab.fit("efficientnet_lite0", data, terms=[HeadL2(1e-3)])    # doctest: +SKIP
    >>> run.history[-1]["term_head_l2"], run.history[-1]["train_task_loss"]  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from tl_lab.backbones.registry import Backbone
    from tl_lab.data.datasets import DatasetSplits, ImageSplit
    from tl_lab.training.freeze import FreezeSummary
    from tl_lab.training.multitask import Tasks

__all__ = ["Keep", "KEEPS", "Tap", "Batch", "Loss", "TermContext", "LossTerm", "Objective", "CrossEntropy", "MultiTask",
           "Taps", "check_terms", "keep_policy", "record_terms", "terms_from_config", "register_term", "describe_terms",
           "CONFIG_KEYS"]

Keep = Literal["best_val", "last"]
KEEPS: tuple[str, ...] = get_args(Keep)
CONFIG_KEYS = ("objective", "terms")
"""The run.config keys that record the objective and the terms: written by :func:`record_terms`, compared on resume
(:func:`~tl_lab.training.checkpoints.resume_into`), read back by :func:`terms_from_config`."""


# ---- what the loop hands a term ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tap:
    """A tensor a term reads from the training forward pass: the ``output`` (or ``input``) of ``module``, a module
    path of the model (a stage name such as ``"stage7"``, or ``"head.classifier"``)."""

    module: str
    side: Literal["output", "input"] = "output"


@dataclass
class Batch:
    """One training batch as the terms see it, after the forward pass.

    ``inputs``: what the trainable suffix ran on (images, or cached prefix features); ``logits`` ``(N, classes)``
    float32; ``labels`` ``(N,)`` (``(N, tasks)`` for multi-task); ``taps``: ``{Tap: tensor}`` captured during this
    forward; ``progress``: the fraction of training done at this batch, in [0, 1].
    """

    logits: torch.Tensor
    labels: torch.Tensor
    inputs: torch.Tensor | None = None
    taps: Mapping[Tap, torch.Tensor] = field(default_factory=dict)
    progress: float = 0.0


@dataclass(frozen=True)
class Loss:
    """A batch's loss: ``total = task + sum(terms.values())`` (what trains), and its parts (what the history shows)."""

    total: torch.Tensor
    task: torch.Tensor
    terms: dict[str, torch.Tensor]


@dataclass(frozen=True)
class TermContext:
    """What :meth:`LossTerm.setup` may read: the backbone (plan applied, on ``device``), the data, the plan's layout,
    the run's :class:`~tl_lab.training.feed.Feed` (its inputs, its ``suffix``), the seed and the process count."""

    backbone: Backbone
    data: DatasetSplits
    layout: FreezeSummary
    feed: Any  # the run's tl_lab.training.feed.Feed (feed.py builds on this module, so it is not imported here)
    device: torch.device
    seed: int = 0
    world: int = 1


class LossTerm:
    """Base class of a loss term: override :meth:`loss` (and ``name``, :meth:`config`); the rest has defaults."""

    name: str = "term"
    taps: tuple[Tap, ...] = ()
    full_forward: bool = False
    keep: Keep = "best_val"

    def setup(self, ctx: TermContext) -> None:
        """Once per run, before the optimizer is built."""

    def loss(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define loss(batch) -> scalar tensor")

    def param_groups(self, lr: float) -> list[dict]:
        return []

    def epoch_metrics(self) -> dict[str, float]:
        return {}

    def config(self) -> dict[str, Any]:
        """JSON-able; ``kind`` names how :func:`terms_from_config` rebuilds it (the class, unless registered)."""
        return {"kind": f"{type(self).__module__}.{type(self).__qualname__}", "name": self.name}

    def close(self) -> None:
        """Undo :meth:`setup` (the loop calls it when the run ends, also after a fault)."""


# ---- the objective -------------------------------------------------------------------------------------------------


class Objective:
    """What the labels ask for. ``tasks``: the multi-task run's :class:`~tl_lab.training.multitask.Tasks` or None."""

    tasks: Tasks | None = None
    label_smoothing: float = 0.0

    def prepare(self, backbone: Backbone, *, seed: int) -> None:
        """Change the model before the plan counts what trains (multi-task: install one head per task)."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def correct(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, int]]:
        """Correct predictions in a batch: the count behind ``train_acc`` and named counts (``train_acc_<name>``)."""
        raise NotImplementedError

    def labels(self, split: ImageSplit, index: Any) -> torch.Tensor:
        return split.labels[index]

    def evaluate_batches(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict:
        from tl_lab.training.run import evaluate_batches

        return evaluate_batches(batches)

    def config(self) -> dict | None:
        """None for plain cross-entropy (recorded by ``label_smoothing`` alone), else a JSON-able dict."""
        return None


@dataclass
class CrossEntropy(Objective):
    """Cross-entropy on one head, with optional label smoothing."""

    label_smoothing: float = 0.0

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)

    def correct(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, int]]:
        return (logits.argmax(1) == labels).sum().item(), {}


@dataclass
class MultiTask(Objective):
    """``sum_t w_t * CE_t`` over one head per task (:class:`~tl_lab.training.multitask.Tasks`); ``train_acc`` is the
    mean over tasks of their accuracies."""

    tasks: Tasks = None  # type: ignore[assignment]
    label_smoothing: float = 0.0

    def prepare(self, backbone: Backbone, *, seed: int) -> None:
        self.tasks.install(backbone, seed=seed)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.tasks.loss(logits, labels, label_smoothing=self.label_smoothing)

    def correct(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, int]]:
        counts = self.tasks.correct(logits, labels)
        return sum(counts.values()) / len(counts), counts

    def labels(self, split: ImageSplit, index: Any) -> torch.Tensor:
        return self.tasks.labels(split, index)

    def evaluate_batches(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict:
        return self.tasks.evaluate_batches(batches)

    def config(self) -> dict:
        return {"kind": "multitask", "tasks": self.tasks.to_config()}


# ---- from fit's keywords to an objective and terms, and back from run.json ----------------------------------------


def check_terms(terms: Sequence[Any]) -> None:
    """Refuse what is not a term, two terms with one name, or terms that disagree on how the checkpoint is kept."""
    for t in terms:
        if not callable(getattr(t, "loss", None)) or not isinstance(getattr(t, "name", None), str):
            raise TypeError(f"terms must be loss terms (subclass tl_lab.training.terms.LossTerm: a name and "
                            f"loss(batch)); got {type(t).__name__}")
    names = [t.name for t in terms]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two loss terms share the name {', '.join(map(repr, twice))}; give each a different name "
                         "(it names the history key term_<name>)")
    keep_policy(terms)


def keep_policy(terms: Sequence[LossTerm]) -> Keep:
    """How the run's checkpoint is chosen: ``"best_val"`` unless a term asks for ``"last"`` (all must agree)."""
    asked = {getattr(t, "keep", "best_val") for t in terms}
    bad = asked - set(KEEPS)
    if bad:
        raise ValueError(f"keep must be one of {', '.join(map(repr, KEEPS))}; got {', '.join(map(repr, sorted(bad)))}")
    if len(asked) > 1:
        raise ValueError("the loss terms disagree on which checkpoint to keep (" + ", ".join(
            f"{t.name}: {getattr(t, 'keep', 'best_val')}" for t in terms) + "); set the same keep on each")
    return next(iter(asked), "best_val")  # type: ignore[return-value]


def record_terms(config: dict, objective: Objective, terms: Sequence[LossTerm]) -> None:
    """Write the objective and the terms into ``config`` (run.json): the one place they are recorded.

    ``objective`` (multi-task only) and ``terms`` (when there are any) are what resume compares and rerun rebuilds;
    ``tasks``, ``retain`` (remedy labels) and ``adapt_to`` are read-only views of them for tables and widgets.
    """
    obj = objective.config()
    if obj is not None:
        config["objective"] = obj
        if obj.get("kind") == "multitask":
            config["tasks"] = obj["tasks"]
    if terms:
        config["terms"] = [dict(t.config()) for t in terms]
        retain = [c["label"] for c in config["terms"] if c.get("kind") == "retain"]
        if retain:
            config["retain"] = retain
        dann = [c for c in config["terms"] if c.get("kind") == "domain_confusion"]
        if dann:
            config["adapt_to"] = {k: dann[0][k] for k in ("images", "stage", "target") if dann[0][k] is not None}


def describe_terms(records: Sequence[dict] | None) -> str:
    """Recorded terms for a message: each one's ``label`` (``lwf 1``), else ``name(key=value, ...)``; ``none`` when
    there are none."""
    if not records:
        return "none"
    return ", ".join(r.get("label") or f"{r.get('name', r.get('kind'))}(" + ", ".join(
        f"{k}={v!r}" for k, v in r.items() if k not in ("kind", "name")) + ")" for r in records)


_KINDS: dict[str, Callable[[dict], LossTerm] | str] = {
    "retain": "tl_lab.training.retention:RetainTerm.from_config",
    "domain_confusion": "tl_lab.training.domain_confusion:DomainConfusion.from_config",
}


def register_term(kind: str, from_config: Callable[[dict], LossTerm]) -> None:
    """Let :func:`terms_from_config` (and so ``tl-lab train``) rebuild terms whose ``config()["kind"]`` is ``kind``."""
    if kind in _KINDS:
        raise ValueError(f"a loss term kind {kind!r} is already registered; choose another kind")
    _KINDS[kind] = from_config


def terms_from_config(config: dict) -> dict[str, Any]:
    """The ``fit`` keywords that repeat a recorded run's objective and terms: ``{"tasks": ..., "terms": [...]}``.

    Refuses, naming the term and why, a term that cannot be rebuilt from its record (a term defined outside tl_lab
    and not registered, domain confusion towards target images given as tensors). Reads run.json files written
    before terms were recorded too (their ``tasks`` and ``retain``).
    """
    kwargs: dict[str, Any] = {}
    obj = config.get("objective") or ({"kind": "multitask", "tasks": config["tasks"]} if config.get("tasks") else None)
    if obj is not None:
        if obj.get("kind") != "multitask":
            raise ValueError(f"run.json records an objective of kind {obj.get('kind')!r}, which tl_lab cannot "
                             "rebuild; rerun it from Python with fit(...)")
        kwargs["tasks"] = {name: task["weight"] for name, task in obj["tasks"].items()}
    records = config.get("terms")
    if records is None:  # recorded before terms were: remedies as labels, domain confusion without its target
        records = [{"kind": "retain", "label": label} for label in config.get("retain") or []]
        if config.get("adapt_to"):
            records.append({"kind": "domain_confusion", "name": "domain_confusion", **config["adapt_to"]})
    terms = []
    for rec in records:
        kind = rec.get("kind")
        build = _KINDS.get(kind)
        if build is None:
            raise ValueError(f"cannot rerun: the loss term {rec.get('name', kind)!r} (kind {kind!r}) was defined "
                             "outside tl_lab and cannot be rebuilt from run.json; rerun it from Python with "
                             "fit(..., terms=[...]), or register it with tl_lab.training.terms.register_term")
        if isinstance(build, str):
            module, _, attr = build.partition(":")
            owner, _, method = attr.partition(".")
            build = getattr(getattr(importlib.import_module(module), owner), method)
        terms.append(build(rec))
    if terms:
        kwargs["terms"] = terms
    return kwargs


# ---- the taps the loop captures for the terms ---------------------------------------------------------------------


class Taps:
    """Forward hooks for every :class:`Tap` the terms ask for, registered once per run; they capture only inside
    :meth:`capture` (the training forward pass), so evaluation and the terms' own forwards are not recorded."""

    def __init__(self, model: nn.Module, taps: Iterable[Tap]) -> None:
        self.wanted = tuple(dict.fromkeys(taps))
        self.got: dict[Tap, torch.Tensor] = {}
        self._on = False
        self._handles = []
        try:
            for tap in self.wanted:
                module = model.get_submodule(tap.module)
                if tap.side == "input":
                    self._handles.append(module.register_forward_pre_hook(self._keeper(tap, lambda a, o: a[0])))
                else:
                    self._handles.append(module.register_forward_hook(self._keeper(tap, lambda a, o: o)))
        except AttributeError as exc:
            self.close()
            raise ValueError(f"a loss term taps a module the model does not have ({exc}); name a stage or module "
                             "path of the backbone") from None

    def _keeper(self, tap: Tap, pick: Callable) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any = None) -> None:
            if self._on:
                self.got[tap] = pick(args, output)

        return hook

    @contextmanager
    def capture(self) -> Iterator[dict[Tap, torch.Tensor]]:
        self.got = {}
        self._on = True
        try:
            yield self.got
        finally:
            self._on = False
        missing = [t for t in self.wanted if t not in self.got]
        if missing:
            raise RuntimeError(f"the loss terms need the {missing[0].side} of {missing[0].module!r}, which did not run "
                               "in this batch's forward pass (it is in the cached frozen prefix); a term reading "
                               "it must set full_forward = True")

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
