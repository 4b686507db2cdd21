"""Experiments measure what the lessons claim: small seeded runs, real outcomes, checked against references.

Slow tests train real (small) networks on a 2-core CPU; the fast ones check the bookkeeping (interpolation,
shifts, tables, argument errors) against values worked out by hand.
"""

from __future__ import annotations

import math

import pytest
import torch

from tl_lab.backbones.registry import load_backbone
from tl_lab.data.datasets import load_dataset
from tl_lab.data.shifts import NOISE_STD, SHIFTS, shift_data, shift_images
from tl_lab.experiments.data_efficiency import data_efficiency, shots_to_reach
from tl_lab.experiments.domain_shift import domain_shift
from tl_lab.experiments.forgetting import forgetting
from tl_lab.experiments.freeze_sweep import freeze_sweep
from tl_lab.experiments import EfficiencyResult, ExperimentResult
from tl_lab.training.recipes import RECIPES, recipe_epochs


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def assert_test_accuracies(accs, dataset):
    """Each accuracy is a count of correct images over the whole, fixed test split of ``dataset`` (the same for
    every shots value): a fraction k / n with an integer k, not merely a number in [0, 1]."""
    n = len(load_dataset(dataset).test)
    for acc in accs:
        assert acc * n == pytest.approx(round(acc * n), abs=1e-6), (acc, n)



# ---- shots_to_reach ----------------------------------------------------------------------------------------------


def _rec(strategy: str, shots: int, acc: float, seed: int = 0) -> dict:
    return {"strategy": strategy, "shots": shots, "test_acc": acc, "seed": seed}


def test_shots_to_reach_interpolates_between_measured_points():
    records = [
        _rec("a", 1, 0.4), _rec("a", 10, 0.8),
        _rec("b", 1, 0.7), _rec("b", 10, 0.9),
        _rec("c", 1, 0.1), _rec("c", 10, 0.3),
        _rec("d", 1, 0.2), _rec("d", 5, 0.5, seed=0), _rec("d", 5, 0.7, seed=1), _rec("d", 10, 0.9),
    ]
    linear = shots_to_reach(records, 0.6, scale="linear")
    assert linear["a"] == pytest.approx(1 + 0.5 * 9)  # halfway from 0.4 to 0.8
    assert linear["b"] == 1.0  # already there at the smallest measured shots
    assert linear["c"] is None  # never reached
    assert linear["d"] == pytest.approx(5.0)  # seeds averaged: (0.5 + 0.7) / 2 = 0.6 exactly at 5 shots
    log = shots_to_reach(records, 0.6)
    assert log["a"] == pytest.approx(math.sqrt(10), abs=0.01)  # halfway in log(shots) between 1 and 10


def test_shots_to_reach_takes_the_first_crossing_and_validates():
    records = [_rec("a", 1, 0.2), _rec("a", 2, 0.7), _rec("a", 4, 0.5), _rec("a", 8, 0.9)]
    assert shots_to_reach(records, 0.45, scale="linear")["a"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        shots_to_reach(records, 60)
    with pytest.raises(ValueError, match="'log' or 'linear'"):
        shots_to_reach(records, 0.5, scale="sqrt")


# ---- shifts ------------------------------------------------------------------------------------------------------


def test_shifts_are_deterministic_and_keep_shape():
    images = load_dataset("digits", shots=1, image_size=32).test.images[:16]
    for shift in SHIFTS:
        a, b = shift_images(images, shift, seed=3), shift_images(images, shift, seed=3)
        assert a.shape == images.shape and a.dtype == torch.uint8
        assert torch.equal(a, b), shift
        assert not torch.equal(a, images), shift
    assert torch.equal(shift_images(images, "inverted"), 255 - images)
    assert not torch.equal(shift_images(images, "noisy", seed=0), shift_images(images, "noisy", seed=1))


def test_each_shift_does_what_it_says():
    grey = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    noise = shift_images(grey, "noisy").float() - 128
    assert noise.mean().abs() < 2 and noise.std() == pytest.approx(NOISE_STD * 255, rel=0.05)
    # a uniform image looks the same at any angle: the corners are filled with its own background colour
    assert torch.equal(shift_images(grey, "rotated"), grey)
    bar = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    bar[:, :, 14:18, 2:30] = 0  # a horizontal black bar on white
    turned = shift_images(bar, "rotated")
    assert turned[0, 0, 0, 0] == 255 and (turned[:, :, 14:18, 2:30] == 0).float().mean() < 0.5
    textured = shift_images(bar, "textured")
    assert torch.equal(textured[:, :, 14:18, 2:30], bar[:, :, 14:18, 2:30])  # the object is kept
    assert (textured[:, :, :10] != 255).float().mean() > 0.5  # the white background is replaced
    with pytest.raises(ValueError, match="inverted, rotated, noisy, textured"):
        shift_images(grey, "blurred")


def test_shift_data_shifts_every_split_with_its_own_draw():
    data = load_dataset("digits", shots=2, image_size=32, val_per_class=2)
    noisy = shift_data(data, "noisy", seed=0)
    assert noisy.meta["shift"] == "noisy" and noisy.classes == data.classes
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(noisy, split).labels, getattr(data, split).labels)
        assert not torch.equal(getattr(noisy, split).images, getattr(data, split).images)
    n = min(len(noisy.train), len(noisy.val))
    draws = [(getattr(noisy, s).images[:n].float() - getattr(data, s).images[:n].float()) for s in ("train", "val")]
    assert not torch.equal(draws[0], draws[1])


