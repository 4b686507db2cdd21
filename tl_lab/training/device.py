"""Which device to compute on: cuda, then mps, then cpu.

Why one function: the training loop, the benchmarks and ``tl-lab doctor`` must agree on the device a learner will
get, and a learner who asks for a GPU that is not there must hear so at once (with what *is* available), not see
a crash deep inside the first forward pass.

    >>> from tl_lab.training.device import pick_device, device_summary
    >>> pick_device()                        # on a laptop without a GPU
    device(type='cpu')
    >>> device_summary(pick_device())        # doctest: +SKIP
    {'device': 'cpu', 'type': 'cpu', 'threads': 2}
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["pick_device", "device_summary", "available_devices", "dist_info", "rank_device", "distributed",
           "all_reduce_sums"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> tuple[str, ...]:
    """The device names this machine can use, best first, e.g. ``('cuda:0', 'cpu')``."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return tuple(names)


def _unavailable(asked: str, why: str) -> ValueError:
    return ValueError(
        f"device={asked!r} was asked for but {why}; available here: {', '.join(available_devices())}. "
        "Use device='auto' (picks the best of them) or one of those."
    )


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve ``device`` to a ``torch.device`` this machine can use.

    ``"auto"`` picks cuda, then mps, then cpu. An explicit device (``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"``
    or a ``torch.device``) is returned as asked when it exists, and refused with a ``ValueError`` naming the
    available devices when it does not: never silently moved to another device.

        >>> pick_device("cpu")
        device(type='cpu')
        >>> pick_device("cuda")                  # doctest: +SKIP
        ValueError: device='cuda' was asked for but no CUDA GPU is visible ...; available here: cpu. ...
    """
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {device!r}; choose 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' "
            f"(available here: {', '.join(available_devices())})"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            if torch.version.cuda is None:
                why = "this PyTorch was built without CUDA (a CPU-only wheel)"
            else:
                why = f"no CUDA GPU is visible (PyTorch built for CUDA {torch.version.cuda})"
            raise _unavailable(str(device), why)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise _unavailable(str(device), f"only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    elif dev.type == "mps" and not _mps_available():
        raise _unavailable(str(device), "Apple's MPS backend is not available here")
    return dev


def device_summary(device: str | torch.device | None = None) -> dict[str, Any]:
    """A small JSON-able description of ``device`` (default: ``pick_device("auto")``).

    Keys: ``device`` and ``type`` always; ``threads`` (torch's intra-op CPU threads, which also bound data
    preparation); on CUDA ``name``, ``memory_gb`` (total), ``cuda`` (the CUDA version PyTorch was built with),
    ``capability`` and ``bf16`` (whether bfloat16 autocast is supported); on MPS ``name``.

        >>> device_summary("cpu")["type"]
        'cpu'
    """
    dev = pick_device("auto" if device is None else device)
    info: dict[str, Any] = {"device": str(dev), "type": dev.type, "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info.update(
            name=props.name,
            memory_gb=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            capability=f"{props.major}.{props.minor}",
            bf16=bool(torch.cuda.is_bf16_supported()),
        )
    elif dev.type == "mps":
        info["name"] = "Apple MPS"
    return info


def dist_info() -> tuple[int, int]:
    """``(rank, world size)`` under torch.distributed (torchrun), else ``(0, 1)``."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_device(device: str | torch.device, rank: int, world: int) -> str | torch.device:
    """Under torchrun with GPUs, each rank on its own (LOCAL_RANK) GPU."""
    if world > 1 and device == "auto" and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    return device


def distributed(module: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
    """``module`` wrapped in DistributedDataParallel (gradients averaged across ranks)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)


def all_reduce_sums(stats: dict, dev: torch.device) -> dict:
    """An epoch's ``sums`` (losses, correct counts, images seen: ``stats["sums"]``) summed over every rank; the other
    entries of ``stats`` as they are."""
    import torch.distributed as dist

    sums = stats["sums"]
    t = torch.tensor(list(sums.values()), dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return {**stats, "sums": dict(zip(sums, t.tolist()))}
