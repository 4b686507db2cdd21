"""What a backbone costs on this machine: parameters and measured inference images per second, cached.

Why: choosing a network trades accuracy against cost, and the cost that matters to a learner is the one on the
machine in front of them (a 2-core Binder CPU is not a GPU). ``images_per_second`` times real forward passes
(random-init weights: the arithmetic is the same as with pretrained ones) and remembers the answer for the session.

Example::

    >>> from tl_lab.backbones.cost import images_per_second, parameter_count
    >>> parameter_count("efficientnet_lite1")
    5416680
    >>> images_per_second("efficientnet_lite0", image_size=64)  # doctest: +SKIP
    241.3...

    (images/s is machine-dependent: 241 on a busy 2-core CPU, 57 with seven other jobs on it.)
"""

from __future__ import annotations

import time
from functools import lru_cache

import torch

from tl_lab.backbones.registry import get_spec

__all__ = ["images_per_second", "parameter_count", "clear_cost_cache"]


@lru_cache(maxsize=None)
def parameter_count(name: str) -> int:
    """Every parameter of ``name`` with its ImageNet head (1000 classes), counted on a random-init copy."""
    with torch.device("meta"):  # no weights drawn: see _untouched_rng_model
        model = get_spec(name).build(False)
    return int(sum(p.numel() for p in model.parameters()))


def images_per_second(name: str, *, image_size: int | None = None, batch_size: int = 16, device: str = "cpu",
                      min_seconds: float = 0.5, max_batches: int = 20) -> float:
    """Inference images/s of ``name`` at ``image_size`` px (default: its native size), eval mode, ``no_grad``.

    One warm-up batch, then batches of ``batch_size`` until ``min_seconds`` have passed (at least 3, at most
    ``max_batches``), each timed on its own; the answer is ``batch_size`` over the *fastest* batch, as ``timeit``
    recommends: on a shared machine (a hub, CI) other jobs only ever slow a batch down, so the fastest one is the
    most repeatable estimate of what the network itself costs. Cached per (name, size, batch, device, torch
    threads), so a widget can ask on every redraw.
    """
    get_spec(name)  # unknown names fail here, with the list of choices
    size = int(image_size or get_spec(name).input_size)
    if batch_size < 1 or size < 8:
        raise ValueError(f"batch_size must be >= 1 and image_size >= 8; got {batch_size}, {size}")
    return _measure(name, size, int(batch_size), str(device), torch.get_num_threads(), float(min_seconds),
                    int(max_batches))


def clear_cost_cache() -> None:
    """Forget every measured throughput (after changing threads or machine load)."""
    _measure.cache_clear()
    parameter_count.cache_clear()


@lru_cache(maxsize=None)
def _measure(name: str, size: int, batch: int, device: str, threads: int, min_seconds: float, max_batches: int) -> float:
    spec = get_spec(name)
    if (spec.fixed_input_size and size != spec.input_size) or size < spec.min_input_size:
        need = f"{spec.input_size} px only" if spec.fixed_input_size else f"at least {spec.min_input_size} px"
        raise ValueError(f"{name} takes images of {need}; got image_size={size}")
    dev = torch.device(device)
    model = _untouched_rng_model(spec).to(dev).eval()
    x = torch.full((batch, 3, size, size), 0.5, device=dev)
    with torch.no_grad():
        model(x)  # warm-up: allocations, kernel choice
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times, start = [], time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - start < min_seconds and len(times) < max_batches):
            t = time.perf_counter()
            model(x)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t)
    return batch / min(times)


def _untouched_rng_model(spec) -> torch.nn.Module:
    """The architecture with constant weights, built without drawing a single random number.

    Why: the picker measures speed in a background thread, and PyTorch's random generator is shared by every thread
    of the process. Building a network the usual way draws its initial weights from that generator (and
    ``load_backbone`` forks and restores it), which changed the dropout masks of a training running at the same
    time: two runs with the same seed no longer matched. Built on the ``meta`` device, nothing is drawn; speed does
    not depend on the weights' values (constants keep them finite, so no slow denormal or NaN arithmetic).
    """
    with torch.device("meta"):
        model = spec.build(False)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.01)
        for name, b in model.named_buffers():
            b.fill_(1 if name.endswith("running_var") else 0)
    return model
