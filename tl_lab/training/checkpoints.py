"""Checkpoints as safetensors plus JSON: never a pickle.

A checkpoint stores what the known pretrained backbone does not already hold: the trainable parameters and every
buffer (BatchNorm statistics). For a random-init backbone it stores the whole state. Resumable checkpoints also
carry the optimizer state (tensors in the safetensors file, the rest in its metadata) and the CPU RNG state, so a
resumed run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

__all__ = ["CheckpointMismatchError", "state_keys", "model_state_to_save", "save_checkpoint", "load_checkpoint", "apply_model_state"]

_MODEL = "model."
_OPT = "optim."
_RNG = "rng.cpu"


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model they are loaded into."""


def state_keys(model: nn.Module, *, full: bool, buffer_prefixes: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The state-dict names a checkpoint of ``model`` stores: trainable parameters + buffers (everything when ``full``).

    ``buffer_prefixes`` limits the buffers to those under these module paths (the stages whose BatchNorm
    statistics can change); None keeps every buffer. ``fit`` computes this once per run and passes it as ``keys``.
    """
    keep = {name for name, p in model.named_parameters() if full or p.requires_grad}
    keep |= {name for name, _ in model.named_buffers()
             if full or buffer_prefixes is None or name.startswith(buffer_prefixes)}
    return tuple(k for k in model.state_dict(keep_vars=True) if k in keep)


def model_state_to_save(
    model: nn.Module, *, full: bool, buffer_prefixes: tuple[str, ...] | None = None,
    keys: tuple[str, ...] | None = None,
) -> dict[str, torch.Tensor]:
    """Trainable parameters + buffers (or everything when ``full``), detached, contiguous, on the CPU.

    ``keys``: the names from :func:`state_keys`, when already known (looking them up walks the whole model,
    which costs more than saving a small head every epoch).
    """
    if keys is None:
        keys = state_keys(model, full=full, buffer_prefixes=buffer_prefixes)
    out = {}
    for key in keys:
        owner, _, attr = key.rpartition(".")
        out[key] = getattr(model.get_submodule(owner), attr).detach().cpu().contiguous()
    return out


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    full: bool,
    buffer_prefixes: tuple[str, ...] | None = None,
    keys: tuple[str, ...] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``path`` (``.safetensors``) atomically: model tensors, optimizer state, RNG, JSON ``extra``."""
    path = Path(path)
    tensors = {_MODEL + k: v for k, v in model_state_to_save(model, full=full, buffer_prefixes=buffer_prefixes, keys=keys).items()}
    meta: dict[str, str] = {"extra": json.dumps(extra or {})}
    if optimizer is not None:
        opt_state = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, state in opt_state["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value) and value.dim() > 0:
                    tensors[f"{_OPT}{idx}.{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[key] = float(value)
        groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]} for g in opt_state["param_groups"]]
        meta["optimizer"] = json.dumps({"param_groups": groups, "scalars": scalars})
        tensors[_RNG] = torch.get_rng_state()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return ``(model_state, info)``; ``info`` has ``extra`` and, for resumable files, ``optimizer`` and ``rng``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    model_state = {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
    info: dict[str, Any] = {"extra": json.loads(meta.get("extra", "{}"))}
    if "optimizer" in meta:
        opt = json.loads(meta["optimizer"])
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith(_OPT):
                idx, name = key[len(_OPT) :].split(".", 1)
                state.setdefault(int(idx), {})[name] = value
        for idx, scalars in opt["scalars"].items():
            for name, value in scalars.items():
                state.setdefault(int(idx), {})[name] = torch.tensor(value)
        info["optimizer"] = {"state": state, "param_groups": opt["param_groups"]}
        info["rng"] = tensors.get(_RNG)
    return model_state, info


def apply_model_state(model: nn.Module, state: dict[str, torch.Tensor], *, expect_full: bool = False) -> None:
    """Load a (partial) state into ``model``; unknown keys or wrong shapes raise with the keys named."""
    own = model.state_dict()
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(k for k in state if k in own and own[k].shape != state[k].shape)
    missing = sorted(k for k in own if k not in state) if expect_full else []
    if unexpected or wrong or missing:
        parts = []
        if unexpected:
            parts.append(f"keys not in the model: {_few(unexpected)}")
        if wrong:
            parts.append("shape mismatch: " + _few([f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong]))
        if missing:
            parts.append(f"keys missing from the checkpoint: {_few(missing)}")
        raise CheckpointMismatchError(
            "checkpoint does not match this backbone (" + "; ".join(parts) + "). "
            "Load it into the backbone and number of classes it was trained with (see the run's run.json)."
        )
    model.load_state_dict(state, strict=False)


def _few(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" … (+{len(items) - n} more)" if len(items) > n else "")
