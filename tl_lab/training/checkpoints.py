"""Checkpoints as safetensors plus JSON: never a pickle.

A checkpoint stores what the known pretrained backbone does not already hold: the trainable parameters and every
buffer (BatchNorm statistics). For a random-init backbone it stores the whole state. Resumable checkpoints also
carry the optimizer state (tensors in the safetensors file, the rest in its metadata) and the CPU RNG state, so a
resumed run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from tl_lab.training.terms import CONFIG_KEYS, describe_terms

__all__ = ["CheckpointMismatchError", "Keeper", "state_keys", "model_state_to_save", "save_checkpoint", "load_checkpoint",
           "apply_model_state", "load_last", "resume_into", "checkpoint_size", "load_onto_pretrained"]

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


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def _few(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" … (+{len(items) - n} more)" if len(items) > n else "")


class Keeper:
    """What a run keeps, and where: the best weights (a file in ``run_dir``, or a copy in memory) and the last state.

    ``changing``: the stages whose state can change while training (trainable parameters or moving BatchNorm
    statistics, ``plan.summary(backbone).changing_stages``); a checkpoint stores their tensors only (leaving out the
    statistics of BatchNorm layers locked in eval mode, which cannot change), or everything
    when ``full`` (a random-init backbone). The names are looked up once: a head's checkpoint each epoch then costs
    about 0.1 ms.
    """

    def __init__(self, model: nn.Module, *, changing: tuple[str, ...], full: bool, run_dir: Path | None) -> None:
        self.model = model
        self.full = full
        self.run_dir = run_dir
        keys = state_keys(model, full=full, buffer_prefixes=tuple(f"{s}." for s in changing))
        if not full:  # statistics of BatchNorm layers locked in eval mode (bn="eval") never change: not stored
            locked = {id(m) for m in getattr(model, "_eval_locked", ())}
            params = {n for n, _ in model.named_parameters()}
            keys = tuple(k for k in keys if k in params or id(model.get_submodule(k.rpartition(".")[0])) not in locked)
        self.keys = keys
        self.best: Path | dict[str, torch.Tensor] | None = None
        self.unwritable: str | None = None  # why the run folder stopped taking checkpoints (a full disk), if it did

    def state(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint holds, on the CPU (for a model on the CPU: the model's own tensors, not copies)."""
        return model_state_to_save(self.model, full=self.full, keys=self.keys)

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of :meth:`state` that later training steps do not change: what an out-of-memory retry restores."""
        return {k: v.clone() for k, v in self.state().items()}

    def keep_best(self, extra: dict[str, Any]) -> Path | None:
        """Keep the current weights as the best: ``best.safetensors`` in the run folder, else a copy in memory.

        When the folder stops taking files (a full disk), the copy goes to memory and :attr:`unwritable` says why:
        what was trained is never lost to a failed write.
        """
        if self.run_dir is not None:
            try:
                self.best = save_checkpoint(self.run_dir / "best.safetensors", self.model, full=self.full,
                                            keys=self.keys, extra=extra)
                return self.best
            except (OSError, SafetensorError) as exc:
                self._cannot_write(exc)
        self.best = self.snapshot()
        return None

    def save_last(self, optimizer: torch.optim.Optimizer, extra: dict[str, Any]) -> Path | None:
        """``last.safetensors``: weights, optimizer state and RNG, what ``fit(resume=run_dir)`` continues from."""
        if self.run_dir is None:
            return None
        try:
            return save_checkpoint(self.run_dir / "last.safetensors", self.model, full=self.full, keys=self.keys,
                                   optimizer=optimizer, extra=extra)
        except (OSError, SafetensorError) as exc:
            self._cannot_write(exc, optimizer)
            return None

    def _cannot_write(self, exc: BaseException, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Stop writing checkpoints into ``run_dir`` and say which folder refused, why, and what one checkpoint needs."""
        folder, self.run_dir = self.run_dir, None
        for name in ("best.tmp", "last.tmp"):  # a half-written file only takes more of the space that ran out
            (folder / name).unlink(missing_ok=True)
        weights = sum(t.numel() * t.element_size() for t in self.state().values())
        moments = 0
        if optimizer is not None:
            moments = sum(v.numel() * v.element_size() for st in optimizer.state.values() for v in st.values()
                          if torch.is_tensor(v))
        full = "No space left" in str(exc) or getattr(exc, "errno", None) == errno.ENOSPC
        why = "the disk holding it is full (no space left on device)" if full else f"writing failed ({exc})"
        self.unwritable = (
            f"checkpoints could not be written to {folder}: {why}; one checkpoint needs about {_mb(weights)} "
            f"(best.safetensors; last.safetensors with the optimizer state about {_mb(weights + moments)}). The run "
            f"trains on and keeps its best weights in memory (run.model holds them when it ends); free space there or "
            f"pass run_dir= on another disk to keep files"
        )
    def restore_best(self) -> bool:
        """Load the kept best weights into the model; False when nothing was kept."""
        if self.best is None:
            return False
        state = load_checkpoint(self.best)[0] if isinstance(self.best, Path) else self.best
        apply_model_state(self.model, state)
        return True


