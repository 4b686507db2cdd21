"""Domain confusion (DANN): learn features a domain classifier cannot tell apart, with unlabelled target images.

Why: a classifier trained on a source domain fails on a target domain when the features it reads differ between
the two. Ganin & Lempitsky 2015 (ICML, "Unsupervised Domain Adaptation by Backpropagation"; Ganin et al. 2016,
JMLR, "Domain-Adversarial Training of Neural Networks") add a *domain classifier* ``D`` on the features ``f``
and train it to tell source from target, while the body is trained to make that impossible. One backward pass
does both through a **gradient reversal layer** (GRL) between ``f`` and ``D``: the identity going forward,
``-lambda`` times the gradient going back. Minimising ``L_label(source) + L_domain(source, target)`` then trains
``D`` to separate the domains and the body to *confuse* it:

    body update  = -(dL_label/df) + lambda * dL_domain/df        (the reversed domain gradient)
    lambda_p     = 2 / (1 + exp(-gamma * p)) - 1,   gamma = 10,  p = training progress in [0, 1]

The schedule starts the reversal at 0 (the domain classifier is still random; its gradient is noise) and moves it
to 1. Where tl_lab differs from the paper: the domain classifier reads a body stage's globally pooled features
(``backbone.pooled``; default the last body stage) through a small MLP (1024 hidden units in the paper, 256 here,
a ReLU, a single logit with binary cross-entropy, equivalent to their two-way softmax); the learning rate follows
``fit``'s schedule, not the paper's ``mu_p = mu_0 / (1 + 10 p)^0.75``.

Used through ``fit(..., adapt_to=unlabelled_target_images)`` (or ``adapt_to=UnlabelledTarget(shift, n)``, which a
rerun can rebuild): :class:`DomainConfusion` is a loss term (:mod:`tl_lab.training.terms`); the loop adds its
loss to each batch's label loss and writes its epoch metrics (the domain classifier's accuracy, which falls
towards 0.5 as the features become domain-invariant) into the epoch's history row. The run keeps the checkpoint
with the best source validation accuracy by default; ``DomainConfusion(target, keep="last")`` keeps the last.

Example::

    >>> import torch
    >>> x = torch.ones(3, requires_grad=True)
    >>> grad_reverse(x, 0.5).sum().backward()
    >>> x.grad
    tensor([-0.5000, -0.5000, -0.5000])
    >>> round(dann_lambda(0.5), 4)
    0.9866
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from tl_lab._eval_mode import eval_mode
from tl_lab.data.datasets import DatasetSplits, ImageSplit
from tl_lab.training.adapt_bn import target_images
from tl_lab.training.terms import KEEPS, Batch, Keep, LossTerm, Tap, TermContext

if TYPE_CHECKING:
    from tl_lab.backbones.registry import Backbone

__all__ = ["GradReverse", "grad_reverse", "dann_lambda", "DomainClassifier", "domain_loss", "DomainConfusion",
           "UnlabelledTarget", "domain_features", "domain_separability"]

DANN_GAMMA = 10.0  # the paper's gamma in lambda_p = 2 / (1 + exp(-gamma p)) - 1


class GradReverse(torch.autograd.Function):
    """The gradient reversal layer: ``forward(x) = x``, ``backward(g) = -lambda * g`` (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = float(lambd)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """``x`` unchanged going forward; its gradient multiplied by ``-lambd`` going back. ``x``: any shape."""
    return GradReverse.apply(x, lambd)


def dann_lambda(progress: float, gamma: float = DANN_GAMMA) -> float:
    """The paper's reversal weight at training progress ``progress`` in [0, 1]: ``2 / (1 + exp(-gamma p)) - 1``.

    >>> dann_lambda(0.0), round(dann_lambda(1.0), 4)
    (0.0, 0.9999)
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1] (the fraction of training done); got {progress}")
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class DomainClassifier(nn.Module):
    """Pooled features (N, C) -> one logit per image (N,): positive means "target domain"."""

    def __init__(self, in_features: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(1)


def domain_loss(
    classifier: nn.Module, source: torch.Tensor, target: torch.Tensor, lambd: float
) -> tuple[torch.Tensor, int, int]:
    """Domain loss of a source batch (label 0) and a target batch (label 1) of pooled features behind the GRL.

    Returns ``(loss, correct, count)``: the mean binary cross-entropy over both batches, and how many of the
    ``count`` images the classifier put in the right domain (for the per-epoch domain accuracy).

    >>> clf = DomainClassifier(4)
    >>> loss, correct, count = domain_loss(clf, torch.randn(5, 4), torch.randn(3, 4), 0.5)
    >>> loss.shape, count
    (torch.Size([]), 8)
    """
    if source.dim() != 2 or target.dim() != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"source and target features must be (N, C) with the same C; got {tuple(source.shape)} "
                         f"and {tuple(target.shape)}")
    features = grad_reverse(torch.cat([source, target]).float(), lambd)
    labels = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(features.device)
    logits = classifier(features)
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    correct = int(((logits.detach() > 0).float() == labels).sum().item())
    return loss, correct, len(labels)


@dataclass(frozen=True)
class UnlabelledTarget:
    """Target images described so a rerun can rebuild them: ``n`` unlabelled images of the run's own dataset under
    ``shift``, none from its splits (:func:`~tl_lab.data.shifts.unlabelled_target` with ``seed``).

    ``fit(..., adapt_to=UnlabelledTarget("inverted", n=200))`` records ``{"shift", "n", "seed"}`` in run.json and
    ``tl-lab train run.json`` draws the same images again; images given as an ``ImageSplit`` or tensor cannot be
    rebuilt from run.json (the rerun then refuses, saying so).
    """

    shift: str
    n: int = 200
    seed: int = 0

    def images(self, data: DatasetSplits) -> ImageSplit:
        from tl_lab.data.shifts import unlabelled_target

        return unlabelled_target(data, self.shift, n=self.n, seed=self.seed)


class DomainConfusion(LossTerm):
    """Domain confusion (DANN) as a loss term (:mod:`tl_lab.training.terms`): ``fit(..., adapt_to=target)`` or
    ``fit(..., terms=[DomainConfusion(target, keep="last")])``.

    Args:
        target: unlabelled target images: an :class:`UnlabelledTarget` (rebuilt from the run's data; a rerun
            repeats it), or an ``ImageSplit`` (labels ignored) or uint8 ``(N, 3, H, W)`` tensor, same size as the
            training images.
        stage: the body stage whose pooled output the domain classifier reads (default: the last body stage).
        weight: multiplies the domain loss (1 in the paper). ``hidden``: the classifier's hidden units.
        keep: which checkpoint the run keeps: ``"best_val"`` (default: the best source validation accuracy, as for
            every run) or ``"last"`` (the weights after the last epoch, as a fixed schedule would). Source validation
            accuracy does not measure how well the target is served, but over 3 seeds on digits (lesson 11's call,
            ``notebooks/references/dann_seeds.json``) keeping the last epoch lowered DANN's mean target accuracy
            (inverted 0.833 -> 0.810, blended 0.468 -> 0.440) and widened its spread, so the default stays. The
            paper (Ganin et al. 2016) chooses hyper-parameters by reverse validation, which tl_lab does not do.

    The source features are the loop's tap of ``stage`` during its own forward pass (it runs the whole network:
    ``full_forward``); the target batch runs through the body up to ``stage`` once more. History rows add
    ``domain_acc`` (towards 0.5 = confused), ``domain_loss`` and ``dann_lambda``.
    """

    name = "domain_confusion"
    full_forward = True

    def __init__(self, target: UnlabelledTarget | ImageSplit | torch.Tensor, *, stage: str | None = None,
                 hidden: int = 256, weight: float = 1.0, keep: Keep = "best_val") -> None:
        if not weight > 0:
            raise ValueError(f"the domain loss weight must be > 0; got {weight}")
        if keep not in KEEPS:
            raise ValueError(f"keep must be one of {', '.join(map(repr, KEEPS))}; got {keep!r}")
        self.target, self.weight, self.hidden, self.keep = target, float(weight), int(hidden), keep
        self.stage = stage
        self.images = target_images(target) if not isinstance(target, UnlabelledTarget) else None
        self.taps: tuple[Tap, ...] = ()
        self.lambd = 0.0
        self._reset()

    def setup(self, ctx: TermContext) -> None:
        """Build the domain classifier (seeded) on ``ctx.device``; refuse a plan under which the body cannot move."""
        backbone = self.backbone = ctx.backbone
        if ctx.world > 1:
            raise ValueError("adapt_to (domain confusion) runs in one process only; call fit without torchrun")
        if isinstance(self.target, UnlabelledTarget):
            self.images = target_images(self.target.images(ctx.data))
        self.stage = self.stage if self.stage is not None else backbone.body_stages[-1]
        if self.stage not in backbone.body_stages:
            raise ValueError(f"adapt_stage {self.stage!r} is not a body stage of {backbone.name}; choose from: "
                             f"{', '.join(backbone.body_stages)}")
        stages, trainable = backbone.stages, ctx.layout.trainable_stages
        if stages.index(trainable[0]) > stages.index(self.stage):
            raise ValueError(f"domain confusion trains the body up to {self.stage!r}, but the plan freezes it (first "
                             f"trainable stage {trainable[0]!r}); use FreezePlan.fine_tune() or trainable_from at or "
                             f"before {self.stage!r}")
        size = int(ctx.data.train.images.shape[-1])
        if self.images.shape[-1] != size:
            raise ValueError(f"the target images are {self.images.shape[-1]} px but the training images are "
                             f"{size} px; load both with the same image_size")
        channels = backbone.stage_shapes(int(self.images.shape[-1]))[self.stage][0]
        self.device = ctx.device
        with torch.random.fork_rng(devices=[]):  # seeded, without moving the global random state the loop uses
            torch.manual_seed(ctx.seed)
            self.classifier = DomainClassifier(channels, self.hidden).to(self.device)
        self._gen = torch.Generator().manual_seed(ctx.seed + 7919)
        self._order = torch.empty(0, dtype=torch.long)
        self.taps = (Tap(self.stage),)

    def param_groups(self, lr: float) -> list[dict]:
        """The domain classifier's optimizer group, shaped like the plan's (``stage``, ``lr_mult``)."""
        return [{"params": list(self.classifier.parameters()), "stage": "domain_classifier", "lr_mult": 1.0, "lr": lr}]

    def _next_target(self, n: int) -> torch.Tensor:
        if len(self._order) < n:
            perm = torch.randperm(len(self.images), generator=self._gen)
            self._order = torch.cat([self._order, perm])
        idx, self._order = self._order[:n], self._order[n:]
        return self.images[idx]

    def loss(self, batch: Batch) -> torch.Tensor:
        """``weight * L_domain`` for the batch the loop just ran forward and a fresh target batch of the same size."""
        source = self.backbone.pooled(batch.taps[self.taps[0]])
        target_x = self.backbone.normalize(self._next_target(len(source)).to(self.device))
        with torch.autocast(self.device.type, enabled=False):
            target = self.backbone.pooled(self.backbone.model.forward_range(target_x, end=self.stage).float())
        self.lambd = dann_lambda(min(max(batch.progress, 0.0), 1.0))
        loss, correct, count = domain_loss(self.classifier, source.float(), target, self.lambd)
        self._correct += correct
        self._count += count
        self._loss_sum += loss.item() * count
        return self.weight * loss

    def epoch_metrics(self) -> dict:
        """The epoch's domain-classifier accuracy and loss and the last lambda; then start counting afresh."""
        out = {"domain_acc": self._correct / max(self._count, 1), "domain_loss": self._loss_sum / max(self._count, 1),
               "dann_lambda": self.lambd}
        self._reset()
        return out

    def _reset(self) -> None:
        self._correct = self._count = 0
        self._loss_sum = 0.0

    def config(self) -> dict:
        """What run.json records: the target's recipe (None when given as images), its size and a fingerprint."""
        target = asdict(self.target) if isinstance(self.target, UnlabelledTarget) else None
        images = self.images
        digest = hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()[:16] if images is not None else None
        return {"kind": "domain_confusion", "name": self.name, "target": target,
                "images": None if images is None else len(images), "sha256": digest, "stage": self.stage,
                "weight": self.weight, "hidden": self.hidden, "keep": self.keep}

    @classmethod
    def from_config(cls, config: dict) -> DomainConfusion:
        if not config.get("target"):
            raise ValueError(f"cannot rerun: this run's domain confusion trained towards {config.get('images')} "
                             "target images given as images (an ImageSplit or tensor), which run.json cannot hold; "
                             "rerun it from Python with the same images, or train with "
                             "adapt_to=UnlabelledTarget(shift, n, seed), which a rerun rebuilds")
        return cls(UnlabelledTarget(**config["target"]), stage=config.get("stage"), hidden=config.get("hidden", 256),
                   weight=config.get("weight", 1.0), keep=config.get("keep", "best_val"))

    def close(self) -> None:
        """Nothing hooks the model (the loop taps it); kept for the term protocol."""


