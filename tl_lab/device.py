"""Device choice: cuda, then mps, then cpu."""

from __future__ import annotations

import torch

__all__ = ["pick_device", "device_summary"]


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; an explicit device that is not available raises ValueError."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is available here; use device='auto' or 'cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' was asked for but Apple's MPS is not available here; use device='auto' or 'cpu'")
    return dev


def device_summary(device: torch.device | None = None) -> dict:
    dev = device or pick_device()
    info: dict = {"device": str(dev), "type": dev.type}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info.update(name=props.name, memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    bf16=torch.cuda.is_bf16_supported())
    else:
        info["threads"] = torch.get_num_threads()
    return info