# ---- results and errors ------------------------------------------------------------------------------------------


def test_results_give_records_and_printable_tables():
    records = [_rec("frozen_head", 1, 0.5), _rec("frozen_head", 5, 0.75), _rec("scratch", 1, 0.125),
               _rec("scratch", 5, 0.25), _rec("scratch", 5, 0.35, seed=1)]
    result = EfficiencyResult("data efficiency", records, 1.5, {"dataset": "digits"})
    copy = result.to_records()
    copy[0]["test_acc"] = 0.0
    assert result.records[0]["test_acc"] == 0.5  # to_records returns copies
    text = str(result)
    assert "frozen_head" in text and "0.750" in text and "0.300" in text  # scratch 5-shot: mean over seeds
    assert result.table() == {"frozen_head": {1: 0.5, 5: 0.75}, "scratch": {1: 0.125, 5: 0.3}}
    plain = ExperimentResult("x", [{"a": 1, "b": None, "c": 0.25}], 0.1, columns=("a", "b", "c"))
    assert plain.summary().splitlines()[1].split() == ["a", "b", "c"] and "0.250" in str(plain)


def test_recipes_epochs_and_the_shift_experiments_are_reachable_from_experiments():
    import tl_lab
    from tl_lab import experiments
    import sys

    assert recipe_epochs("scratch", None, fast=False) == RECIPES["scratch"].epochs
    assert recipe_epochs("scratch", None, fast=True) == RECIPES["scratch"].fast_epochs < RECIPES["scratch"].epochs
    assert recipe_epochs("fine_tune", 7, fast=True) == 7
    assert recipe_epochs("fine_tune", {"scratch": 3}, fast=False) == RECIPES["fine_tune"].epochs
    # scratch gets a recipe fair to it: more epochs than fine-tuning, every layer trainable, random init
    assert RECIPES["scratch"].epochs > RECIPES["fine_tune"].epochs and not RECIPES["scratch"].pretrained
    assert RECIPES["scratch"].plan.trainable_from is None and RECIPES["scratch"].plan.bn == "frozen"
    assert tl_lab.forgetting is experiments.forgetting is sys.modules["tl_lab.experiments.forgetting"].forgetting
    assert tl_lab.domain_shift is experiments.domain_shift
    with pytest.raises(AttributeError):
        experiments.no_such_experiment


def test_bad_arguments_name_the_fix_before_any_training():
    with pytest.raises(ValueError, match="fine_tune"):
        data_efficiency("efficientnet_lite0", "digits", strategies=("finetune",))
    with pytest.raises(ValueError, match="positive ints"):
        data_efficiency("efficientnet_lite0", "digits", shots=(0, 5))
    with pytest.raises(ValueError, match="stage7"):
        freeze_sweep("efficientnet_lite0", "digits", stages=("layer4",))
    with pytest.raises(ValueError, match="pretrained, random"):
        freeze_sweep("efficientnet_lite0", "digits", inits=("imagenet",))
    with pytest.raises(ValueError, match="inverted"):
        domain_shift("efficientnet_lite0", "digits", shifts=("upside_down",))


# ---- real runs ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_data_efficiency_on_digits_is_complete_and_sensible():
    seen = []
    result = data_efficiency("efficientnet_lite0", "digits", shots=(1, 5),
                             strategies=("linear_probe", "frozen_head", "scratch"), image_size=32,
                             epochs={"scratch": 10}, val_per_class=5, callback=seen.append)
    records = result.to_records()
    assert seen == records
    expected = {(s, k) for s in ("raw_pixels", "linear_probe", "frozen_head", "scratch") for k in (1, 5)}
    assert {(r["strategy"], r["shots"]) for r in records} == expected and len(records) == len(expected)
    assert all(r["seconds"] > 0 for r in records)
    assert_test_accuracies([r["test_acc"] for r in records], "digits")
    acc = result.table()
    for strategy in ("frozen_head", "linear_probe", "raw_pixels"):
        assert acc[strategy][5] >= acc[strategy][1] - 0.02, strategy  # more examples: not worse
    assert acc["scratch"][1] < 0.2  # ten images from random init: near chance (0.1)
    assert acc["linear_probe"][5] > 0.3 and acc["frozen_head"][5] > 0.3
    assert result.seconds >= sum(r["seconds"] for r in records) * 0.99


