"""Feature taps: read named stages' outputs through forward hooks, in a context manager that always cleans up."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from tl_lab.backbones.registry import Backbone

# ---- taps ------------------------------------------------------------------------------------------------------


@contextmanager
def tap(
    model: nn.Module,
    stages: str | Sequence[str],
    *,
    eval_mode: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of named stages (any module path) during the forward passes inside the block.

    The dict fills as the model runs: ``acts[stage]`` is the (detached) output of the last call, after
    ``transform`` when given (e.g. ``backbone.pooled`` to keep only (N, C) vectors). ``eval_mode`` runs the block
    in eval mode (BatchNorm statistics fixed, no dropout). On exit, even after an error, every hook is removed and
    every module gets back its own train/eval flag.

    Example::

        >>> bb = tl_lab.load_backbone()
        >>> with tap(bb.model, ["stage1", "stage3"]) as acts:
        ...     _ = bb.model(torch.zeros(2, 3, 64, 64))
        >>> acts["stage1"].shape, acts["stage3"].shape
        (torch.Size([2, 16, 32, 32]), torch.Size([2, 40, 8, 8]))
    """
    names = [stages] if isinstance(stages, str) else list(dict.fromkeys(stages))
    modules = {name: _submodule(model, name) for name in names}
    acts: dict[str, torch.Tensor] = {}
    modes = [(m, m.training) for m in model.modules()]
    handles = []

    def hook(name: str) -> Callable[..., None]:
        def store(_module: nn.Module, _inputs: Any, output: Any) -> None:
            out = transform(output) if transform is not None else output
            acts[name] = out.detach() if torch.is_tensor(out) else out

        return store

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook(name)))
        if eval_mode:
            model.eval()
        yield acts
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            module.training = mode


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        known = getattr(model, "stage_names", None) or tuple(n for n, _ in model.named_children())
        raise ValueError(f"cannot tap {name!r}: no such module; stages are: {', '.join(known)}") from None


def _body_stages(backbone: Backbone, stages: str | Sequence[str] | None) -> tuple[str, ...]:
    """Requested stages in forward order; the head is refused (its output is logits, not features)."""
    if stages is None:
        return backbone.body_stages
    wanted = [stages] if isinstance(stages, str) else list(stages)
    for s in wanted:
        if s not in backbone.body_stages:
            hint = " (the head outputs logits; pick a body stage)" if s == backbone.head else ""
            raise ValueError(f"unknown stage {s!r}{hint}; body stages are: {', '.join(backbone.body_stages)}")
    return tuple(s for s in backbone.body_stages if s in wanted)
