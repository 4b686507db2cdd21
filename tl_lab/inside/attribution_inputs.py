"""What :func:`~tl_lab.inside.attribution.explain` is given, made ready for captum: the model, its input images,
the target classes, the explained layer and the baseline image.

Kept apart from the methods so each rule is written once: a Backbone's own preprocessing (or a plain module's
float input), class names matched case-insensitively with the closest names suggested, stage names or module
paths for layers, and "black"/"blur"/tensor baselines in the model's input space.

Example::

    >>> bb, net, classes = unwrap_model(tl_lab.load_backbone())
    >>> x, pixels = prepare_images(bb, torch.zeros(2, 3, 64, 64, dtype=torch.uint8), torch.device("cpu"))
    >>> x.shape, pixels.shape                                    # model input, (N, H, W, 3) uint8 to overlay on
    (torch.Size([2, 3, 64, 64]), (2, 64, 64, 3))
    >>> resolve_target(["tabby", 7], 2, classes).tolist()
    [281, 7]
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tl_lab.backbones.registry import Backbone

__all__ = ["baseline_tensor", "prepare_images", "resolve_layer", "resolve_target", "unwrap_model"]


def unwrap_model(model: Any, classes: Sequence[str] | None = None) -> tuple[Backbone | None, nn.Module, tuple[str, ...] | None]:
    """``(backbone or None, the nn.Module to run, class names or None)`` from a Backbone, a training Run or a module."""
    if isinstance(getattr(model, "backbone", None), Backbone):  # a training Run: its data names the classes
        data = getattr(model, "data", None)
        classes = classes if classes is not None else getattr(data, "classes", None)
        model = model.backbone
    if isinstance(model, Backbone):
        cats = tuple(classes) if classes is not None else model.meta.get("categories")
        return model, model.model, tuple(cats) if cats else None
    if isinstance(model, nn.Module):
        return None, model, tuple(classes) if classes is not None else None
    raise TypeError(f"explain needs a Backbone, a Run or an nn.Module; got {type(model).__name__}")


def prepare_images(backbone: Backbone | None, images: Any, device: torch.device) -> tuple[torch.Tensor, np.ndarray | None]:
    """Model input (N, C, H, W) on ``device`` and the (N, H, W, 3) uint8 pixels to overlay maps on."""
    from PIL import Image

    pil = isinstance(images, Image.Image) or (
        isinstance(images, (list, tuple)) and len(images) > 0 and all(isinstance(i, Image.Image) for i in images))
    if backbone is None:
        if pil or not torch.is_tensor(images) or not images.is_floating_point():
            raise TypeError("a plain nn.Module needs its float input tensor (N, C, H, W); to pass PIL images or uint8 "
                            "pixels, pass a Backbone (load_backbone(...)) so its own preprocessing is applied")
        x = images[None] if images.dim() == 3 else images
        if x.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W) or (C, H, W); got shape {tuple(images.shape)}")
        x = x.detach().to(device, torch.float32)
        display = None
        if x.shape[1] == 3:
            lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
            display = _to_uint8((x - lo) / (hi - lo).clamp_min(1e-12))
        return x, display
    if pil:
        ims = [images] if isinstance(images, Image.Image) else list(images)
        x = torch.stack([backbone.transform(im.convert("RGB")) for im in ims]).to(device)
    elif torch.is_tensor(images):
        t = images[None] if images.dim() == 3 else images
        if t.dim() != 4 or t.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W) or (3, H, W) RGB; got shape {tuple(images.shape)}")
        if t.is_floating_point() and (t.min() < -1e-4 or t.max() > 1 + 1e-4):
            raise ValueError("float images for a Backbone must be pixels in [0, 1] (or pass uint8); to explain "
                             "already-normalised inputs, pass backbone.model instead of the Backbone")
        x = backbone.normalize(t.detach().to(device))
    else:
        raise TypeError(f"images must be a uint8/float tensor or PIL image(s); got {type(images).__name__}")
    backbone.check_input_size(int(x.shape[-1]))
    mean = torch.tensor(backbone.spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.spec.std, device=device).view(1, 3, 1, 1)
    return x, _to_uint8(x * std + mean)


def _to_uint8(x01: torch.Tensor) -> np.ndarray:
    return (x01.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def resolve_target(target: Any, n: int, categories: Sequence[str] | None, *,
                   logits: torch.Tensor | None = None) -> torch.Tensor:
    """Class indices ``(n,)`` from an index, a name, a list of either (one per image), or None (the prediction).

    Names match ``categories`` case-insensitively; an unknown name raises with the closest names.
    """
    if target is None:
        if logits is None:
            raise ValueError("target=None means 'the predicted class', which needs the model's logits")
        return logits.argmax(1).cpu()
    if torch.is_tensor(target):
        target = target.tolist() if target.dim() else int(target)
    items = list(target) if isinstance(target, (list, tuple)) else [target] * n
    if len(items) != n:
        raise ValueError(f"got {len(items)} targets for {n} images; give one target, or one per image")
    out = [_one_target(t, categories) for t in items]
    k = logits.shape[1] if logits is not None else None
    bad = [t for t in out if t < 0 or (k is not None and t >= k)]
    if bad:
        raise ValueError(f"target index {bad[0]} is out of range: the model has {k} classes (0..{(k or 1) - 1})")
    return torch.tensor(out, dtype=torch.long)


def _one_target(t: Any, categories: Sequence[str] | None) -> int:
    if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
        return int(t)
    if not isinstance(t, str):
        raise TypeError(f"a target is a class index or a class name; got {t!r}")
    if not categories:
        raise ValueError(f"cannot look up class name {t!r}: this model has no class names; pass "
                         f"classes=(...) (e.g. data.classes) or a class index")
    lower = [c.lower() for c in categories]
    if t.lower() in lower:
        return lower.index(t.lower())
    close = difflib.get_close_matches(t.lower(), lower, n=5, cutoff=0.5)
    close += [c for c in lower if t.lower() in c and c not in close][: 5 - len(close)]
    hint = f"; did you mean: {', '.join(repr(categories[lower.index(c)]) for c in close)}?" if close else ""
    raise ValueError(f"unknown class name {t!r}{hint} ({len(categories)} classes, e.g. {categories[0]!r})")


def resolve_layer(backbone: Backbone | None, net: nn.Module, layer: str | nn.Module | None) -> tuple[str, nn.Module]:
    if isinstance(layer, nn.Module):
        name = next((n for n, m in net.named_modules() if m is layer), None)
        if name is None:
            raise ValueError("the layer module given is not part of this model; pass one of its modules or a name")
        return name or type(layer).__name__, layer
    if layer is None:
        if backbone is None:
            convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)][-3:]
            raise ValueError(f"a plain nn.Module has no default Grad-CAM layer; pass layer=<module path>, e.g. one of "
                             f"{convs} (usually the last convolutional block), or pass a Backbone")
        layer = backbone.spec.gradcam_layer
    try:
        return layer, net.get_submodule(layer)
    except AttributeError:
        stages = getattr(net, "stage_names", None) or [n for n, _ in net.named_children()]
        raise ValueError(f"unknown layer {layer!r}; use a stage name ({', '.join(stages)}) or a module path from "
                         f"model.named_modules()") from None


def baseline_tensor(backbone: Backbone | None, baseline: Any, x: torch.Tensor) -> torch.Tensor:
    if isinstance(baseline, str):
        if baseline == "black":
            if backbone is None:
                return torch.zeros_like(x)
            return backbone.normalize(torch.zeros(x.shape, dtype=torch.uint8, device=x.device))
        if baseline == "blur":
            from torchvision.transforms.v2.functional import gaussian_blur

            sigma = max(1.0, x.shape[-1] / 16)
            k = min(2 * math.ceil(3 * sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
            return gaussian_blur(x, [k, k], [sigma, sigma])  # blur commutes with per-channel normalisation
        raise ValueError(f"baseline must be 'black', 'blur' or a tensor; got {baseline!r}")
    if torch.is_tensor(baseline):
        b = baseline.to(x.device)
        if backbone is not None:
            b = backbone.normalize(b)
        try:
            return torch.broadcast_to(b.float(), x.shape).contiguous()
        except RuntimeError:
            raise ValueError(f"a baseline tensor must broadcast to the images' shape {tuple(x.shape)}; "
                             f"got {tuple(baseline.shape)}") from None
    raise ValueError(f"baseline must be 'black', 'blur' or a tensor; got {type(baseline).__name__}")
