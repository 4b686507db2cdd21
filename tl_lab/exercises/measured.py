"""The numbers a lesson measured in this kernel: ``lesson.result(name, value)`` records them here and the checked
questions read them (the store sits in the exercises layer so that ``tl_lab.app.lesson`` above it can write it)."""

from __future__ import annotations

import itertools
import threading

__all__ = ["record", "results", "order", "clear"]

_values: dict[str, float] = {}
_order: dict[str, int] = {}  # when each result was last recorded (a counter): "predicted before the run?"
_counter = itertools.count(1)
_lock = threading.Lock()


def record(name: str, value: float) -> None:
    with _lock:
        _values[name] = float(value)
        _order[name] = next(_counter)


def results() -> dict[str, float]:
    """A copy of the numbers recorded so far."""
    with _lock:
        return dict(_values)


def order() -> dict[str, int]:
    with _lock:
        return dict(_order)


def clear() -> None:
    """Forget every recorded number (tests; a lesson restarted without restarting the kernel)."""
    with _lock:
        _values.clear()
        _order.clear()