@pytest.mark.slow
def test_freeze_sweep_freezes_more_and_trains_fewer_parameters():
    result = freeze_sweep("efficientnet_lite0", "digits", shots=2, stages=("head", None, "stage6"), image_size=32,
                          epochs=2, val_per_class=2)
    records = result.to_records()
    assert len(records) == 6
    full = load_backbone("efficientnet_lite0", num_classes=10).meta["total_parameters"]
    for init in ("pretrained", "random"):
        rows = [r for r in records if r["init"] == init]
        assert [r["trainable_from"] for r in rows] == [None, "stage6", "head"]  # sorted by depth
        assert [r["frozen_stages"] for r in rows] == [0, 6, 9]
        params = [r["trainable_params"] for r in rows]
        assert params[0] == full and params[-1] == 1280 * 10 + 10  # all of it; the linear head by hand
        assert all(a > b for a, b in zip(params, params[1:]))
        assert_test_accuracies([r["test_acc"] for r in rows], "digits")


@pytest.mark.slow
def test_forgetting_frozen_body_agrees_fully_and_fine_tuning_drifts():
    result = forgetting("efficientnet_lite0", "clipart", shots=5, image_size=32,
                        epochs={"frozen_head": 20, "fine_tune": 3})
    by = {(r["plan"], r["images"]): r for r in result.to_records()}
    frozen, tuned = by[("frozen_head", "clipart test")], by[("fine_tune", "clipart test")]
    assert frozen["top1_agreement"] == 1.0 and frozen["kl_mean"] < 1e-6 and frozen["body_change"] == 0.0
    assert tuned["top1_agreement"] < 1.0 and tuned["kl_mean"] > frozen["kl_mean"] and tuned["body_change"] > 0
    assert_test_accuracies([r["task_b_test_acc"] for r in by.values()], "clipart")


@pytest.mark.slow
def test_inverted_digits_hurt_and_adapting_recovers_part_of_it():
    result = domain_shift("efficientnet_lite0", "digits", shifts=("inverted",), strategies=("frozen_head",),
                          target_only=False, image_size=32)
    acc = {(r["strategy"], r["shift"], r["training"]): r["test_acc"] for r in result.to_records()}
    clean, shifted = acc[("frozen_head", "none", "clean")], acc[("frozen_head", "inverted", "clean")]
    adapted = acc[("frozen_head", "inverted", "adapted")]
    assert shifted < clean - 0.1, acc  # trained on dark-on-light digits, tested on light-on-dark
    assert adapted > shifted + 0.1, acc  # ten shifted images per class win part of it back
    assert acc[("raw_pixels", "inverted", "clean")] < acc[("raw_pixels", "none", "clean")]


# ---- adapting without target labels (issue 17) -------------------------------------------------------------------


def test_unsupervised_adaptation_arguments_name_the_fix_before_any_training():
    with pytest.raises(ValueError, match="unknown unsupervised method \\['tent'\\]; choose from: adabn, dann"):
        domain_shift("efficientnet_lite0", "digits", shifts=("inverted",), unsupervised=("tent",))
    with pytest.raises(ValueError, match="unlabelled must be >= 2 target images"):
        domain_shift("efficientnet_lite0", "digits", shifts=("inverted",), unsupervised=("adabn",), unlabelled=1)
    with pytest.raises(ValueError, match="lp_ft"):
        domain_shift("efficientnet_lite0", "digits", shifts=("inverted",), strategies=("lpft",))


@pytest.mark.slow
def test_domain_shift_records_unsupervised_adaptation_and_adabn_recovers_inverted_digits():
    result = domain_shift("efficientnet_lite0", "digits", shifts=("inverted",), shots=5, image_size=32,
                          strategies=("fine_tune_bn", "lp_ft"), unsupervised=("adabn", "dann"), unlabelled=100,
                          target_only=False, epochs={"frozen_head": 10, "fine_tune": 6, "fine_tune_bn": 8})
    records = result.to_records()
    by = {(r["strategy"], r["shift"], r["training"]): r for r in records}
    assert set(by) == {("raw_pixels", "none", "clean"), ("raw_pixels", "inverted", "clean"),
                       *((s, "none", "clean") for s in ("fine_tune_bn", "lp_ft")),
                       *((s, "inverted", t) for s in ("fine_tune_bn", "lp_ft") for t in ("clean", "adabn", "adapted")),
                       ("fine_tune", "inverted", "dann")}
    for r in records:  # every record says how many unlabelled target images it used
        assert r["unlabelled_images"] == (100 if r["training"] in ("adabn", "dann") else 0), r
    dann = by[("fine_tune", "inverted", "dann")]
    assert len(dann["domain_acc"]) == 6 and all(0 <= a <= 1 for a in dann["domain_acc"])
    # the sound protocol: source statistics in training, target statistics swapped in, no target label read
    sound = by[("fine_tune_bn", "inverted", "adabn")]["test_acc"]
    assert sound > by[("fine_tune_bn", "inverted", "clean")]["test_acc"] + 0.05, records
    assert any(n.startswith("adabn on inverted (fine_tune_bn, 100 unlabelled images)") for n in result.notes)
