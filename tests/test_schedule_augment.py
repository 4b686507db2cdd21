"""The loop's library-backed parts against their definitions: LR schedules per step, batch augmentation, settings."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tl_lab.training.augment import BatchAugment
from tl_lab.training.schedule import build_optimizer, build_scheduler
from tl_lab.training.settings import FitSettings


def _two_groups(optimizer: str = "adamw", lr: float = 0.01):
    """A body group at 0.1x and a head group at 1x, as FreezePlan.fine_tune() makes them."""
    body, head = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    groups = [{"params": [body], "stage": "body", "lr_mult": 0.1, "lr": lr * 0.1},
              {"params": [head], "stage": "head", "lr_mult": 1.0, "lr": lr}]
    return build_optimizer(optimizer, groups, lr=lr, weight_decay=0.0, momentum=0.9)


def _rates(schedule: str, *, lr=0.01, spe=5, epochs=8, start_step=0, **kw) -> list[list[float]]:
    """The rates each batch trains with, as fit steps them: read before the step, then opt.step(), sched.step()."""
    opt = _two_groups(lr=lr)
    sched = build_scheduler(opt, schedule, lr=lr, steps_per_epoch=spe, epochs=epochs, start_step=start_step, **kw)
    out = []
    for _ in range(spe * epochs - start_step):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def _one_cycle(k: int, total: int, peak: float) -> float:
    """Smith & Topin's one-cycle policy as OneCycleLR discretises it: cosine up to step 0.25 T - 1, then down."""
    lo, hi, end = peak / 25, peak, peak * 1e-4
    w = 0.25 * total - 1
    if k <= w:
        return lo + (hi - lo) * (1 - math.cos(math.pi * k / w)) / 2
    return end + (hi - end) * (1 + math.cos(math.pi * (k - w) / (total - 1 - w))) / 2


def test_one_cycle_rates_follow_the_formula_in_every_group():
    total = 5 * 8
    rates = _rates("onecycle", lr=0.01)
    for k, (body, head) in enumerate(rates):
        assert head == pytest.approx(_one_cycle(k, total, 0.01), rel=1e-9, abs=1e-15)
        assert body == pytest.approx(_one_cycle(k, total, 0.001), rel=1e-9, abs=1e-15)  # lr_mult 0.1 kept
    assert rates[0][1] == pytest.approx(0.01 / 25) and rates[9][1] == pytest.approx(0.01)  # peak at step 0.25 T - 1
    assert rates[-1][1] == pytest.approx(0.01 * 1e-4)


