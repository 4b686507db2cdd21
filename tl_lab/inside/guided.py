"""Guided backprop through ReLU6 with captum's public API: rewrite ReLU6 so captum's ReLU hooks reach it.

Guided backprop (Springenberg et al. 2015, "Striving for Simplicity", arXiv:1412.6806) passes, at every ReLU,
only the positive part of the gradient where the input was positive. captum's :class:`~captum.attr.GuidedBackprop`
applies that rule to ``nn.ReLU`` modules only, while EfficientNet-Lite0 and MobileNetV2 use ``nn.ReLU6``
(``min(max(x, 0), 6)``): on them captum alone returns the plain gradient. :func:`guided_copy` gives captum a copy
of the model in which every ReLU6 is :class:`GuidedReLU6`, the same function written around an ``nn.ReLU``.

Example::

    >>> guided, report = guided_copy(tl_lab.load_backbone().model)
    >>> report["guided_activations"]                      # stem, 16 blocks, conv_head
    {'ReLU6': 18}
    >>> from captum.attr import GuidedBackprop
    >>> x = torch.rand(1, 3, 64, 64)
    >>> GuidedBackprop(guided).attribute(x, target=281).shape   # the guided rule at every ReLU6
    torch.Size([1, 3, 64, 64])
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GuidedReLU6", "guided_copy"]


class GuidedReLU6(nn.Module):
    """ReLU6 written as ``hardtanh(ReLU(x), 0, 6)``: the same values and gradient, with an ``nn.ReLU`` inside.

    captum's :class:`~captum.attr.GuidedBackprop` keeps only the positive part of the gradient leaving every
    ``nn.ReLU`` module (autograd has already applied the forward mask ``[x > 0]``) and hooks nothing else. Here
    the gradient reaching the inner ReLU is ``g * [0 < relu(x) < 6]`` (hardtanh's own mask), so captum's rule gives
    ``max(g, 0) * [0 < x < 6]``: guided backprop's rule for a clipped ReLU, through captum's public API only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(self.relu(x), 0.0, 6.0)


_UNGUIDED = (nn.SiLU, nn.GELU, nn.Hardswish, nn.Mish, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh)


def guided_copy(net: nn.Module) -> tuple[nn.Module, dict]:
    """A deep copy of ``net`` whose ``nn.ReLU6`` modules are :class:`GuidedReLU6`, and a report of what is guided.

    The report counts the ReLU/ReLU6 modules guided backprop will hook (``guided_activations``) and the other
    activations, which pass plain gradients (``unguided_activations``, with a ``note``); functional ReLUs
    (``F.relu`` inside ``forward``) cannot be hooked at all. The original ``net`` is left untouched.
    """
    guided = copy.deepcopy(net)
    hooked: dict[str, int] = {}
    others: dict[str, int] = {}
    seen: set[int] = set()
    # remove_duplicate=False: a module reachable under two names is replaced under both (counted once)
    for name, module in list(guided.named_modules(remove_duplicate=False)):
        kind = type(module).__name__
        if isinstance(module, nn.ReLU6) and name:  # (a model that is one bare ReLU6 is not worth a case)
            parent, _, child = name.rpartition(".")
            setattr(guided.get_submodule(parent) if parent else guided, child, GuidedReLU6())
        if id(module) in seen:
            continue
        seen.add(id(module))
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            hooked[kind] = hooked.get(kind, 0) + 1
        elif isinstance(module, _UNGUIDED):
            others[kind] = others.get(kind, 0) + 1
    report: dict[str, Any] = {"guided_activations": hooked}
    if others:
        report["unguided_activations"] = others
    if not hooked:
        report["note"] = ("no nn.ReLU/nn.ReLU6 modules found: this map is the plain gradient (functional ReLUs "
                          "cannot be hooked)")
    elif others:
        report["note"] = (f"only ReLU/ReLU6 modules are guided; {sum(others.values())} other activations "
                          f"({', '.join(others)}) pass plain gradients")
    return guided, report