@torch.no_grad()
def domain_features(backbone: Backbone, images: ImageSplit | torch.Tensor, *, stage: str | None = None,
                    batch_size: int = 128) -> torch.Tensor:
    """Pooled features ``(N, C)`` of ``stage`` (default: the last body stage, where DANN's classifier reads), eval mode.

    What the domain classifier sees; embed source and target features together (``tl_lab.embed_features``) to
    see whether the domains overlap.

    >>> domain_features(load_backbone(num_classes=10), torch.zeros(4, 3, 32, 32, dtype=torch.uint8)).shape  # doctest: +SKIP
    torch.Size([4, 1280])
    """
    x = target_images(images)
    stage = stage if stage is not None else backbone.body_stages[-1]
    if stage not in backbone.body_stages:
        raise ValueError(f"{stage!r} is not a body stage of {backbone.name}; choose from: {', '.join(backbone.body_stages)}")
    model = backbone.model
    device = next(model.parameters()).device
    with eval_mode(model):
        return torch.cat([backbone.pooled(model.forward_range(backbone.normalize(x[lo : lo + batch_size].to(device)),
                                                              end=stage)).float().cpu()
                          for lo in range(0, len(x), batch_size)])


def domain_separability(source: torch.Tensor, target: torch.Tensor, *, folds: int = 5, seed: int = 0) -> float:
    """How well a linear classifier tells source features (N, C) from target features (M, C): cross-validated accuracy.

    Why: the number behind the embedding picture. Ben-David et al. 2007 (NIPS, "Analysis of Representations for
    Domain Adaptation") bound the target error by the source error plus how separable the domains are; their proxy
    A-distance is ``2 (1 - 2 err)`` with ``err`` this classifier's error. 0.5 = the domains look the same to a
    linear model, 1.0 = perfectly apart. Standardised features, logistic regression (C=1), stratified ``folds``-fold.

    >>> domain_separability(torch.zeros(20, 3), torch.ones(20, 3))
    1.0
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if source.dim() != 2 or target.dim() != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"source and target features must be (N, C) with the same C; got {tuple(source.shape)} "
                         f"and {tuple(target.shape)}")
    if min(len(source), len(target)) < folds:
        raise ValueError(f"need at least {folds} images per domain for {folds}-fold cross-validation; got "
                         f"{len(source)} and {len(target)}")
    x = torch.cat([source, target]).double().numpy()
    y = [0] * len(source) + [1] * len(target)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, x, y, cv=cv).mean())
