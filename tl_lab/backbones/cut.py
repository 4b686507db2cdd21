"""Cut a network after a stage and put a new head on it: for targets far from ImageNet a middle stage wins."""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import nn

from tl_lab.backbones.registry import Backbone
from tl_lab.backbones.staged import ClassifierHead, StagedModel, TokenPool

if TYPE_CHECKING:
    pass



# ---- cutting a network at a stage ------------------------------------------------------------------------------


def cut_at(backbone: Backbone, stage: str, num_classes: int, *, seed: int = 0) -> Backbone:
    """A new Backbone: copies of the stages up to ``stage``, then a fresh head (global pool + Linear).

    Why: when a middle stage probes best (data far from ImageNet), training on top of it beats training on the
    final features, and the smaller network is faster too. The result works with ``fit`` and every analysis here;
    the original backbone is left untouched. ``meta["cut_at"]`` records the stage.

    Example::

        >>> cut = cut_at(load_backbone(), "stage5", num_classes=10)
        >>> cut.stages
        ('stem', 'stage1', 'stage2', 'stage3', 'stage4', 'stage5', 'head')
        >>> run = fit(cut, load_dataset("digits", shots=10), plan=FreezePlan("head"), progress=False)
        >>> run.best["test_acc"]       # doctest: +SKIP
        0.93...
    """
    if stage not in backbone.body_stages:
        raise ValueError(f"cannot cut at {stage!r}; choose a body stage: {', '.join(backbone.body_stages)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    prefix = backbone.body_stages[: backbone.body_stages.index(stage) + 1]
    spec = backbone.spec
    size = spec.input_size if spec.fixed_input_size else max(spec.min_input_size, 64)
    shape = backbone.stage_shapes(size)[stage]

    def assemble(source: StagedModel, *, copy_modules: bool) -> StagedModel:
        take = (lambda m: copy.deepcopy(m)) if copy_modules else (lambda m: m)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = _new_head(shape, num_classes)
        model = StagedModel([*((s, take(source.get_submodule(s))) for s in prefix), ("head", head)])
        return model.to(next(source.parameters()).device)

    model = assemble(backbone.model, copy_modules=True)
    model.train(backbone.model.training)
    new_spec = dataclasses.replace(
        spec,
        stages=(*prefix, "head"),
        gradcam_layer=stage,
        build=lambda pretrained: assemble(spec.build(pretrained), copy_modules=False),
        description=f"{spec.description} Cut after {stage!r}, with a new linear head.",
    )
    params = {s: sum(p.numel() for p in model.get_submodule(s).parameters()) for s in new_spec.stages}
    meta = {**backbone.meta, "cut_at": stage, "num_classes": num_classes, "categories": None,
            "parameters": params, "total_parameters": sum(params.values()),
            "description": new_spec.description}
    return Backbone(name=backbone.name, model=model, stages=new_spec.stages, head="head",
                    transform=backbone.transform, input_size=backbone.input_size, meta=meta, spec=new_spec)


def _new_head(shape: tuple[int, ...], num_classes: int) -> ClassifierHead:
    if len(shape) == 3:  # (C, H, W)
        return ClassifierHead(nn.Linear(shape[0], num_classes))
    if len(shape) == 2:  # ViT tokens (T, D)
        return ClassifierHead(nn.Linear(shape[1], num_classes), pool=TokenPool())
    return ClassifierHead(nn.Linear(shape[0], num_classes), pool=nn.Identity())
