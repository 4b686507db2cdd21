"""The Shift tab (ShiftLab) and the steps it calls (ShiftSteps): accuracies against values recomputed by hand, and
the races of a setting changed while a step runs (each step blocked on an Event, the dropdown changed, released).
"""

from __future__ import annotations

import importlib
import threading

import pytest
import torch

from tl_lab.data.datasets import load_dataset
from tl_lab.data.shifts import shift_data, unlabelled_target
from tl_lab.experiments.domain_shift import ShiftSteps, domain_shift
from tl_lab.experiments.options import Options
from tl_lab.training.adapt_bn import adapt_bn

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread
# the module, not the function tl_lab.experiments re-exports under the same name
domain_shift_module = importlib.import_module("tl_lab.experiments.domain_shift")

SMALL = {"dataset": "digits", "shift": "noisy", "shots": 2, "unlabelled": 40, "epochs": 1}


def _accuracy_by_hand(backbone, split) -> float:
    """k/n: the model's arg-max predictions on the whole split in one eval-mode pass, counted against the labels."""
    model = backbone.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            predictions = model(backbone.normalize(split.images.to(device))).argmax(1).cpu()
    finally:
        model.train(was_training)
    return int((predictions == split.labels).sum()) / len(split)


class Gate:
    """``gate.wrap(f)``: ``f`` that blocks the worker until the test releases it (a function, so also a method)."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def wrap(self, real):
        def blocked(*args, **kwargs):
            self.entered.set()
            assert self.release.wait(300), "the test never released the gate"
            return real(*args, **kwargs)
        return blocked


def _gate_source_training(monkeypatch) -> Gate:
    """Block "Train on source" after its training run, where it re-estimates the source statistics."""
    gate = Gate()
    monkeypatch.setattr(domain_shift_module, "source_statistics", gate.wrap(domain_shift_module.source_statistics))
    return gate


# ---- the steps --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_domain_shift_is_its_steps_run_in_order():
    kwargs = {"shifts": ("inverted",), "shots": 2, "unlabelled": 20}
    options = {"epochs": 1, "val_per_class": 1, "image_size": 32}
    result = domain_shift("efficientnet_lite0", "digits", strategies=("fine_tune",), adapt=False, target_only=False,
                          unsupervised=("dann",), **kwargs, **options)
    steps = ShiftSteps.load("efficientnet_lite0", "digits", **kwargs, options=Options(**options))
    steps.raw_pixels(target_only=False), steps.train_source("fine_tune"), steps.domain_confusion()

    def without_time(records):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]

    assert without_time(result.to_records()) == without_time(steps.records)  # one protocol: the same records


def test_domain_confusion_record_is_the_kept_model_measured_on_the_shifted_test_split():
    steps = ShiftSteps.load(shifts=("inverted",), shots=2, unlabelled=20,
                            options=Options(epochs=2, val_per_class=1, image_size=32))
    [record] = steps.domain_confusion()
    run = steps.dann["inverted"]
    data = load_dataset("digits", shots=2, image_size=32, val_per_class=1)
    target = shift_data(data, "inverted")
    assert record["test_acc"] == _accuracy_by_hand(run.backbone, target.test)
    assert record["source_test_acc"] == _accuracy_by_hand(run.backbone, data.test)
    assert record["domain_acc"] == [h["domain_acc"] for h in run.history] and len(record["domain_acc"]) == 2
    assert record["kept_epoch"] == run.best["epoch"]
    assert record["unlabelled_images"] == 20 and run.config["adapt_to"]["images"] == 20


def test_steps_refuse_to_adapt_before_the_source_is_trained():
    steps = ShiftSteps(
        "efficientnet_lite0", load_dataset("digits", shots=2, image_size=32, val_per_class=1), shifts=("inverted",),
        shots=2, unlabelled=20)
    with pytest.raises(ValueError, match=r"train 'fine_tune_bn' on the source first \(train_source\('fine_tune_bn'\)"):
        steps.adapt_bn("fine_tune_bn")
    with pytest.raises(ValueError, match="unknown shift"):
        ShiftSteps.load(shifts=("upside_down",))
    with pytest.raises(ValueError, match="unlabelled must be >= 2 target images"):
        ShiftSteps.load(shifts=("inverted",), unlabelled=1)


# ---- the widget ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_shift_lab_buttons_train_adapt_and_record_what_they_used():
    from tl_lab.widgets.dashboard import TAB_TITLES
    from tl_lab.widgets.shift_tab import ShiftLab

    with pytest.raises(ValueError, match="unknown shift 'upside_down'; choose from: inverted"):
        ShiftLab(shift="upside_down")
    lab = ShiftLab(**SMALL)
    lab.adabn_button.disabled = False
    lab.adabn_button.click()  # before a source model: a visible error naming the fix
    assert lab.status.kind == "error" and "train on the source first (button 1)" in lab.status.text
    lab.source_button.click()
    lab.wait(300)
    assert lab.worker.error is None and lab.status.kind == "ok", lab.status.text
    assert [(r["strategy"], r["shift"], r["training"]) for r in lab.records] == [
        ("raw_pixels", "none", "clean"), ("raw_pixels", "noisy", "clean"),
        ("fine_tune_bn", "none", "clean"), ("fine_tune_bn", "noisy", "clean")]
    assert not any(b.disabled for b in (lab.adabn_button, lab.dann_button, lab.oracle_button))
    data = load_dataset("digits", shots=2, image_size=32)
    target = shift_data(data, "noisy")  # recomputed here, not read from the widget
    assert lab.records[3]["test_acc"] == _accuracy_by_hand(lab.source.backbone, target.test)
    lab.adabn_button.click()
    lab.wait(120)
    last = lab.records[-1]
    assert (last["training"], last["unlabelled_images"]) == ("adabn", 40)
    adapted = adapt_bn(lab.source, unlabelled_target(data, "noisy", n=40))  # the adapted model, recomputed
    assert last["test_acc"] == _accuracy_by_hand(adapted, target.test)
    assert f"AdaBN with 40 unlabelled images: {last['test_acc']:.3f}" in lab.status.text
    assert [t.name for t in lab.figure.figure.data][-1] == "AdaBN, sound (fine-tune, BN train)"
    assert lab.figure.figure.layout.title.text.startswith("digits, noisy")
    lab.shift.value = "inverted"  # new settings: start again from the source
    assert lab.records == [] and lab.source is None and lab.adabn_button.disabled and lab.table.value == ""
    assert TAB_TITLES[7] == "8 Shift"


@pytest.mark.parametrize("control, value", [("shift", "inverted"),
                                            pytest.param("dataset", "clipart", marks=pytest.mark.slow)])
def test_a_source_model_finished_after_the_setting_changed_is_dropped(monkeypatch, control, value):
    from tl_lab.widgets.shift_tab import ShiftLab

    gate = _gate_source_training(monkeypatch)
    lab = ShiftLab(**SMALL)
    lab.source_button.click()
    assert gate.entered.wait(300), "the source training never reached the gate"
    getattr(lab, control).value = value  # changed while "Train on source" runs
    gate.release.set()
    lab.wait(300)
    assert lab.worker.error is None, lab.status.text
    assert lab.status.kind == "warn" and lab.status.text.startswith(
        "Dropped the result of 'Train on source': it was computed for digits, noisy, 2 shots, 40 unlabelled images")
    assert lab.records == [] and lab.source is None and lab.table.value == ""
    assert lab.figure.widget is None  # no chart of the old setting under the new title
    assert [b.disabled for b in (lab.source_button, lab.adabn_button, lab.dann_button, lab.oracle_button)] == [
        False, True, True, True]
    for button in (lab.adabn_button, lab.dann_button):  # nothing pairs the old model with the new data
        button.disabled = False
        button.click()
        assert lab.status.kind == "error" and "train on the source first (button 1)" in lab.status.text
        assert lab.records == []


@pytest.mark.slow
def test_a_domain_confusion_run_finished_after_the_shift_changed_is_stopped_and_dropped(monkeypatch):
    from tl_lab.widgets.shift_tab import ShiftLab

    lab = ShiftLab(**SMALL)
    lab.source_button.click()
    lab.wait(300)
    assert lab.status.kind == "ok", lab.status.text
    old, before = lab.steps, lab.table.value
    gate = Gate()
    monkeypatch.setattr(ShiftSteps, "domain_confusion", gate.wrap(ShiftSteps.domain_confusion))
    lab.dann_button.click()
    assert gate.entered.wait(300)
    lab.shift.value = "inverted"
    assert old.stop.is_set()  # the obsolete step is asked to stop ...
    gate.release.set()
    lab.wait(300)
    assert len(old.dann["noisy"].history) == 0 and old.dann["noisy"].stopped_early  # ... and stops in its 1st epoch
    assert lab.worker.error is None, lab.status.text
    assert lab.status.kind == "warn" and "Dropped the result of 'Domain confusion'" in lab.status.text
    assert lab.records == [] and lab.table.value == "" and before != ""
    assert lab.curves.widget is None and lab.dann_button.disabled
