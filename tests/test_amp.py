"""Mixed precision on a CPU: the autocast and GradScaler branches of the loop really run, and the run still learns."""

from __future__ import annotations

import pytest
import torch

import tl_lab.training.loop as loop
from tl_lab.backbones.registry import load_backbone
from tl_lab.data.datasets import load_dataset
from tl_lab.training.feed import Precision
from tl_lab.training.freeze import FreezePlan


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", shots=10, seed=0, image_size=32)


def _fit_watching(data, monkeypatch, **kw):
    """fit of the head on cached features, recording the head's output dtype in training forwards and every scaler
    the optimizer step received."""
    bb = load_backbone(num_classes=10, seed=0)
    dtypes, scalers = [], []
    bb.model.get_submodule("head").classifier.register_forward_hook(
        lambda m, a, out: dtypes.append(out.dtype) if torch.is_grad_enabled() else None)
    step = loop.optimizer_step

    def watched(opt, sched, loss, scaler=None):
        step(opt, sched, loss, scaler)
        scalers.append(None if scaler is None else scaler.get_scale())

    monkeypatch.setattr(loop, "optimizer_step", watched)
    run = loop.fit(bb, data, plan=FreezePlan("head"), epochs=20, batch_size=25, progress=False,
                   save_checkpoints=False, device="cpu", **kw)
    return run, dtypes, scalers


def test_precision_choices_on_a_cpu():
    cpu = torch.device("cpu")
    assert not Precision.choose(cpu, "auto").enabled  # "auto": CUDA only
    bf16 = Precision.choose(cpu, True)
    assert bf16.autocast.fast_dtype == torch.bfloat16 and bf16.scaler is None
    fp16 = Precision.choose(cpu, "float16")
    assert fp16.autocast.fast_dtype == torch.float16 and fp16.scaler is not None and fp16.scaler.is_enabled()
    with pytest.raises(ValueError, match="amp must be True, False, 'auto', 'bfloat16' or 'float16'; got 'fp8'"):
        loop.fit("efficientnet_lite0", load_dataset("digits", shots=1, image_size=32), amp="fp8", progress=False)


@pytest.mark.slow
def test_bfloat16_autocast_runs_on_a_cpu_and_the_run_learns(digits, monkeypatch):
    full, full_dtypes, _ = _fit_watching(digits, monkeypatch, amp=False)
    run, dtypes, scalers = _fit_watching(digits, monkeypatch, amp=True)
    assert set(full_dtypes) == {torch.float32}
    assert dtypes and set(dtypes) == {torch.bfloat16}  # the training forward ran inside bfloat16 autocast
    assert scalers and set(scalers) == {None}  # bfloat16 needs no loss scaling
    assert run.config["amp"] is True and run.timings["amp"] is True
    assert run.history[-1]["train_loss"] < 0.75 * run.history[0]["train_loss"], [h["train_loss"] for h in run.history]
    assert run.best["test_acc"] > 0.45 and abs(run.best["test_acc"] - full.best["test_acc"]) < 0.05, (run.best, full.best)  # chance: 0.1


@pytest.mark.slow
def test_float16_with_a_grad_scaler_runs_on_a_cpu_and_the_run_learns(digits, monkeypatch):
    run, dtypes, scalers = _fit_watching(digits, monkeypatch, amp="float16")
    assert dtypes and set(dtypes) == {torch.float16}
    # every step went through the scaler: scale(loss).backward(), step, update; its scale stays 2**16 while the
    # gradients are finite (it halves at an overflow)
    assert len(scalers) == 20 * 4 and all(s is not None and s >= 1.0 for s in scalers)
    assert scalers[0] == 2.0 ** 16
    assert run.history[-1]["train_loss"] < 0.75 * run.history[0]["train_loss"], [h["train_loss"] for h in run.history]
    assert run.best["test_acc"] > 0.45, run.best