def test_cosine_step_and_constant_rates_follow_their_formulas():
    total = 5 * 8
    for k, (_, head) in enumerate(_rates("cosine")):
        assert head == pytest.approx(0.01 * (1 + math.cos(math.pi * k / total)) / 2, rel=1e-9, abs=1e-15)
    for k, (body, head) in enumerate(_rates("step", step_size=3, gamma=0.5)):  # halves every 3 epochs of 5 batches
        assert head == pytest.approx(0.01 * 0.5 ** (k // 15)) and body == pytest.approx(0.001 * 0.5 ** (k // 15))
    assert all(r == [pytest.approx(0.001), pytest.approx(0.01)] for r in _rates("constant"))


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step", "constant"])
def test_a_scheduler_started_mid_run_continues_exactly(schedule):
    # what resume and the out-of-memory retry rely on: the same rates, bit for bit, from step 17 on
    assert _rates(schedule, start_step=17) == _rates(schedule)[17:]


def test_very_short_one_cycle_runs_do_not_crash():
    # OneCycleLR divides by zero when 25% of the steps is exactly one step (4 steps): fit must not crash there
    for total in range(1, 9):
        rates = _rates("onecycle", spe=total, epochs=1)
        assert len(rates) == total and all(0 < h <= 0.01 for _, h in rates)


def _reference_shift(x: torch.Tensor, flip: bool, dy: int, dx: int, pad: int) -> torch.Tensor:
    """The augmentation by its definition: flip, reflect-pad by ``pad``, crop the window at (dy, dx)."""
    h, w = x.shape[-2:]
    y = x.flip(-1) if flip else x
    return F.pad(y, (pad, pad, pad, pad), mode="reflect")[..., dy : dy + h, dx : dx + w]


def test_batch_augmentation_is_a_flip_and_shift_of_the_whole_batch():
    torch.manual_seed(1)
    x = torch.rand(6, 3, 16, 16)
    aug = BatchAugment(16, seed=3)
    assert aug.pad == 2
    seen = set()
    for step in range(40):
        out = aug(x, step=step)
        assert out.shape == x.shape and out.dtype == x.dtype
        matches = [(f, dy, dx) for f in (False, True) for dy in range(5) for dx in range(5)
                   if torch.equal(out, _reference_shift(x, f, dy, dx, 2))]
        assert len(matches) >= 1, f"step {step}: not a flip + shift of the batch"
        seen.add(matches[0])
    assert len(seen) > 20  # many different flips and shifts over 40 batches
    assert {f for f, _, _ in seen} == {False, True}


def test_batch_augmentation_is_reproducible_and_leaves_the_global_rng_alone():
    x = torch.rand(4, 3, 32, 32)
    state = torch.get_rng_state()
    a, b = BatchAugment(32, seed=0), BatchAugment(32, seed=0)
    assert torch.equal(a(x, step=5), b(x, step=5))  # a function of (seed, step)
    assert torch.equal(torch.get_rng_state(), state)  # dropout's random stream is not disturbed
    outs = [a(x, step=k) for k in range(8)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    assert any(not torch.equal(a(x, step=k), BatchAugment(32, seed=1)(x, step=k)) for k in range(8))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": -1}, "epochs must be an int >= 1, or None for automatic (100 for a head on cached features, else 30); got -1"),
    ({"epochs": 0}, "epochs must be an int >= 1, or None for automatic"),
    ({"epochs": 2.5}, "epochs must be an int >= 1, or None for automatic"),
    ({"batch_size": 0}, "batch_size must be an int >= 1 (the default is 16); got 0"),
    ({"lr": -1.0}, "lr must be a finite number > 0 (the default is 0.003); got -1.0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"weight_decay": -0.1}, "weight_decay must be a number >= 0"),
    ({"optimizer": "lion"}, "optimizer must be 'adamw', 'adam' or 'sgd'; got 'lion'"),
    ({"schedule": "linear"}, "schedule must be 'onecycle', 'cosine', 'constant' or 'step'; got 'linear'"),
    ({"momentum": 1.5}, "momentum must be a number in [0, 1)"),
    ({"step_size": 0}, "step_size must be an int >= 1"),
    ({"gamma": 0}, "gamma must be a number in (0, 1]"),
    ({"label_smoothing": 1.0}, "label_smoothing must be a number in [0, 1)"),
    ({"augment": "yes"}, "augment must be True or False"),
])
def test_each_bad_setting_gets_its_own_message(kwargs, message):
    with pytest.raises(ValueError) as info:
        FitSettings(**kwargs)
    assert str(info.value).startswith(message)
    named = [k for k in ("epochs", "batch_size", "lr ", "weight_decay", "momentum", "schedule", "step_size", "gamma")
             if str(info.value).startswith(k)]
    assert len(named) <= 1  # one argument per message, never "epochs and batch_size must be ..."


def test_automatic_epochs_and_batch_clamp():
    s, notes = FitSettings().resolved(head_on_cached_features=True, train_images=100)
    assert (s.epochs, s.batch_size, notes) == (100, 16, [])
    s, notes = FitSettings(batch_size=64).resolved(head_on_cached_features=False, train_images=20)
    assert (s.epochs, s.batch_size) == (30, 20) and "larger than the 20 training images" in notes[0]
    assert FitSettings(epochs=7).resolved(head_on_cached_features=True, train_images=5)[0].epochs == 7
