"""One memo for results computed from an object that may change or go away: a network, a dataset's splits.

Why: features, ImageNet probabilities and the raw-pixel baseline are asked for again and again (another probe, the
widget's next redraw), and each costs a forward pass or a fit. :class:`WeakMemo` keeps a result per *owner* (held
weakly: a deleted network's features go with it) and per *key*; the caller puts in the key whatever makes a result
stale (tensor identities and ``_version`` counters, a fingerprint of the weights), so a changed input misses.

Example::

    >>> import torch
    >>> memo, calls = WeakMemo(), []
    >>> net, x = torch.nn.Linear(2, 2), torch.zeros(3, 2)
    >>> def forward():
    ...     calls.append(1)
    ...     return net(x)
    >>> a = memo.get(net, ("forward", x._version), forward, alive=(x,))
    >>> b = memo.get(net, ("forward", x._version), forward, alive=(x,))
    >>> a is b, len(calls)
    (True, 1)
    >>> _ = x.add_(1)                     # an in-place edit bumps the version: a new key, computed again
    >>> _ = memo.get(net, ("forward", x._version), forward, alive=(x,)); len(calls)
    2
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["WeakMemo"]


class WeakMemo(Generic[T]):
    """Results per (owner, key), forgotten with their owner; at most ``per_owner`` keys per owner (oldest first).

    ``alive``: objects whose *identity* the key names (an ``id()`` in the key): they are held weakly beside the
    result, and a hit requires the very same objects to be alive, so a new tensor that reuses a dead one's id
    never gets its result. Thread-safe: two threads that both miss compute twice but keep and return the first
    result, so every caller sees one object.
    """

    def __init__(self, per_owner: int = 8) -> None:
        if per_owner < 1:
            raise ValueError(f"per_owner must be at least 1, got {per_owner}")
        self.per_owner = per_owner
        self._store: weakref.WeakKeyDictionary[Any, dict[Hashable, tuple[tuple, T]]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, owner: Any, key: Hashable, compute: Callable[[], T], *, alive: Sequence[Any] = ()) -> T:
        hit = self.peek(owner, key, alive=alive)
        if hit is not None:
            return hit
        value = compute()
        with self._lock:
            per_owner = self._store.setdefault(owner, {})
            kept = per_owner.get(key)
            if kept is not None and _same(kept[0], alive):
                return kept[1]
            while len(per_owner) >= self.per_owner:
                del per_owner[next(iter(per_owner))]
            per_owner[key] = (tuple(weakref.ref(a) for a in alive), value)
            return value

    def peek(self, owner: Any, key: Hashable, *, alive: Sequence[Any] = ()) -> T | None:
        """The stored result, or None (nothing computed)."""
        with self._lock:
            kept = self._store.get(owner, {}).get(key)
        return kept[1] if kept is not None and _same(kept[0], alive) else None

    def clear(self) -> None:
        with self._lock:
            self._store.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._store.values())


def _same(refs: tuple, alive: Sequence[Any]) -> bool:
    return len(refs) == len(alive) and all(r() is a for r, a in zip(refs, alive))
