"""AdaBN: adapt a network to a new domain by re-estimating its BatchNorm statistics on unlabelled target images.

Why: a BatchNorm layer normalises its input with the running mean and variance it saw in training,
``y = gamma * (x - mu_source) / sqrt(var_source + eps) + beta``. When the domain shifts (inverted, noisy, textured
images) the activations no longer have mean ``mu_source`` and the layers downstream receive inputs they never
saw. AdaBN (Li, Wang, Shi, Liu & Hou 2016, "Revisiting Batch Normalization For Practical Domain Adaptation",
arXiv:1603.04779) swaps in the target domain's statistics, ``mu_target`` and ``var_target``, estimated from
unlabelled target images; every learned weight stays as it is. Schneider et al. 2020 ("Improving robustness
against common corruptions by covariate shift adaptation", NeurIPS) showed the same on ImageNet-C.

The protocol matters: the statistics a head was trained under must be the *source* domain's, estimated by the
body it trained on. Fine-tune on the source with BatchNorm in train mode (its statistics then describe the
source data), then swap the target's in. Re-normalising a frozen ImageNet body to the few-shot source and
training a new head on that is the naive version; lesson 11 measures both.

Estimation, as in PyTorch with ``momentum=None``: the model runs forward in eval mode except the BatchNorm layers
of ``stages``, which run in train mode (each batch normalised by its own statistics) and accumulate a cumulative
average over batches of the batch mean and unbiased batch variance. With one batch that is exactly the mean and
unbiased variance of the layer's input over the images and pixels.

Example::

    >>> import tl_lab
    >>> bb = tl_lab.load_backbone(num_classes=10)
    >>> images = torch.randint(0, 256, (32, 3, 64, 64), dtype=torch.uint8)   # unlabelled target images
    >>> adapted = adapt_bn(bb, images)          # a copy; bb is untouched
    >>> adapted.model.stem.bn.running_mean.shape    # doctest: +SKIP
    torch.Size([32])
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from tl_lab._eval_mode import eval_mode
from tl_lab.backbones.registry import Backbone
from tl_lab.data.datasets import ImageSplit

if TYPE_CHECKING:
    from tl_lab.training.run import Run

__all__ = ["adapt_bn", "batchnorm_layers", "target_images"]


def adapt_bn(
    backbone: Backbone | Run,
    images: ImageSplit | torch.Tensor,
    *,
    stages: Sequence[str] | None = None,
    image_size: int | None = None,
    batch_size: int = 256,
) -> Backbone:
    """A copy of ``backbone`` whose BatchNorm running statistics come from ``images`` (labels are never used).

    Args:
        backbone: a Backbone, or a :class:`~tl_lab.training.run.Run` (its backbone; its data give the size the
            model was trained at).
        images: unlabelled target images: an ``ImageSplit`` (its labels are ignored) or uint8 ``(N, 3, H, W)``,
            preprocessed as in training (``backbone.normalize``).
        stages: the stages whose BatchNorm layers are re-estimated (default: every stage that has them).
        image_size: the size the model was trained at (default: a Run's data size); other sizes are refused,
            since BatchNorm statistics depend on the scale of the image content.
        batch_size: images per forward pass; each pass contributes its batch statistics with equal weight.

    Returns:
        A new Backbone (deep copy of the model); only ``running_mean``, ``running_var`` and
        ``num_batches_tracked`` of the selected BatchNorm layers differ from the original.
    """
    trained_size = image_size
    if not isinstance(backbone, Backbone):  # a Run
        trained_size = trained_size or int(backbone.data.train.images.shape[-1])
        backbone = backbone.backbone
    x = target_images(images)
    if trained_size is not None and x.shape[-1] != trained_size:
        raise ValueError(
            f"the target images are {x.shape[-1]}x{x.shape[-2]} px but the model was trained at "
            f"{trained_size}x{trained_size}; load them with image_size={trained_size} (BatchNorm statistics "
            f"depend on the scale of the image content)"
        )
    backbone.check_input_size(int(x.shape[-1]))
    chosen = tuple(stages) if stages is not None else backbone.stages
    unknown = [s for s in chosen if s not in backbone.stages]
    if unknown or not chosen:
        raise ValueError(f"unknown stages {unknown} for {backbone.name}; choose from: {', '.join(backbone.stages)}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (a variance needs two values); got {batch_size}")

    if not any(batchnorm_layers(backbone.model.get_submodule(s)) for s in chosen):
        where = "these stages have" if stages is not None else f"{backbone.name} has"
        raise ValueError(f"{where} no BatchNorm layers, so there are no statistics to adapt; AdaBN needs a "
                         f"network with BatchNorm (e.g. efficientnet_lite0, resnet18)")
    new = replace(backbone, model=copy.deepcopy(backbone.model), meta=dict(backbone.meta))
    model = new.model
    layers = [bn for s in chosen for bn in batchnorm_layers(model.get_submodule(s))]
    momenta = [bn.momentum for bn in layers]
    device = next(model.parameters()).device
    with eval_mode(model):  # every module in eval mode, locks or not (each flag restored after) ...
        for bn in layers:  # ... except the BatchNorm layers being re-estimated
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over batches
            bn.train(True)
        try:
            with torch.no_grad():
                for lo in range(0, len(x), batch_size):
                    batch = x[lo : lo + batch_size]
                    if len(batch) < 2 and lo > 0:  # a last batch of one image has no variance; skip it
                        break
                    model(new.normalize(batch.to(device)))
        finally:
            for bn, m in zip(layers, momenta):
                bn.momentum = m
    new.meta["adabn"] = {"images": int(len(x)), "layers": len(layers), "stages": list(chosen)}
    return new


def batchnorm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer inside ``module``, in registration (forward) order."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def target_images(images: ImageSplit | torch.Tensor) -> torch.Tensor:
    """The uint8 ``(N, 3, H, W)`` images of an ImageSplit or tensor, checked: unlabelled target data for adaptation."""
    x = images.images if isinstance(images, ImageSplit) else images
    if not torch.is_tensor(x) or x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
        got = f"{x.dtype} {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"target images must be an ImageSplit or a uint8 tensor (N, 3, H, W); got {got}")
    if len(x) < 2:
        raise ValueError(f"need at least 2 unlabelled target images to estimate statistics; got {len(x)} "
                         f"(pass more images of the new domain, e.g. a shifted split)")
    return x
