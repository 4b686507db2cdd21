"""A network seen as an ordered chain of named stages.

Every backbone in tl_lab is rebuilt (sharing, not copying, the pretrained modules) as a :class:`StagedModel`:
its children are the stages, in forward order, and its forward pass applies them one after another. That makes a
stage name a real module path (``model.get_submodule("layer3")``) and gives every analysis the same three
operations for free: run a prefix, run the rest from a cached activation, and tap any stage's output.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = StagedModel([("stem", nn.Conv2d(3, 8, 3)), ("head", ClassifierHead(nn.Linear(8, 2)))])
    >>> net(torch.zeros(1, 3, 16, 16)).shape
    torch.Size([1, 2])
    >>> net.forward_range(torch.zeros(1, 3, 16, 16), end="stem").shape   # activations after "stem"
    torch.Size([1, 8, 14, 14])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["StagedModel", "ClassifierHead", "TokenPool", "replace_last_linear"]


class TokenPool(nn.Module):
    """Pool a ViT token sequence (N, 1 + HW, D) to the class token (N, D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class ClassifierHead(nn.Module):
    """The task-specific top: global pooling, then the classifier.

    ``pool`` turns a stage's output (N, C, H, W) or (N, T, D) into (N, C); ``classifier`` maps it to logits. The
    pooled vector is what linear probes and the "frozen head" recipe train on.
    """

    def __init__(self, classifier: nn.Module, pool: nn.Module | None = None) -> None:
        super().__init__()
        self.pool = pool if pool is not None else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(x))


def replace_last_linear(module: nn.Module, num_classes: int) -> nn.Linear:
    """Swap the last ``nn.Linear`` inside ``module`` for a fresh one with ``num_classes`` outputs.

    Everything else (earlier classifier layers, dropout, pooling) keeps its pretrained weights. Returns the new layer.
    """
    if isinstance(module, nn.Linear):
        raise TypeError("pass the container that holds the Linear layer, not the layer itself")
    last_name, last = None, None
    for name, child in module.named_modules():
        if isinstance(child, nn.Linear):
            last_name, last = name, child
    if last is None:
        raise ValueError(f"no nn.Linear layer found in {type(module).__name__}")
    new = nn.Linear(last.in_features, num_classes)
    parent_name, _, attr = last_name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, attr, new)
    return new


class StagedModel(nn.Module):
    """Apply named stages in order; the last one is the classifier head.

    ``forward_range(x, start=..., end=...)`` runs only stages ``start`` through ``end`` (inclusive): the training
    engine uses it to run just the trainable suffix on cached activations of the frozen prefix.
    """

    def __init__(self, stages: Sequence[tuple[str, nn.Module]]) -> None:
        super().__init__()
        if len(stages) < 2:
            raise ValueError("a StagedModel needs at least one body stage and a head")
        names = [name for name, _ in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        for name, module in stages:
            if "." in name or not name.isidentifier():
                raise ValueError(f"stage name {name!r} must be a plain identifier (it becomes a module path)")
            self.add_module(name, module)
        self.stage_names: tuple[str, ...] = tuple(names)
        self._eval_locked: tuple[nn.Module, ...] = ()
        self._eval_locked_in: dict[str, tuple[nn.Module, ...]] = {}

    def lock_eval(self, modules: Sequence[nn.Module]) -> None:
        """Keep ``modules`` in eval mode even when the model is put in train mode.

        Only the listed modules are switched (not their children), so a caller can lock a frozen stage while
        leaving its BatchNorm layers in train mode on purpose. Frozen stages use this so their BatchNorm statistics and dropout stay fixed while the rest trains:
        ``model.train()`` alone would silently start updating them (the classic fixed-feature-extractor bug).
        """
        self._eval_locked = tuple(modules)
        locked = {id(m) for m in self._eval_locked}
        self._eval_locked_in = {name: tuple(m for m in getattr(self, name).modules() if id(m) in locked)
                                for name in self.stage_names}
        self.train(self.training)

    def train(self, mode: bool = True, *, stages: Sequence[str] | None = None) -> "StagedModel":
        """``model.train(mode)``, keeping locked modules in eval mode.

        ``stages``: switch only these stages (the training engine switches just the stages it runs after a cached
        prefix: walking every module of a large backbone twice per epoch costs more than a head's whole epoch).
        """
        if stages is None:
            super().train(mode)
            locked = self._eval_locked
        else:
            for name in stages:
                getattr(self, name).train(mode)
            locked = tuple(m for name in stages for m in self._eval_locked_in.get(name, ()))
        for module in locked:
            module.training = False  # this module only: locked modules list their children themselves
        return self

    def index(self, stage: str) -> int:
        try:
            return self.stage_names.index(stage)
        except ValueError:
            raise ValueError(f"unknown stage {stage!r}; stages are: {', '.join(self.stage_names)}") from None

    def forward_range(self, x: torch.Tensor, *, start: str | None = None, end: str | None = None) -> torch.Tensor:
        first = 0 if start is None else self.index(start)
        last = len(self.stage_names) - 1 if end is None else self.index(end)
        if first > last:
            raise ValueError(f"start stage {start!r} comes after end stage {end!r}")
        for name in self.stage_names[first : last + 1]:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_range(x)