def load_last(run_dir: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, Any]]:
    """``(run.json as a dict, model state, info)`` of a run folder to resume; names what is missing."""
    info_path, last = run_dir / "run.json", run_dir / "last.safetensors"
    if not info_path.exists() or not last.exists():
        raise FileNotFoundError(f"nothing to resume in {run_dir}: it needs run.json and last.safetensors")
    state, info = load_checkpoint(last)
    return json.loads(info_path.read_text()), state, info


_RESUME_KEYS = ("backbone", "pretrained", "num_classes", "plan", "data", "epochs", "lr", "batch_size", "weight_decay",
                "optimizer", "schedule", "augment", "label_smoothing", "seed", *CONFIG_KEYS)  # the objective, the terms


def resume_into(run: Any, opt: torch.optim.Optimizer, keeper: Keeper, run_dir: Path) -> int:
    """Continue ``run`` (a fresh :class:`~tl_lab.training.run.Run`) from ``run_dir``: weights, optimizer state, RNG,
    history and best; returns the epochs already done. Refuses other settings, naming each one that differs."""
    saved, state, info = load_last(Path(run_dir))
    diff = [k for k in _RESUME_KEYS if saved["config"].get(k) != run.config.get(k)]
    if diff:
        raise ValueError(
            "resume needs the same settings as the stopped run; these differ: "
            + ", ".join(f"{k} (was {_shown(k, saved['config'])}, now {_shown(k, run.config)})" for k in diff)
        )
    apply_model_state(run.model, state)
    opt_state = info["optimizer"]
    opt.load_state_dict({"state": opt_state["state"], "param_groups": opt_state["param_groups"]})
    if info.get("rng") is not None:
        torch.set_rng_state(info["rng"])
    run.name = saved["name"]
    run.history = saved["history"]
    run.best = {k: v for k, v in saved["best"].items() if not k.startswith("test_")}
    run.notes.append(f"resumed from {run_dir} after epoch {info['extra']['epoch']}")
    best = run_dir / "best.safetensors"
    if best.exists():
        run.checkpoint = keeper.best = best
    return int(info["extra"]["epoch"])


def _shown(key: str, config: dict) -> str:
    return describe_terms(config.get(key)) if key == "terms" else repr(config.get(key))


def checkpoint_size(path: str | Path, model: nn.Module) -> dict[str, float]:
    """How much of ``model`` a checkpoint holds: ``{"stored_kb", "full_kb", "fraction"}`` (tensor bytes, 1 kB = 1000 B).

    A checkpoint stores only what training changed (trainable tensors and the BatchNorm statistics of the stages
    that re-estimate them), so a norm-only, bias-only or LoRA run fits in a few hundred kB where the whole model
    takes megabytes. ``full_kb`` counts the pretrained model's own tensors (LoRA's factors left out).
    """
    state, _ = load_checkpoint(path)
    stored = sum(t.numel() * t.element_size() for t in state.values())
    full = sum(t.numel() * t.element_size() for k, t in model.state_dict().items() if "lora_" not in k)
    return {"stored_kb": stored / 1000, "full_kb": full / 1000, "fraction": stored / max(full, 1)}


def load_onto_pretrained(backbone: Any, path: str | Path, plan: Any) -> nn.Module:
    """Put a run's checkpoint onto a freshly loaded pretrained ``backbone`` trained under ``plan``; returns the model.

    ``plan.apply`` first adds what the run added (LoRA factors), then the checkpoint's tensors replace the changed
    ones: the model then computes what the run's kept model computed.

    Example::

        >>> plan, data = tl_lab.FreezePlan("stage7", params="bias"), tl_lab.load_dataset("digits", shots=3, image_size=32)
        >>> run = tl_lab.fit("efficientnet_lite0", data, plan=plan, epochs=1, progress=False, run_dir="bias_run")
        >>> bb = load_backbone(num_classes=10)                      # pretrained, unchanged
        >>> model = load_onto_pretrained(bb, run.checkpoint, plan)  # run.checkpoint: best.safetensors, biases only
        >>> x = data.test.images[:4]
        >>> bool(torch.allclose(tl_lab.training.run.predict_images(bb, x, image_size=32, device="cpu"),
        ...                     run.predict(x), atol=1e-5))
        True
    """
    plan.apply(backbone)
    apply_model_state(backbone.model, load_checkpoint(path)[0])
    backbone.model.eval()
    return backbone.model
