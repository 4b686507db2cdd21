"""Attribution maps through one interface: ``explain(method, model, images, target)`` for every captum method.

Why one function and a registry: a lesson compares methods side by side, and a widget builds its menu from
:func:`list_methods` (display name, whether the method needs a layer or a baseline). Every method is computed by
captum; tl_lab only prepares inputs (a Backbone's own preprocessing), resolves targets (class names too), keeps
the model's state untouched, and returns plain data: an :class:`Attribution` with ``(N, H, W)`` numpy maps.

Methods (``list_methods()``), with the paper each comes from:

- ``saliency``: |d output / d pixel| (Simonyan et al. 2014, arXiv:1312.6034). The paper takes the max over colour
  channels; here channels are summed like every other method.
- ``integrated_gradients``: path integral of gradients from a baseline (Sundararajan et al. 2017,
  arXiv:1703.01365). Completeness: the map sums to f(x) - f(baseline) up to ``diagnostics["convergence_delta"]``.
- ``grad_cam``: channel-weighted activations of a layer (Selvaraju et al. 2017, arXiv:1610.02391), upsampled
  (bilinear; captum's default is nearest) to the input size. ReLU applied as in the paper (captum's default is
  signed). Transformer token layers are reshaped to their patch grid first.
- ``occlusion``: drop of the output when a square patch is replaced by the baseline (Zeiler & Fergus 2014,
  arXiv:1311.2901); window about 1/7 of the image, stride half the window.
- ``guided_backprop``: gradients with negative values stopped at every ReLU (Springenberg et al. 2015,
  arXiv:1412.6806). captum's ``GuidedBackprop`` hooks ``nn.ReLU`` modules only; EfficientNet-Lite0 and MobileNetV2
  use ``nn.ReLU6``, so tl_lab runs captum on a copy of the model whose ReLU6 modules are rewritten as
  ``hardtanh(ReLU(x), 0, 6)`` (the same function and gradient, with an ``nn.ReLU`` captum hooks), else on Lite0
  the "guided" map would silently be the plain gradient.
- ``noise_tunnel=True`` wraps any of them in SmoothGrad (Smilkov et al. 2017, arXiv:1706.03825): the mean map
  over ``nt_samples`` noisy copies, noise sd = ``noise_level`` x the input range (the paper's 10-20 %).

Example::

    >>> import tl_lab
    >>> bb = tl_lab.load_backbone()                                  # ImageNet Lite0, offline
    >>> cat = tl_lab.sample_photo("cat").image()                     # PIL image(s) or uint8 (N, 3, H, W)
    >>> att = tl_lab.explain("grad_cam", bb, cat, "tabby")           # target: index, name, list, or None
    >>> att.maps.shape, att.layer, att.images.shape                 # maps at the input size, overlay pixels
    ((1, 224, 224), 'conv_head', (1, 224, 224, 3))
    >>> m = att.normalized("positive")                               # [0, 1], clipped at the 99th percentile
    >>> m.shape, float(m.min()) >= 0.0, float(m.max()) <= 1.0
    ((1, 224, 224), True, True)
    >>> ig = tl_lab.explain("integrated_gradients", bb, cat, "tabby", n_steps=128)
    >>> round(float(ig.diagnostics["relative_delta"][0]), 2)         # completeness error
    0.02
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch
from captum.attr import (
    GuidedBackprop,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from tl_lab.backbones.registry import Backbone
from tl_lab.inside.attribution_inputs import (
    baseline_tensor,
    prepare_images,
    resolve_layer,
    resolve_target,
    unwrap_model,
)
from tl_lab.inside.guided import GuidedReLU6, guided_copy

__all__ = ["Attribution", "GuidedReLU6", "MethodInfo", "explain", "get_method", "guided_copy", "list_methods",
           "register_method", "resolve_target", "unwrap_model"]

Baseline = Literal["black", "blur"] | torch.Tensor | None
# Above this completeness error (|delta| / |f(x) - f(baseline)|) an IG map gets a warning naming the fix. Lite0 at
# 224 px, cat photo: 29% at 50 steps, 10% at 64, 2% at 128, 0.2-0.5% at 256 (at 112 px: 0.7% at 64).
IG_DELTA_WARNING = 0.05
NormKind = Literal["abs", "positive", "signed"]


@dataclass(frozen=True)
class MethodInfo:
    """One explanation method: everything tl_lab knows about it, declared once (see the registry at the end).

    ``needs_layer``: it explains a layer's activations (default: the backbone's Grad-CAM stage).
    ``needs_baseline``: it compares the image with a reference ("black" by default).
    ``signed``: its maps carry evidence for (+) and against (-); display with ``normalized("signed")``.
    ``options``: the method-specific keywords :func:`explain` accepts for it.
    ``compute``: ``compute(call, images, targets, baselines) -> raw`` for one chunk of images, through captum.
    ``to_maps``: ``to_maps(raw, (H, W), call) -> (N, H, W)``: the raw output as one map per image at the input
    size (default: the sum over colour channels).
    """

    name: str
    display_name: str
    needs_layer: bool
    needs_baseline: bool
    captum_class: type
    description: str
    paper: str
    compute: Callable[..., torch.Tensor] = field(repr=False, compare=False)
    signed: bool = False
    options: tuple[str, ...] = ()
    to_maps: Callable[..., torch.Tensor] = field(default=lambda raw, size, call: raw.sum(1), repr=False, compare=False)


_METHODS: dict[str, MethodInfo] = {}  # filled by register_method() at the end of this module, in menu order


def register_method(info: MethodInfo) -> MethodInfo:
    """Add a method to :func:`list_methods` (and so to every menu built from it); refuses duplicate names."""
    if info.name in _METHODS:
        raise ValueError(f"a method named {info.name!r} is already registered")
    _METHODS[info.name] = info
    return info


def list_methods() -> list[MethodInfo]:
    """Every method, in menu order: ``[(m.display_name, m.name) for m in list_methods()]`` builds a dropdown."""
    return list(_METHODS.values())


def get_method(name: str) -> MethodInfo:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"unknown attribution method {name!r}; choose one of: {', '.join(_METHODS)}") from None


@dataclass(frozen=True, eq=False)
class Attribution:
    """Maps from one call of :func:`explain`.

    ``maps``: ``(N, H, W)`` float32 numpy at the input size (channels summed for per-pixel gradient methods).
    ``raw``: the method's own output before that: ``(N, C, H, W)`` for pixel methods, the layer-resolution
    ``(N, 1, h, w)`` map for Grad-CAM. ``images``: ``(N, H, W, 3)`` uint8 pixels for overlays (None when unknown).
    ``target``: the class index explained for each image. ``diagnostics``: method-specific numbers (IG
    convergence delta, steps, Occlusion window, notes about what the method could not do on this network).
    """

    method: str
    display_name: str
    maps: np.ndarray
    target: tuple[int, ...]
    layer: str | None = None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    images: np.ndarray | None = None
    raw: np.ndarray | None = field(default=None, repr=False)
    target_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.maps)

    def normalized(self, kind: NormKind = "abs", *, percentile: float = 99.0) -> np.ndarray:
        """Maps scaled for display, per image, clipped at the ``percentile`` of their magnitude.

        ``"abs"``: |map| in [0, 1]; ``"positive"``: only evidence for the class, in [0, 1]; ``"signed"``: [-1, 1].
        Clipping at a high percentile (as captum's visualisation does with its outlier threshold) keeps a few
        extreme pixels from making the rest of the map invisible.
        """
        if kind not in ("abs", "positive", "signed"):
            raise ValueError(f"kind must be 'abs', 'positive' or 'signed'; got {kind!r}")
        out = np.empty_like(self.maps, dtype=np.float32)
        for i, m in enumerate(self.maps):
            v = np.abs(m) if kind == "abs" else np.maximum(m, 0) if kind == "positive" else m
            mag = np.abs(v)
            scale = np.percentile(mag, percentile)
            scale = scale if scale > 0 else mag.max()
            lo = -1.0 if kind == "signed" else 0.0
            out[i] = np.clip(v / scale, lo, 1.0) if scale > 0 else 0.0
        return out


# ---- explain ----------------------------------------------------------------------------------------------------


def explain(
    method: str,
    model: Backbone | nn.Module | Any,
    images: Any,
    target: int | str | Sequence[int | str] | torch.Tensor | None = None,
    *,
    layer: str | nn.Module | None = None,
    baseline: Baseline = None,
    noise_tunnel: bool = False,
    nt_samples: int = 10,
    noise_level: float = 0.15,
    n_steps: int | None = None,
    window: int | None = None,
    stride: int | None = None,
    interpolate_mode: str | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int = 16,
    seed: int = 0,
) -> Attribution:
    """Explain ``model``'s score for ``target`` on ``images`` with one of :func:`list_methods`.

    Args:
        model: a :class:`~tl_lab.backbones.Backbone` (preferred), a training ``Run``, or a plain ``nn.Module``.
        images: for a Backbone, uint8 ``(N, 3, H, W)`` / ``(3, H, W)``, float pixels in [0, 1], or PIL image(s)
            (resized and cropped by ``backbone.transform``); for a plain module, its float input ``(N, C, H, W)``.
        target: class index, one per image (list/tensor), a class name (from ``backbone.meta["categories"]``, the
            Run's classes, or ``classes``), or None for the predicted class.
        layer: for Grad-CAM, a stage name or module path (default ``backbone.spec.gradcam_layer``) or a module.
        baseline: "black" (default for IG and Occlusion; true black pixels for a Backbone, zeros for a plain
            module), "blur" (a heavily blurred copy: Sturmfels et al. 2020, Distill) or a tensor like ``images``.
        noise_tunnel: average over ``nt_samples`` noisy copies (SmoothGrad), noise sd ``noise_level`` x range.
        n_steps: IG steps (default 50, captum's; a warning says when more are needed: Lite0 at 224 px needs about
            128 for a 2 % completeness error). ``window``/``stride``: Occlusion patch (default about H/7 and half that).
        interpolate_mode: how Grad-CAM's layer map is upsampled (default "bilinear"; captum's is "nearest").
        batch_size: images (or IG steps, noisy copies, occlusion patches) per forward pass; lower it to save memory.
        seed: for the noise tunnel's noise.
    Returns:
        an :class:`Attribution`; ``maps`` ``(N, H, W)``.

    The model is put in eval mode and its parameters stop requiring gradients for the call; both are restored
    afterwards, and no parameter's ``.grad`` changes.
    """
    info = get_method(method)
    _check_options(info, layer=layer, baseline=baseline, n_steps=n_steps, window=window, stride=stride,
                   interpolate_mode=interpolate_mode, noise_tunnel=noise_tunnel, nt_samples=nt_samples,
                   noise_level=noise_level, batch_size=batch_size)
    backbone, net, categories = unwrap_model(model, classes)
    device = next(net.parameters()).device
    x, display = prepare_images(backbone, images, device)
    n, _, h, w = x.shape

    diagnostics: dict[str, Any] = {}
    layer_name = layer_module = None
    if info.needs_layer:
        layer_name, layer_module = resolve_layer(backbone, net, layer)
    base = baseline_tensor(backbone, baseline if baseline is not None else "black", x) if info.needs_baseline else None
    if base is not None:
        diagnostics["baseline"] = "tensor" if torch.is_tensor(baseline) else baseline or "black"

    with _attribution_mode(net), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        logits = _forward(net, x, batch_size)
        targets = resolve_target(target, n, categories, logits=logits)
        diagnostics["target_prob"] = logits.softmax(1)[torch.arange(n), targets].numpy()
        diagnostics["predicted"] = logits.argmax(1).numpy()
        call = _Call(net, diagnostics, batch_size, nt_samples if noise_tunnel else 0,
                     float(noise_level * (x.max() - x.min())) if noise_tunnel else 0.0,
                     {"n_steps": n_steps, "window": window, "stride": stride,
                      "interpolate_mode": interpolate_mode or "bilinear"}, layer_name, layer_module)
        if noise_tunnel:
            diagnostics.update(noise_tunnel="smoothgrad", nt_samples=nt_samples, noise_sd=call.stdev)
        try:
            raw = call.all_chunks(info.compute, x, targets, base)
        except _NoGradient as exc:
            # A ViT's registered Grad-CAM stage may be its last block, whose patch tokens get no gradient: the
            # default then moves one stage down, and says so (an explicit layer is never overridden).
            if not (exc.tokens and layer is None and backbone is not None and backbone.stages.index(layer_name) > 0):
                raise
            previous = backbone.stages[backbone.stages.index(layer_name) - 1]
            diagnostics["layer_note"] = (f"default stage {layer_name!r} gets no gradient on its patch tokens; "
                                         f"used {previous!r} (its input) instead")
            layer_name = call.layer_name = previous
            call.layer = net.get_submodule(previous)
            raw = call.all_chunks(info.compute, x, targets, base)
        if call.deltas:
            _ig_report(diagnostics, net, x, base, targets, torch.cat(call.deltas), raw, batch_size, noise_tunnel)

    maps = info.to_maps(raw, (h, w), call)
    names = tuple(categories[t] for t in targets.tolist()) if categories else None
    return Attribution(
        method=method,
        display_name=info.display_name + (" + SmoothGrad" if noise_tunnel else ""),
        maps=maps.numpy().astype(np.float32),
        target=tuple(targets.tolist()),
        layer=layer_name,
        diagnostics=MappingProxyType(diagnostics),
        images=display,
        raw=raw.numpy(),
        target_names=names,
    )


@dataclass
class _Call:
    """One explain() call's settings, shared by the per-method functions below."""

    net: nn.Module
    diagnostics: dict
    batch_size: int
    nt_samples: int  # 0: no noise tunnel
    stdev: float
    options: dict
    layer_name: str | None = None
    layer: nn.Module | None = None
    deltas: list = field(default_factory=list)
    memo: dict = field(default_factory=dict)  # per-call state a method reuses across chunks

    def all_chunks(self, compute, x: torch.Tensor, targets: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
        self.deltas = []
        raws = []
        for lo in range(0, len(x), self.batch_size):
            chunk = slice(lo, lo + self.batch_size)
            raw = compute(self, x[chunk], targets[chunk].tolist(), None if base is None else base[chunk])
            raws.append(raw.detach().float().cpu())
        return torch.cat(raws)

    def attribute(self, algorithm, xb: torch.Tensor, tb: list[int], **kwargs: Any) -> Any:
        """``algorithm.attribute``, wrapped in captum's NoiseTunnel (SmoothGrad) when asked."""
        if not self.nt_samples:
            return algorithm.attribute(xb, target=tb, **kwargs)
        # IG batches its own steps, so all noisy copies go in one call (its deltas then come out image-major).
        per = self.nt_samples if "internal_batch_size" in kwargs else max(1, self.batch_size // len(xb))
        return NoiseTunnel(algorithm).attribute(xb, nt_type="smoothgrad", nt_samples=self.nt_samples,
                                                nt_samples_batch_size=per, stdevs=self.stdev, target=tb, **kwargs)


def _saliency(call: _Call, xb, tb, bb) -> torch.Tensor:
    return call.attribute(Saliency(call.net), xb.detach().requires_grad_(), tb, abs=True)


def _guided_backprop(call: _Call, xb, tb, bb) -> torch.Tensor:
    if "guided_net" not in call.memo:  # one copy per explain() call, shared by its chunks
        call.memo["guided_net"], report = guided_copy(call.net)
        call.diagnostics.update(report)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        return call.attribute(GuidedBackprop(call.memo["guided_net"]), xb.detach().requires_grad_(), tb)


def _integrated_gradients(call: _Call, xb, tb, bb) -> torch.Tensor:
    steps = call.options["n_steps"] or 50
    raw, delta = call.attribute(IntegratedGradients(call.net), xb, tb, baselines=bb, n_steps=steps,
                                internal_batch_size=call.batch_size, return_convergence_delta=True)
    call.deltas.append(delta.detach().reshape(len(xb), -1).abs().mean(1) if call.nt_samples else delta.detach())
    call.diagnostics["n_steps"] = steps
    return raw


def _occlusion(call: _Call, xb, tb, bb) -> torch.Tensor:
    c, h = xb.shape[1], xb.shape[2]
    win = call.options["window"] or max(3, round(h / 7))
    step = call.options["stride"] or max(1, win // 2)
    call.diagnostics.update(window=win, stride=step)
    return call.attribute(Occlusion(call.net), xb, tb, baselines=bb, sliding_window_shapes=(c, win, win),
                          strides=(c, step, step), perturbations_per_eval=max(1, call.batch_size // len(xb)))


def _check_options(info: MethodInfo, **kw: Any) -> None:
    """Refuse options the method would ignore, naming which methods use them (a silent no-op misleads)."""

    def uses(m: MethodInfo, key: str) -> bool:
        return m.needs_layer if key == "layer" else m.needs_baseline if key == "baseline" else key in m.options

    for key in ("layer", "baseline", "n_steps", "window", "stride", "interpolate_mode"):
        if kw[key] is not None and not uses(info, key):
            users = ", ".join(m.name for m in _METHODS.values() if uses(m, key))
            raise ValueError(f"{info.name} takes no {key}; it is an option of: {users}. Leave it out.")
    if kw["noise_tunnel"] and (not isinstance(kw["nt_samples"], int) or kw["nt_samples"] < 1 or kw["noise_level"] <= 0):
        raise ValueError("noise_tunnel needs nt_samples >= 1 and noise_level > 0 (e.g. nt_samples=10, noise_level=0.15)")
    if kw["interpolate_mode"] not in (None, "nearest", "bilinear", "bicubic", "area"):
        raise ValueError(f"interpolate_mode must be 'bilinear' (default), 'bicubic', 'nearest' or 'area'; "
                         f"got {kw['interpolate_mode']!r}")
    if kw["n_steps"] is not None and (not isinstance(kw["n_steps"], int) or kw["n_steps"] < 2):
        raise ValueError(f"n_steps must be an int >= 2 (e.g. 50); got {kw['n_steps']!r}")
    if not isinstance(kw["batch_size"], int) or kw["batch_size"] < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {kw['batch_size']!r}")


@contextmanager
def _attribution_mode(net: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the call (inputs alone need gradients); both restored afterwards."""
    modes = [(m, m.training) for m in net.modules()]
    grads = [(p, p.requires_grad) for p in net.parameters()]
    net.eval()
    for p, _ in grads:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, req in grads:
            p.requires_grad_(req)


@torch.no_grad()
def _forward(net: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([net(x[lo : lo + batch_size]).float().cpu() for lo in range(0, len(x), batch_size)])


def _ig_report(diag: dict, net: nn.Module, x: torch.Tensor, base: torch.Tensor, targets: torch.Tensor,
               delta: torch.Tensor, raw: torch.Tensor, batch_size: int, noise_tunnel: bool) -> None:
    """Completeness check in numbers: f(x) - f(baseline) beside the map's sum and captum's delta."""
    idx = torch.arange(len(x))
    diff = (_forward(net, x, batch_size)[idx, targets] - _forward(net, base, batch_size)[idx, targets]).numpy()
    delta = delta.float().cpu().numpy()
    diag.update(convergence_delta=delta, output_difference=diff, attribution_sum=raw.sum((1, 2, 3)).numpy(),
                relative_delta=np.abs(delta) / np.maximum(np.abs(diff), 1e-12))
    if noise_tunnel:
        diag["note"] = ("with the noise tunnel, convergence_delta is the mean |delta| over the noisy copies; "
                        "completeness holds for each noisy copy, not for the clean image")
    worst = float(diag["relative_delta"].max()) if len(diff) else 0.0
    if worst > IG_DELTA_WARNING and not noise_tunnel:
        steps = diag["n_steps"]
        diag["warning"] = (f"integrated gradients has not converged: the map misses f(x) - f(baseline) by up to "
                           f"{worst:.0%}; raise n_steps (now {steps}, try {4 * steps})")
        warnings.warn(diag["warning"], stacklevel=3)


# ---- Grad-CAM on feature maps or token grids -------------------------------------------------------------------


class _NoGradient(ValueError):
    def __init__(self, message: str, *, tokens: bool) -> None:
        super().__init__(message)
        self.tokens = tokens



def _grad_cam(call: _Call, xb: torch.Tensor, tb: list[int], bb: None = None) -> torch.Tensor:
    """captum's LayerGradCam on ``layer``; transformer tokens (N, T, D) are viewed as a (N, D, s, s) grid first.

    captum averages gradients over dims 2+ and sums over dim 1, i.e. it assumes channels first. For a ViT block
    the output is (N, 1 + s*s, D): the patch tokens are reshaped to a grid (the class token is dropped), as
    jacobgil's pytorch-grad-cam does with its ``reshape_transform``. The grid passes through an ``nn.Identity``
    that captum hooks, so the gradients are captum's own.
    """
    net, layer, layer_name, diagnostics = call.net, call.layer, call.layer_name, call.diagnostics
    grid = nn.Identity()
    seen: dict[str, Any] = {}

    def to_grid(module, inputs, out):
        if torch.is_tensor(out) and out.dim() == 4:
            seen["shape"] = tuple(out.shape[1:])
            return grid(out)
        if torch.is_tensor(out) and out.dim() == 3:
            n, t, d = out.shape
            s, cls = math.isqrt(t - 1), 1
            if s * s != t - 1:
                s, cls = math.isqrt(t), 0
            if s * s != t - cls:
                raise ValueError(f"Grad-CAM cannot lay the {t} tokens of {layer_name!r} on a square grid; choose a "
                                 f"convolutional layer or a transformer block with 1 + s*s tokens")
            seen.update(shape=(d, s, s), tokens=t, class_token=bool(cls))
            g = grid(out[:, cls:].transpose(1, 2).reshape(n, d, s, s))
            return torch.cat([out[:, :cls], g.flatten(2).transpose(1, 2)], dim=1)
        shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ValueError(f"Grad-CAM needs a layer whose output is a feature map (N, C, H, W) or transformer tokens "
                         f"(N, T, D); {layer_name!r} gives {shape}. Choose a stage such as the backbone's "
                         f"spec.gradcam_layer")

    handle = layer.register_forward_hook(to_grid)
    try:
        cam = call.attribute(LayerGradCam(net, grid), xb, tb, relu_attributions=True)
        # All zero after the ReLU: negative evidence, or (last ViT block) no gradient at all? The signed map tells.
        no_gradient = not cam.detach().abs().sum() and not LayerGradCam(net, grid).attribute(xb, target=tb).abs().sum()
    finally:
        handle.remove()
    diagnostics["layer_shape"] = seen.get("shape")
    if "tokens" in seen:
        diagnostics["note"] = (f"{layer_name!r} outputs {seen['tokens']} tokens; Grad-CAM used its patch tokens "
                               f"as a {seen['shape'][1]}x{seen['shape'][2]} grid"
                               + (" (class token dropped)" if seen["class_token"] else ""))
    if no_gradient:
        why = ("no gradient reaches its patch tokens. A ViT's head reads only the class token, so the last block's "
               "patch tokens never get one: use an earlier block (e.g. the one before it, the input of the last "
               "block, as pytorch-grad-cam does)" if "tokens" in seen else
               "the target's score does not depend on this layer (a constant output?); choose another stage")
        raise _NoGradient(f"Grad-CAM at {layer_name!r} is zero everywhere: {why}", tokens="tokens" in seen)
    empty = [i for i, c in enumerate(cam.detach()) if not c.abs().sum()]
    if empty:
        diagnostics["zero_maps"] = diagnostics.get("zero_maps", 0) + len(empty)
        diagnostics["zero_maps_note"] = ("Grad-CAM is all zero for some images: the layer's evidence for the target "
                                         "is entirely negative and the ReLU removes it; try the predicted class")
    return cam


# ---- guided backprop for ReLU and ReLU6 --------------------------------------------------------------------------


# ---- the registry: one entry per method, in menu order -------------------------------------------------------------


register_method(MethodInfo(
    "saliency", "Saliency (gradient)", False, False, Saliency,
    "How much each pixel's tiny change moves the class score: |gradient|, summed over colour channels.",
    "Simonyan, Vedaldi & Zisserman 2014, Deep Inside Convolutional Networks (arXiv:1312.6034)",
    compute=_saliency))
register_method(MethodInfo(
    "integrated_gradients", "Integrated Gradients", False, True, IntegratedGradients,
    "Gradients averaged along the straight path from a baseline image to the input, times the difference; "
    "the map adds up to f(input) - f(baseline).",
    "Sundararajan, Taly & Yan 2017, Axiomatic Attribution for Deep Networks (arXiv:1703.01365)",
    compute=_integrated_gradients, signed=True, options=("n_steps",)))
register_method(MethodInfo(
    "grad_cam", "Grad-CAM", True, False, LayerGradCam,
    "A layer's feature maps weighted by the class score's average gradient, ReLU'd and upsampled: coarse "
    "'where does the network look' regions.",
    "Selvaraju et al. 2017, Grad-CAM (arXiv:1610.02391)",
    compute=_grad_cam, options=("interpolate_mode",),
    to_maps=lambda raw, size, call: LayerAttribution.interpolate(raw, size, call.options["interpolate_mode"])[:, 0]))
register_method(MethodInfo(
    "occlusion", "Occlusion", False, True, Occlusion,
    "Slide a patch of baseline colour over the image and record how much the class score drops.",
    "Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks (arXiv:1311.2901)",
    compute=_occlusion, signed=True, options=("window", "stride"),
    to_maps=lambda raw, size, call: raw[:, 0]))  # every channel of a window gets the same value
register_method(MethodInfo(
    "guided_backprop", "Guided Backprop", False, False, GuidedBackprop,
    "The gradient with negative values stopped at every ReLU/ReLU6: sharp, edge-like maps (which Adebayo et al. "
    "2018 showed barely depend on the weights: see tl_lab.inside.sanity).",
    "Springenberg et al. 2015, Striving for Simplicity (arXiv:1412.6806)",
    compute=_guided_backprop, signed=True))
