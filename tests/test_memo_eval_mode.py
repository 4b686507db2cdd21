"""The two small helpers every layer shares: WeakMemo (one memo for the caches) and eval_mode."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch

from tl_lab._eval_mode import eval_mode
from tl_lab._memo import WeakMemo


class _Owner:  # weak-referenceable, like a network or a DatasetSplits
    pass


def test_memo_computes_once_per_key_and_forgets_with_its_owner():
    memo, calls = WeakMemo(per_owner=2), []
    owner = _Owner()

    def compute(v):
        return lambda: calls.append(v) or {"v": v}

    a = memo.get(owner, "a", compute("a"))
    assert memo.get(owner, "a", compute("again")) is a and calls == ["a"]
    memo.get(owner, "b", compute("b"))
    memo.get(owner, "c", compute("c"))  # a third key: the oldest ("a") is forgotten
    assert memo.peek(owner, "a") is None and memo.peek(owner, "c") == {"v": "c"} and len(memo) == 2
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None and len(memo) == 0  # the memo does not keep its owner alive


def test_memo_requires_the_same_live_objects_for_a_hit():
    memo, owner = WeakMemo(), _Owner()
    x = torch.zeros(3)
    memo.get(owner, ("k", id(x)), lambda: 1, alive=(x,))
    assert memo.peek(owner, ("k", id(x)), alive=(x,)) == 1
    y = torch.zeros(3)  # another tensor under the same key (as a reused id would be): no hit
    assert memo.peek(owner, ("k", id(x)), alive=(y,)) is None
    assert memo.get(owner, ("k", id(x)), lambda: 2, alive=(y,)) == 2


def test_memo_keeps_the_first_result_when_two_threads_miss_together():
    memo, owner = WeakMemo(), _Owner()
    both_inside = threading.Barrier(2)
    results = []

    def compute():
        both_inside.wait(timeout=10)  # each thread has missed before either stores
        return object()

    threads = [threading.Thread(target=lambda: results.append(memo.get(owner, "k", compute))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] is results[1]
    with pytest.raises(ValueError, match="per_owner must be at least 1"):
        WeakMemo(per_owner=0)


def test_eval_mode_restores_every_module_flag_also_after_an_error():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(2)).train()
    net[2].eval()  # a frozen BatchNorm inside a model that trains
    with eval_mode(net):
        assert [m.training for m in net.modules()] == [False] * 4
    assert [m.training for m in net.modules()] == [True, True, True, False]
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(net):
            raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == [True, True, True, False]
    # model.train(was_training), the hand-written way, would have switched the frozen BatchNorm back on
    net.eval()
    net.train(True)
    assert net[2].training
