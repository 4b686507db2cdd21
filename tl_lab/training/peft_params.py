"""What trains inside a trainable stage: everything, the norm layers, the biases, or low-rank (LoRA) updates.

Parameter-efficient fine-tuning adapts a pretrained network by training a small, chosen part of it:

- ``"norm"``: only the normalisation layers' affine scale and shift (``gamma``, ``beta``). Frankle, Schwab & Morcos,
  "Training BatchNorm and Only BatchNorm", ICLR 2021: these few parameters alone reach useful accuracy.
- ``"bias"``: every bias (for a convnet mostly the norm layers' shifts ``beta``). BitFit: Ben Zaken, Ravfogel &
  Goldberg, ACL 2022.
- ``"lora"``: each convolution (``groups=1``; depthwise convolutions are left out) and linear layer ``W`` gets a
  trainable low-rank update, ``y = W x + (alpha / r) B A x`` with ``A`` (``r x in``, Kaiming-uniform) and ``B``
  (``out x r``, zero: the network starts exactly as pretrained), ``W`` frozen. Hu et al., "LoRA", ICLR 2022. The
  update merges into ``W`` after training (:func:`merge_lora`), so inference costs nothing extra. tl_lab uses the
  ``peft`` library (``pip install "tl-lab[peft]"``) with ``alpha = r`` (scale 1; peft's default is ``alpha = 8``).
  Convolutions that pad their input themselves (TensorFlow "same" padding: EfficientNet-Lite's 3x3 stem) are left
  out; the Lite backbones' 1x1 convolutions (a same-padding class that pads nothing) become plain ``nn.Conv2d``
  layers holding the same weights first, because peft builds its factors from the layer's own class.

For a convolution with ``c_in`` inputs, ``c_out`` outputs and a ``k x k`` kernel LoRA adds
``r * (c_in * k * k + c_out)`` parameters (``A`` is a ``k x k`` convolution to ``r`` channels, ``B`` a 1x1 one);
for a linear layer ``r * (in + out)``. :func:`count_chosen` computes these exactly, before anything is added.

Example::

    >>> from tl_lab import FreezePlan, load_backbone
    >>> bb = load_backbone(num_classes=10)
    >>> FreezePlan(trainable_from="stage6", params="norm").summary(bb).trainable   # BN affine of stage6+ and the head
    38666
"""

from __future__ import annotations

from typing import Iterator, Literal, get_args

from torch import nn

__all__ = ["ParamChoice", "PARAM_CHOICES", "chosen_parameters", "count_chosen", "lora_targets", "add_lora",
           "merge_lora", "is_lora_layer", "PEFT_MISSING"]

ParamChoice = Literal["all", "norm", "bias", "lora"]
PARAM_CHOICES: tuple[str, ...] = get_args(ParamChoice)
PEFT_MISSING = ('LoRA needs the peft library, an optional extra of tl_lab: pip install "tl-lab[peft]" '
                "(or pip install peft), then restart the kernel")
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def chosen_parameters(module: nn.Module, choice: str) -> list[nn.Parameter]:
    """The parameters of ``module`` that train under ``choice`` (LoRA: the factors :func:`add_lora` added)."""
    if choice == "all":
        return list(module.parameters())
    if choice == "norm":
        return [p for m in module.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)]
    if choice == "bias":
        return [p for name, p in module.named_parameters() if name.rsplit(".", 1)[-1] == "bias" and "lora_" not in name]
    if choice == "lora":
        return [p for name, p in module.named_parameters() if "lora_" in name]
    raise ValueError(f"params must be one of {', '.join(map(repr, PARAM_CHOICES))}; got {choice!r}")


def count_chosen(module: nn.Module, choice: str, *, rank: int | None = None) -> int:
    """How many parameters train under ``choice``; for ``"lora"`` the factors of rank ``rank``, added or not yet."""
    if choice != "lora":
        return sum(p.numel() for p in chosen_parameters(module, choice))
    total = 0
    for _, layer in _lora_candidates(module):
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += rank * (layer.in_channels * kh * kw + layer.out_channels)
        else:
            total += rank * (layer.in_features + layer.out_features)
    return total


def lora_targets(module: nn.Module, prefix: str = "") -> list[str]:
    """Module paths (under ``prefix``) that LoRA adapts: convolutions with ``groups=1`` and linear layers."""
    return [f"{prefix}.{name}" if prefix and name else (name or prefix) for name, _ in _lora_candidates(module)]


def is_lora_layer(module: nn.Module) -> bool:
    """A layer peft wrapped (it holds ``base_layer`` and ``lora_A``/``lora_B``)."""
    return hasattr(module, "base_layer") and hasattr(module, "lora_A")


def add_lora(model: nn.Module, stages: tuple[str, ...] | list[str], *, rank: int) -> int:
    """Wrap the convolutions and linear layers of ``model``'s ``stages`` with LoRA factors of rank ``rank``, in place.

    Returns how many layers were wrapped (stages already adapted, e.g. by an earlier ``fit``, are skipped). The
    base weights are left untouched; only the factors will train. One ``peft`` call for all stages.
    """
    targets = [t for stage in stages if not any(is_lora_layer(m) for m in model.get_submodule(stage).modules())
               for t in lora_targets(model.get_submodule(stage), stage)]
    if not targets:
        return 0
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:
        raise ImportError(PEFT_MISSING) from exc
    for path in targets:
        layer = model.get_submodule(path)
        if isinstance(layer, nn.Conv2d) and type(layer) is not nn.Conv2d:
            _replace(model, path, _plain_conv(layer))
    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=targets, bias="none")
    inject_adapter_in_model(config, model)
    return len(targets)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight (``W <- W + (alpha/r) B A``) and drop the wrappers, in place.

    The merged model computes the same outputs with plain layers (no ``peft`` needed to use it).
    """
    for name, module in list(model.named_modules()):
        if is_lora_layer(module):
            module.merge()
            _replace(model, name, module.get_base_layer())
    return model


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)


def _plain_conv(layer: nn.Conv2d) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` sharing ``layer``'s weight and bias tensors (same outputs: ``layer`` pads nothing)."""
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                     layer.dilation, layer.groups, bias=layer.bias is not None, padding_mode=layer.padding_mode,
                     device=layer.weight.device, dtype=layer.weight.dtype)
    conv.weight, conv.bias = layer.weight, layer.bias
    conv.train(layer.training)
    return conv


def _adaptable(layer: nn.Module) -> bool:
    """A layer peft's LoRA can wrap here: linear, or a ``groups=1`` convolution that does not pad by itself."""
    if isinstance(layer, nn.Linear):
        return True
    if not isinstance(layer, nn.Conv2d) or layer.groups != 1:
        return False
    if type(layer) is nn.Conv2d:
        return True
    pad = getattr(layer, "static_padding", None)  # efficientnet_lite_pytorch's "same" convolutions
    return isinstance(pad, nn.Module) and not isinstance(pad, nn.modules.padding._ConstantPadNd)


def _lora_candidates(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """(path, base layer) of each LoRA target, inside peft's wrappers when they are already there."""
    if is_lora_layer(module):
        yield prefix, module.get_base_layer()
        return
    if _adaptable(module):
        yield prefix, module
        return
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        return
    for name, child in module.named_children():
        yield from _lora_candidates(child, f"{prefix}.{name}" if prefix else name)
