"""Widget logic without a browser: set values, click buttons, and check plans, runs, charts, tables and errors.

The browser tests (tests/browser/) check that the same widgets render and update in a real JupyterLab page.
"""

from __future__ import annotations

import datetime
import json
import re

import numpy as np
import pytest

import tl_lab
from tl_lab.training.freeze import FreezePlan
from tl_lab.widgets import (
    AttributionExplorer,
    BackbonePicker,
    CompareRuns,
    FeatureExplorer,
    StageFreezer,
    TrainPanel,
    TransferLab,
)
from tl_lab.widgets import keep_old_task as keep_old_task_module
from tl_lab.widgets import train_chart as train_chart_module
from tl_lab.widgets import train_panel as train_panel_module
from tl_lab.widgets.common import Throttle
from tl_lab.widgets.inside import read_upload


def _count(html_text: str) -> int:
    m = re.search(r'class="tl-trainable-value">([\d,]+)<', html_text)
    assert m, html_text
    return int(m.group(1).replace(",", ""))


def _row_count(table_html: str) -> int:
    body = table_html.split("<tbody>")[1]
    return body.count("<tr>")


def _drawn(row: dict, metric: str) -> float:
    """What the chart's curve ``metric`` shows for a history row: the training curve is the task's loss alone."""
    return row.get("train_task_loss", row["train_loss"]) if metric == "train_loss" else row[metric]


# ---- StageFreezer -----------------------------------------------------------------------------------------------


def test_freezer_clicks_make_the_plan_and_counts_match_freezeplan():
    f = StageFreezer("efficientnet_lite0", num_classes=7)
    bb = f.backbone
    assert [b.description for b in f.stage_row.children] == list(bb.stages)
    assert f.plan.trainable_from == "head"
    head_params = FreezePlan("head").summary(bb).trainable
    assert head_params == 1280 * 7 + 7 == _count(f.count.value)

    by_name = {b.description: b for b in f.stage_row.children}
    by_name["stage6"].click()
    assert f.plan.trainable_from == "stage6"
    expected = FreezePlan("stage6").summary(bb).trainable
    assert f.trainable == expected == _count(f.count.value)
    assert expected > head_params
    assert [b.button_style for b in f.stage_row.children] == ["" if s not in ("stage6", "stage7", "conv_head", "head")
                                                              else "success" for s in bb.stages]
    by_name["stage6"].click()  # clicking the first trainable stage freezes it
    assert f.plan.trainable_from == "stage7"
    by_name["head"].click()  # the head always trains
    assert f.plan.trainable_from == "head"
    by_name["stem"].click()
    assert f.plan.trainable_from is None and f.trainable == sum(p.numel() for p in bb.model.parameters())


def test_freezing_from_a_middle_stage_defaults_the_body_lr_to_the_fine_tune_recipe_and_says_why():
    from tl_lab.training.freeze import BODY
    from tl_lab.training.recipes import RECIPES

    factor = RECIPES["fine_tune"].plan.lr_mult[BODY]
    f = StageFreezer("efficientnet_lite0")
    assert f.plan.lr_mult == {}  # the head alone: no body to slow down
    f.set_trainable_from("stage5")
    assert f.body_lr.value == pytest.approx(factor) and f.plan.lr_mult[BODY] == pytest.approx(factor)
    assert f"body LR × is {factor:g}, the fine-tune recipe's" in f.status.text
    f.body_lr.value = 0.5  # the learner's own choice is kept from then on
    assert f.status.text == ""
    {b.description: b for b in f.stage_row.children}["stage3"].click()
    assert f.plan.lr_mult[BODY] == pytest.approx(0.5)
    given = StageFreezer("efficientnet_lite0", plan=FreezePlan("stage6"))  # a plan given in code is kept as it is
    given.set_trainable_from("stage4")
    assert given.plan.lr_mult == {}


def test_freezer_says_why_lora_or_bitfit_changes_nothing_while_only_the_head_trains():
    f = StageFreezer("efficientnet_lite0")
    head_only = f.trainable
    f.params.value = "lora:4"
    assert f.plan == FreezePlan("head") and f.trainable == head_only  # nothing changed: and the freezer says why
    assert f.status.kind == "warn" and f.status.text == (
        "'LoRA, rank 4' changes nothing yet: LoRA adapts the body's layers (small low-rank matrices beside their "
        "frozen weights), but this plan trains only the head (which always trains whole). Click a body stage (e.g. "
        "conv_head, the last one) to train it and the stages after it this way.")
    f.params.value = "bias"
    assert f.status.text.startswith("'biases only' changes nothing yet: it trains the biases inside the trainable "
                                    "body stages, but this plan trains only the head")
    f.params.value = "lora:4"
    f.set_trainable_from("conv_head")  # the stage the message offers: now LoRA adapts it
    assert f.plan == FreezePlan("conv_head", params="lora", lora_rank=4, lr_mult={"body": f.plan.lr_mult["body"]})
    assert f.trainable == FreezePlan("conv_head", params="lora", lora_rank=4).summary(f.backbone).trainable > head_only
    assert f.status.kind == "info" and "changes nothing" not in f.status.text
    f.set_trainable_from("head")
    assert f.status.kind == "warn" and "'LoRA, rank 4' changes nothing yet" in f.status.text
    f.params.value = "all"
    assert f.status.text == ""


def test_freezer_bn_policy_and_learning_rates_reach_the_plan():
    f = StageFreezer("efficientnet_lite0")
    f.set_trainable_from("stage5")
    f.bn.value = "eval"
    f.body_lr.value = 0.1
    lr_inputs = {w.description: w for w in f.stage_lr_box.children}
    lr_inputs["stage7"].value = 0.5
    plan = f.plan
    assert plan.bn == "eval" and plan.lr_mult["body"] == pytest.approx(0.1) and plan.lr_mult["stage7"] == 0.5
    assert "BN eval" in f.count.value or "BN eval" in plan.describe()
    lr_inputs["stage5"].value = 0.0  # a zero multiplier freezes that stage's weights
    assert f.trainable == f.plan.summary(f.backbone).trainable < FreezePlan("stage5").summary(f.backbone).trainable
    with pytest.raises(ValueError, match="unknown stage 'layer4'.*stem"):
        f.set_trainable_from("layer4")


# ---- BackbonePicker ---------------------------------------------------------------------------------------------


def test_picker_shows_stages_and_loads_the_embedded_backbone():
    p = BackbonePicker()
    bb = p.wait(timeout=60)
    assert bb is not None and bb.name == "efficientnet_lite0"
    assert p.status.kind == "ok" and "Ready" in p.status.text
    for stage in bb.stages:
        assert f">{stage}</b>" in p.diagram.value
    assert "embedded in the package" in p.info.value and "Apache" in p.info.value or "license" in p.info.value


def test_picker_offline_torchvision_weights_show_the_offline_message_not_a_traceback(no_network):
    p = BackbonePicker()
    p.wait(timeout=60)
    p.value = "resnet18"
    bb = p.wait(timeout=60)
    # the picker goes back to the network in use (the other tabs keep it), and says why
    assert p.value == "efficientnet_lite0" and bb is not None and bb.name == "efficientnet_lite0"
    assert ">stage7</b>" in p.diagram.value and ">layer4</b>" not in p.diagram.value
    assert p.status.kind == "warn"
    text = p.status.text
    assert "can't be used offline yet" in text and "resnet18" in text and ".pth" in text
    assert "keeps using efficientnet_lite0" in text  # names what is in use, which works offline
    assert p.status.details_box.layout.display == "none"  # no traceback for this expected case


def test_failed_pick_in_the_dashboard_shows_the_backbone_the_other_tabs_use(no_network, tmp_path):
    lab = TransferLab(dataset="digits", shots=5, run_dir=tmp_path)
    lab.picker.wait(60)
    lab.picker.value = "resnet18"
    lab.picker.wait(60)
    assert lab.picker.value == lab.state.backbone_name == "efficientnet_lite0"
    assert "keeps using efficientnet_lite0" in lab.picker.status.text
    from tl_lab.widgets import MistakesView
    from tl_lab.widgets.dashboard import TAB_TITLES

    assert lab.mistakes.widget is None  # the Mistakes tab is built when first shown, and follows the shared runs
    lab.tabs.selected_index = TAB_TITLES.index("9 Mistakes")
    assert isinstance(lab.mistakes.widget, MistakesView) and lab.mistakes.widget.state is lab.state
    assert "no run yet" in lab.mistakes.widget.run_label.value


# ---- TrainPanel -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_panel_trains_in_the_background_and_the_chart_equals_the_history(tmp_path, monkeypatch):
    draws = []
    real = train_chart_module.append_epochs
    monkeypatch.setattr(train_chart_module, "append_epochs", lambda fig, rows, label: (draws.append(len(rows)),
                                                                                       real(fig, rows, label=label)))
    panel = TrainPanel(dataset="digits", shots=5, run_dir=tmp_path, update_interval=5.0)
    panel.epochs.value = 40
    panel.train_button.click()
    assert panel.busy and panel.train_button.disabled and not panel.stop_button.disabled
    run = panel.wait(timeout=300)
    assert run is not None and not panel.busy and panel.last_error is None
    assert len(run.history) == 40
    by_metric = {t.meta["metric"]: t for t in panel.figure.data}
    for metric in ("train_loss", "val_loss", "train_acc", "val_acc"):
        assert list(by_metric[metric].y) == pytest.approx([_drawn(h, metric) for h in run.history])
        assert list(by_metric[metric].x) == [float(h["epoch"]) for h in run.history]
    assert sum(draws) == 40 and len(draws) <= 4, f"redraws must be throttled, got {draws}"
    assert panel.status.text.startswith("Finished") and "raw pixels" in panel.status.text
    assert panel.baseline_acc == pytest.approx(tl_lab.baseline(run.data)["test_acc"])
    assert _row_count(panel.table.value) == 2  # the run and the raw-pixel baseline
    assert f"{run.best['test_acc']:.3f}" in panel.table.value
    assert run.checkpoint is not None and run.checkpoint.exists() and tmp_path in run.checkpoint.parents
    assert panel.state.runs == [run]

    panel.plan_choice.value = "scratch"  # the honest from-scratch baseline: random init, everything trains
    panel.epochs.value = 2
    panel.train_button.click()
    scratch = panel.wait(timeout=300)
    assert scratch is not run and scratch.config["pretrained"] is False and scratch.config["plan"]["trainable_from"] is None
    labels = {t.meta["run"] for t in panel.figure.data}
    assert len(labels) == 2 and len(panel.figure.data) == 8
    assert _row_count(panel.table.value) == 3


@pytest.mark.slow
def test_stop_takes_effect_within_a_batch_and_keeps_the_best_checkpoint(tmp_path):
    panel = TrainPanel(dataset="digits", shots=5, run_dir=tmp_path, plan=FreezePlan.fine_tune())
    panel.plan_choice.value = "custom"
    panel.epochs.value = 5
    stopped_at = {}
    real = panel._on_event

    def click_stop_after_two_epochs(event):
        real(event)
        if isinstance(event, tl_lab.training.events.EpochEnd) and event.epoch == 1:
            panel.stop_button.click()
            stopped_at["epoch"] = event.epoch

    panel._on_event = click_stop_after_two_epochs
    panel.train_button.click()
    run = panel.wait(timeout=300)
    assert run.stopped_early and "stopped from the panel" in run.stop_reason
    assert len(run.history) == 2, "the stop request is honoured in the next batch, not at the end of the run"
    assert panel.status.text.startswith("Stopped") and str(run.checkpoint) in panel.status.text
    assert run.checkpoint.exists() and 0 < panel.stop_latency_s <= panel.row_latency_s  # click, Stopped, row
    assert run.best["test_acc"] == pytest.approx(run.evaluate("test")["acc"])  # the kept checkpoint, measured
    assert f"{run.best['test_acc']:.3f}" in panel.table.value
    assert not panel.resume_button.disabled
    panel._on_event = real
    panel.resume_button.click()
    resumed = panel.wait(timeout=600)
    assert resumed.name == run.name and len(resumed.history) == 5 and not resumed.stopped_early
    assert len({t.meta["run"] for t in panel.figure.data}) == 1, "a resumed run continues its own curve"
    assert len(panel.figure.data[0].y) == 5


def test_errors_inside_a_run_appear_in_the_panel(tmp_path):
    panel = TrainPanel(dataset="digits", shots=5, run_dir=tmp_path, plan=FreezePlan("layer4"))
    panel.plan_choice.value = "custom"
    panel.train_button.click()
    assert panel.wait(timeout=120) is None
    assert isinstance(panel.last_error, ValueError)
    assert panel.status.kind == "error" and "unknown stage 'layer4'" in panel.status.text
    assert "Traceback" in panel.status.details.outputs[0]["text"]
    assert not panel.train_button.disabled and panel.stop_button.disabled

    panel.dataset.value = "folder"
    panel.folder.value = str(tmp_path / "no-such-folder")
    panel.train_button.click()  # fails before any thread starts: still shown, never silent
    assert panel.status.kind == "error" and "no-such-folder" in panel.status.text


def test_shots_the_loader_accepts_work_in_the_widgets_or_get_a_clear_error(tmp_path):
    panel = TrainPanel(dataset="digits", shots=3, run_dir=tmp_path)
    assert panel.shots.value == 3 and [v for _, v in panel.shots.options] == [1, 2, 3, 5, 10, 20, None]
    panel.wait(60)
    assert len(panel.state.data().train) == 3 * 10
    lab = TransferLab(dataset="digits", shots=15, run_dir=tmp_path)
    assert lab.train.shots.value == 15 and lab.state.shots == 15
    for bad in (0, -2, 2.5, "ten", True):
        with pytest.raises(ValueError, match=r"shots must be a whole number .* or None for all"):
            TrainPanel(dataset="digits", shots=bad)


@pytest.mark.slow
def test_the_panel_uses_the_shared_worker_and_derives_its_buttons_from_it(tmp_path):
    from tl_lab.widgets.common import Worker

    panel = TrainPanel(dataset="digits", shots=2, run_dir=tmp_path)
    assert isinstance(panel.worker, Worker) and not hasattr(panel, "_thread")
    panel.wait(60)
    assert (panel.train_button.disabled, panel.stop_button.disabled, panel.resume_button.disabled) == (False, True,
                                                                                                       True)
    panel.epochs.value = 1
    panel.train_button.click()
    assert panel.worker.busy and panel.train_button.disabled and not panel.stop_button.disabled
    assert panel.wait(120) is not None
    assert (panel.train_button.disabled, panel.stop_button.disabled) == (False, True)


@pytest.mark.slow
def test_the_raw_pixel_baseline_is_measured_when_the_data_is_chosen_not_after_stop(tmp_path, monkeypatch):
    panel = TrainPanel(dataset="digits", shots=2, run_dir=tmp_path)
    panel.wait(60)  # loading the chosen data, in the worker
    data = panel.state.data()
    assert panel.baseline_acc == pytest.approx(tl_lab.baseline(data)["test_acc"])
    assert "raw pixels score" in panel.status.text and panel.status.text.startswith("Ready")
    calls = []
    monkeypatch.setattr(train_panel_module, "baseline", lambda d: calls.append(d) or {"test_acc": 0.0})
    panel.epochs.value = 1
    panel.train_button.click()
    panel.wait(120)
    assert calls == []  # nothing left to measure after the run: the table comes with the run
    assert "raw pixels (logistic regression)" in panel.table.value
    panel.shots.value = 5  # other data chosen: measured at once, in the background
    panel.wait(60)
    assert len(calls) == 1 and calls[0].meta["shots"] == 5


def test_typed_values_out_of_range_are_refused_with_the_allowed_range(tmp_path):
    panel = TrainPanel(dataset="digits", shots=2, run_dir=tmp_path)
    panel.wait(60)
    panel.epochs.value = 12
    panel.epochs.value = -1
    assert panel.epochs.value == 12  # not "auto", not 0: what it was
    assert panel.status.kind == "warn" and panel.status.text == (
        "epochs -1 is not allowed: type 0 for automatic (fit's default) or a number from 1 to 1000. Kept 12.")
    panel.epochs.value = 0  # automatic, allowed
    assert panel.epochs.value == 0
    panel.lr.value = 1e5
    assert panel.lr.value == pytest.approx(3e-3)
    assert panel.status.text == "head LR 100000 is not allowed: type a value from 1e-05 to 1 (3e-3 is the default). " \
                                "Kept 0.003."
    panel.lr.value = 0.05
    assert panel.lr.value == 0.05
    with pytest.raises(ValueError, match=r"epochs must be a whole number from 1 to 1000, or None"):
        TrainPanel(dataset="digits", epochs=-1)
    with pytest.raises(ValueError, match=r"lr must be between 1e-05 and 1; got 100000"):
        TrainPanel(dataset="digits", lr=1e5)


def test_the_empty_chart_waits_for_a_click_not_for_an_epoch():
    panel = TrainPanel(dataset="digits", shots=2)
    notes = [a.text for a in panel.figure.layout.annotations if a.name == "waiting"]
    assert notes == ["no run yet: click Train to start one"]


def _folder_of_two_classes(root, per_class=6):
    from PIL import Image

    for c, colour in (("cats", (200, 120, 40)), ("dogs", (40, 90, 200))):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (24, 24), tuple(v + 5 * i for v in colour)).save(root / c / f"{i}.png")
    (root / "cats" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "dogs" / ".hidden.png").write_bytes(b"x")
    return root


def test_choosing_your_folder_offers_its_shots_and_shows_the_skipped_files(tmp_path):
    root = _folder_of_two_classes(tmp_path / "mine")
    most = min(tl_lab.load_dataset("folder", root=root, shots=None).train.counts().values())
    assert most == 4  # 6 per class: 1 test, 1 validation, 4 to train on
    panel = TrainPanel(dataset="digits", shots=10, run_dir=tmp_path)
    panel.wait(60)
    assert panel.skipped.layout.display == "none"  # built-in data: nothing to report
    panel.dataset.value = "folder"
    panel.folder.value = str(root)
    panel.wait(60)
    assert panel.last_error is None, panel.status.text
    assert [v for _, v in panel.shots.options] == [1, 2, 4, None]  # what the folder can give, and "all"
    assert panel.shots.value == most and panel.state.shots == most
    text = panel.status.text
    assert "so shots per class is now 4 (was 10)" in text
    assert "val_per_class" not in text and "shots=" not in text
    assert panel.skipped.layout.display == "" and panel.skipped.get_title(0).startswith("2 file(s)")
    assert "broken.jpg" in panel.skipped_list.value and ".hidden.png" in panel.skipped_list.value
    panel.dataset.value = "digits"  # back to built-in data: the usual choices, no report
    assert panel.skipped.layout.display == "none" and None in [v for _, v in panel.shots.options]
    assert 20 in [v for _, v in panel.shots.options]


def test_a_shots_error_is_said_in_the_widgets_words(tmp_path):
    from tl_lab.data.datasets import NotEnoughImages
    from tl_lab.widgets.train_options import in_widget_words

    root = _folder_of_two_classes(tmp_path / "mine")
    with pytest.raises(NotEnoughImages) as error:
        tl_lab.load_dataset("folder", root=root, shots=10)
    # the data layer's fields, and its message (which names load_dataset's arguments) kept as it was
    assert (error.value.shots, error.value.most_shots, error.value.smallest_class) == (10, 4, "cats")
    assert isinstance(error.value, ValueError) and str(error.value) == (
        f"shots=10 is more than the 4 training images available per class in {error.value.dataset!r} (smallest "
        "class: 'cats'); use shots <= 4, a smaller val_per_class, or shots=None for all")
    said = str(in_widget_words(error.value))
    assert said == "this data has only 4 training images per class (smallest class: 'cats'): choose 'shots per " \
                   "class' 4 or fewer, or 'all'"
    # decided by the type, not by reading the text: another ValueError that quotes the same words is left alone
    other = ValueError("use shots <= 3 (smallest class: 'x')")
    assert in_widget_words(other) is other
    panel = TrainPanel(dataset="folder", root=str(root), shots=2, run_dir=tmp_path)
    panel.wait(60)
    panel.state.shots = 10  # more than the folder has, set behind the menu's back: the panel says it in its words
    panel.train_button.click()
    assert panel.status.kind == "error" and panel.status.text == f"Error: ValueError: {said}"


def test_stop_with_nothing_training_says_so():
    panel = TrainPanel(dataset="digits", shots=5)
    panel.stop()
    assert panel.status.kind == "warn" and "Nothing is training" in panel.status.text
    with pytest.raises(ValueError, match="no stopped run"):
        panel.resume()


def _row_cells(table_html: str, run_label: str) -> list[str]:
    """The cells of the runs-table row whose first cell is ``run_label``."""
    row = re.search(rf"<tr><td>{re.escape(run_label)}</td>(.*?)</tr>", table_html)
    assert row, (run_label, table_html)
    return [run_label, *re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))]


@pytest.mark.slow
def test_a_remedy_reaches_fit_and_the_table_shows_how_much_of_imagenet_each_run_kept(tmp_path, monkeypatch):
    import threading

    from tl_lab.inside.old_task import PHOTOS, TEST, old_task_agreement

    threads = []
    real = keep_old_task_module.old_task_agreement
    monkeypatch.setattr(keep_old_task_module, "old_task_agreement",
                        lambda *a, **k: (threads.append(threading.current_thread().name), real(*a, **k))[1])
    panel = TrainPanel(dataset="digits", shots=2, image_size=32, run_dir=tmp_path)
    panel.wait(60)
    panel.epochs.value = 2
    panel.train_button.click()  # the default plan, a frozen head: the body cannot forget anything
    frozen = panel.wait(120)
    assert panel.last_error is None and "retain" not in frozen.config
    reference = panel.state.backbone()
    assert old_task_agreement(frozen, reference=reference)[TEST]["top1_agreement"] == 1.0  # exactly: same body
    header = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", panel.table.value)
    assert header[:7] == ["run", "data", "best val acc", "test acc", "keep old task", "ImageNet kept (photos)",
                          "ImageNet kept (test images)"]
    assert _row_cells(panel.table.value, panel._label_of(frozen))[4:7] == ["none", "1.000", "1.000"]
    assert "ImageNet kept 1.000 (photos), 1.000 (test images)" in panel.status.text

    panel.plan_choice.value = "fine_tune"
    panel.keep.method.value = "lwf"
    assert panel.keep.strength.value == 1.0 and not panel.keep.strength.disabled
    panel.epochs.value = 3
    real_event = panel._on_event

    def stop_after_the_first_epoch(event):
        real_event(event)
        if isinstance(event, tl_lab.training.events.EpochEnd) and event.epoch == 0:
            panel.stop_button.click()

    panel._on_event = stop_after_the_first_epoch
    panel.train_button.click()
    tuned = panel.wait(120)
    assert tuned.config["retain"] == ["lwf 1"] and tuned.stopped_early and len(tuned.history) == 1
    kept = old_task_agreement(tuned, reference=reference)  # the kept checkpoint, measured by the library
    assert kept[TEST]["top1_agreement"] < 1.0  # the body moved: some ImageNet answers changed
    assert _row_cells(panel.table.value, panel._label_of(tuned))[4:7] == [
        "LwF 1", f"{kept[PHOTOS]['top1_agreement']:.3f}", f"{kept[TEST]['top1_agreement']:.3f}"]
    assert threads == ["tl-lab-old-task", "tl-lab-old-task"]  # measured in the background, after each run
    assert "raw pixels (logistic regression)" in panel.table.value and _row_count(panel.table.value) == 3
    # Resume continues it with the same remedy (fit builds the remedy from the pretrained weights, then resumes)
    assert not panel.resume_button.disabled and "Resume continues" in panel.status.text
    panel.resume_button.click()
    resumed = panel.wait(120)
    assert resumed.config["retain"] == ["lwf 1"] and len(resumed.history) == 3 and not resumed.stopped_early
    assert any("resumed from" in note for note in resumed.notes)

    panel.plan_choice.value = "scratch"
    panel.keep.method.value = "none"
    panel.epochs.value = 1
    panel.train_button.click()
    scratch = panel.wait(120)
    assert _row_cells(panel.table.value, panel._label_of(scratch))[4:7] == ["none", "n/a", "n/a"]
    assert f"n/a for {panel._label_of(scratch)}: trained from scratch" in panel.table.value
    assert 'title="share of the 4 sample photos' in panel.table.value  # what the column means, on its header


def test_a_remedy_the_plan_cannot_use_is_refused_before_training_and_so_is_a_bad_strength(tmp_path):
    panel = TrainPanel(dataset="digits", shots=2, run_dir=tmp_path)
    panel.wait(60)
    assert panel.keep.method.value == "none" and panel.keep.strength.disabled and panel.keep.retain() is None
    panel.keep.method.value = "ewc"
    assert panel.keep.strength.value == 100.0  # each remedy's own default (DEFAULT_STRENGTH)
    panel.keep.strength.value = -5
    assert panel.keep.strength.value == 100.0 and panel.status.kind == "warn"
    assert panel.status.text == "strength -5 is not allowed: type a number of 0 or more (EWC's default is 100). " \
                                "Kept 100."
    panel.keep.strength.value = 250
    assert panel.keep.retain() == tl_lab.Retain("ewc", 250.0)
    panel.train_button.click()  # the default plan trains only the head
    assert not panel.busy and panel.runs == [] and panel.status.kind == "warn"
    assert panel.status.text.startswith("Not started: EWC holds the body back while it trains, but this plan trains "
                                        "only the head: the body keeps its ImageNet weights, so nothing of the old "
                                        "task can be forgotten; unfreeze some body stages")
    panel.plan_choice.value = "scratch"
    panel.train_button.click()
    assert not panel.busy and "starts from random weights (from scratch)" in panel.status.text

    lora = TrainPanel(dataset="digits", shots=2, run_dir=tmp_path, plan=FreezePlan("stage7", params="lora"),
                      retain="l2sp")
    lora.wait(60)
    assert lora.plan_choice.value == "custom" and lora.keep.strength.value == 0.1
    lora.train_button.click()
    assert not lora.busy and lora.runs == [] and lora.status.text.startswith(
        "Not started: EWC and L2-SP pull weights back to their pretrained values, but LoRA (params='lora')")
    with pytest.raises(ValueError, match="remedy must be one of 'lwf', 'ewc', 'l2sp'; got 'replay'"):
        TrainPanel(dataset="digits", retain="replay")


@pytest.mark.slow
def test_the_runs_row_arrives_before_the_old_task_is_measured(tmp_path, monkeypatch):
    """Measuring "ImageNet kept" (a forward pass of the photos and test images) must not hold up the run's row:
    the measurement here blocks on an Event, and the row, the status and the buttons are there before it ends."""
    import threading

    from tl_lab.inside.old_task import PHOTOS, TEST

    release, started = threading.Event(), threading.Event()
    real = keep_old_task_module.old_task_agreement

    def blocked(*args, **kwargs):
        started.set()
        assert release.wait(120), "the test never released the measurement"
        return real(*args, **kwargs)

    monkeypatch.setattr(keep_old_task_module, "old_task_agreement", blocked)
    panel = TrainPanel(dataset="digits", shots=2, image_size=32, epochs=1, run_dir=tmp_path)
    panel.wait(60)
    panel.train_button.click()
    panel.worker.wait(120)  # the run's job ended: fit returned and its row was written
    assert panel.last_error is None, panel.status.text
    run = panel.runs[-1]
    assert started.wait(60) and not release.is_set()  # the measurement is under way, and blocked
    label = panel._label_of(run)
    assert _row_cells(panel.table.value, label)[:7] == [
        label, "digits, 2-shot", f"{run.best['val_acc']:.3f}", f"{run.best['test_acc']:.3f}", "none", "measuring…",
        "measuring…"]
    assert f"{label}: measuring what it kept of ImageNet in the background" in panel.table.value
    assert panel.status.text.startswith("Finished") and "ImageNet kept: measuring…" in panel.status.text
    assert not panel.train_button.disabled  # the learner can start the next run meanwhile
    release.set()
    assert panel.wait(120) is run and not panel.kept.busy
    kept = real(run, reference=panel.state.backbone())
    assert _row_cells(panel.table.value, label)[5:7] == [f"{kept[PHOTOS]['top1_agreement']:.3f}",
                                                         f"{kept[TEST]['top1_agreement']:.3f}"] == ["1.000", "1.000"]
    assert "measuring" not in panel.table.value
    assert "ImageNet kept 1.000 (photos), 1.000 (test images)" in panel.status.text  # its end message, completed


def test_the_live_chart_draws_the_task_loss_against_validation_and_each_term_apart(tmp_path):
    """The contract of the loss terms: EpochEnd metrics keep train_loss (the total) and add train_task_loss and
    term_<name>; the chart's training curve is the task loss and each term has its own panel and legend entry."""
    from tl_lab.training.events import EpochEnd, FitEnd, FitStart

    panel = TrainPanel(dataset="digits", shots=2, run_dir=tmp_path, update_interval=60.0)
    rows = [{"epoch": e, "train_loss": 4.0 + 0.1 * e, "train_task_loss": 2.2 - 0.1 * e, "term_lwf": 1.9 + 0.2 * e,
             "term_domain_confusion": 0.5, "val_loss": 2.0 - 0.05 * e, "train_acc": 0.3 + 0.1 * e, "val_acc": 0.25 + 0.1 * e}
            for e in (1, 2, 3)]
    config = {"backbone": "efficientnet_lite0", "plan_label": "fine-tune all", "data": {"name": "digits", "shots": 2}}
    panel._on_event(FitStart("run-a", 3, 0, 2, config, "off"))
    for i, row in enumerate(rows):
        panel._on_event(EpochEnd(i, 3, row, False))
    panel._on_event(FitEnd(None))
    by_metric = {t.meta["metric"]: t for t in panel.figure.data}
    assert list(by_metric) == ["train_loss", "val_loss", "train_acc", "val_acc", "term_lwf", "term_domain_confusion"]
    assert list(by_metric["train_loss"].y) == pytest.approx([2.1, 2.0, 1.9])  # the task loss, not the total 4.x
    assert list(by_metric["val_loss"].y) == pytest.approx([1.95, 1.9, 1.85])
    assert by_metric["train_loss"].yaxis == by_metric["val_loss"].yaxis == "y"
    lwf, domain = by_metric["term_lwf"], by_metric["term_domain_confusion"]
    assert list(lwf.x) == [1.0, 2.0, 3.0] and list(lwf.y) == pytest.approx([2.1, 2.3, 2.5])
    assert list(domain.y) == pytest.approx([0.5, 0.5, 0.5])
    assert lwf.yaxis == domain.yaxis == "y3" and panel.figure.layout.yaxis3.title.text == "added loss terms"
    label = "lite0, fine-tune all, 2-shot, digits"
    assert lwf.name == f"{label}: LwF: distance to the original network's outputs"
    assert domain.name == f"{label}: domain confusion: the domain classifier's loss" and lwf.line.dash == "dot"
    assert "task's loss alone" in panel.figure.layout.title.text
    # the chart's saved state (what a reloaded page draws) holds the terms too
    assert [t["meta"]["metric"] for t in panel.figure._widget_data][-2:] == ["term_lwf", "term_domain_confusion"]


def test_throttle_lets_through_at_most_once_per_interval():
    t = Throttle(60.0)
    assert t.ready() and not t.ready() and t.ready(force=True)


# ---- look-inside widgets ----------------------------------------------------------------------------------------


def test_feature_explorer_draws_maps_and_filters_and_reports_bad_uploads():
    ex = FeatureExplorer(dataset="digits", shots=5)
    assert ex.maps_fig.widget is None  # no plotly bundle is sent until there is something to show
    ex.stage.value = "stage2"
    ex.show_button.click()
    ex.wait(60)
    assert ex.status.kind == "ok", ex.status.text
    heatmaps = [t for t in ex.maps_fig.figure.data if t.type == "heatmap"]
    assert len(heatmaps) == 8 and "stage2" in ex.maps_fig.figure.layout.title.text
    assert ex.filters_fig.figure.data[0].type == "image"
    ex.source.value = "dataset"
    ex.index.value = 3
    ex.show_button.click()
    ex.wait(60)
    assert "test image #3" in ex.status.text
    with pytest.raises(ValueError, match="could not read 'notes.txt' as an image"):
        read_upload(({"name": "notes.txt", "content": memoryview(b"hello")},))
    ex.upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 5, "content": memoryview(b"hello"),
                        "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)},)
    assert ex.status.kind == "error" and "upload a PNG or JPEG" in ex.status.text


@pytest.mark.slow
def test_feature_explorer_probes_and_embedding_on_digits(monkeypatch):
    from tl_lab.widgets import inside as inside_module

    measured = []  # what the library returned to the widget: the chart must show exactly these numbers
    real = inside_module.probe_stages
    monkeypatch.setattr(inside_module, "probe_stages", lambda *a, **k: measured.append(real(*a, **k)) or measured[-1])
    ex = FeatureExplorer(dataset="digits", shots=5)
    ex.probe_button.click()
    ex.wait(300)
    assert ex.status.kind == "ok", ex.status.text
    best = measured[0].best_stage
    assert ex.status.text == (f"Probes done: best stage {best} (test acc {measured[0].curve('test')[best]:.3f}); raw "
                              f"pixels {measured[0].baseline_test_acc:.3f}.")
    probe = [t for t in ex.probe_fig.figure.data if t.name == "linear probe"][0]
    records = measured[0].to_records()
    assert list(probe.x) == [r["stage"] for r in records] == list(tl_lab.load_backbone().body_stages)
    assert list(probe.y) == pytest.approx([r["test_acc"] for r in records])
    ex.stage.value = "stage5"
    ex.embed_button.click()
    ex.wait(300)
    points = sum(len(t.x) for t in ex.embed_fig.figure.data)
    assert points == len(tl_lab.load_dataset("digits", shots=5).test)


@pytest.fixture(scope="module")
def head_run(tmp_path_factory):
    data = tl_lab.load_dataset("digits", shots=5)
    return tl_lab.fit("efficientnet_lite0", data, epochs=15, progress=False,
                      run_dir=tmp_path_factory.mktemp("head_run"))


@pytest.mark.slow
def test_attribution_explorer_compares_models_side_by_side(head_run):
    ex = AttributionExplorer(runs=[head_run], methods=("saliency", "grad_cam"))
    assert len(ex.models.value) == 2  # the pretrained network and the run
    ex.show_button.click()
    ex.wait(300)
    assert ex.status.kind == "ok", ex.status.text
    heat = [t for t in ex.figure.figure.data if t.type == "heatmap"]
    assert len(heat) == 2 * 2  # 2 models x 2 methods
    titles = " ".join(a.text for a in ex.figure.figure.layout.annotations)
    label = head_run.data.test.classes[int(head_run.data.test.labels[0])]
    assert f"run 1 → {label}" in titles and "pretrained →" in titles
    ex.models.value = ()
    ex.show_button.click()
    assert ex.status.kind == "error" and "select at least one model" in ex.status.text


@pytest.mark.slow
def test_compare_runs_cka_is_one_where_nothing_trained(head_run):
    cmp = CompareRuns(runs=[head_run], max_images=100)
    assert cmp.a.value == "pretrained (ImageNet classifier)" and cmp.b.value == head_run.name
    cmp.compare_button.click()
    cmp.wait(300)
    assert cmp.status.kind == "ok", cmp.status.text
    # a frozen-head run leaves every body stage as it was: CKA 1 everywhere (a real check of the wiring)
    assert all(v == pytest.approx(1.0, abs=1e-4) for v in cmp.result.per_stage.values())
    curve = cmp.figure.figure.data[0]  # the chart shows the measured CKA of every stage
    assert list(curve.x) == list(cmp.result.per_stage) and list(curve.y) == pytest.approx(
        list(cmp.result.per_stage.values()))
    assert "raw pixels" in cmp.table.value
    cmp.b.value = cmp.a.value
    cmp.compare_button.click()
    assert cmp.status.kind == "error" and "the same" in cmp.status.text


# ---- the dashboard ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_transfer_lab_tabs_share_one_state(tmp_path):
    lab = TransferLab(dataset="digits", shots=5, run_dir=tmp_path)
    assert [lab.tabs.get_title(i) for i in range(6)] == ["1 Backbone", "2 Freeze", "3 Train", "4 Inside",
                                                         "5 Attributions", "6 Compare"]
    lab.picker.wait(60)
    lab.freezer.set_trainable_from("stage7")
    assert lab.state.plan.trainable_from == "stage7"
    assert lab.train.plan_choice.value == "custom" and "stage7" in lab.train.plan_choice.label
    assert _count(lab.freezer.count.value) == FreezePlan("stage7").summary(
        tl_lab.load_backbone(pretrained=False, num_classes=10)).trainable
    lab.train.epochs.value = 2
    lab.train.train_button.click()
    run = lab.train.wait(300)
    assert run.config["plan"]["trainable_from"] == "stage7"
    assert run.name in [v for _, v in lab.attributions.models.options]
    assert lab.compare.b.value == run.name


# ---- embedding --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_record_and_replay_make_a_small_json_and_an_offline_page(head_run, tmp_path):
    from tl_lab.plots import comparison_bars
    from tl_lab.plots.embed import load_record, replay, save_html

    fig = comparison_bars([{"strategy": "frozen_head", "test_acc": head_run.best["test_acc"]}])
    path = head_run.record(tmp_path / "run.json", figures={"Result": fig})
    doc = json.loads(path.read_text())
    assert path.stat().st_size < 100_000
    assert doc["history"] == json.loads(json.dumps(head_run.history)) and doc["raw_pixel_baseline"] == pytest.approx(
        tl_lab.baseline(head_run.data)["test_acc"])
    page = replay(path)
    assert page == tmp_path / "run.html"
    text = page.read_text()
    assert text.count("plotly.js v") == 1 and text.count('class="plotly-graph-div"') == 2
    assert not re.search(r"<script[^>]+src=", text), "no script is loaded from anywhere: works offline"
    assert "raw-pixel baseline (test acc)" in text and f"{doc['raw_pixel_baseline']:.3f}" in text
    assert f"{head_run.best['test_acc']:.3f}" in text and "<h2>Result</h2>" in text

    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a tl_lab run recording"):
        load_record(bad)
    with pytest.raises(FileNotFoundError, match="run.record"):
        load_record(tmp_path / "missing.json")

    panel = TrainPanel(dataset="digits", shots=5)
    with pytest.raises(ValueError, match="shows no figure yet"):
        save_html(FeatureExplorer(dataset="digits"), tmp_path / "empty.html")
    panel.add_run(head_run)
    snap = save_html(panel, tmp_path / "panel.html").read_text()
    assert snap.count('class="plotly-graph-div"') == 1 and "tl-run-table" in snap
    with pytest.raises(ValueError, match="save_html takes"):
        save_html(42, tmp_path / "x.html")


@pytest.mark.slow
def test_the_chart_state_a_reloaded_page_draws_holds_every_epoch(head_run):
    # a reloaded page (or a second view) draws a FigureWidget from _widget_data/_widget_layout, which plotly
    # fills only when the widget is made or displayed on its own: the slot keeps them current
    panel = TrainPanel(dataset="digits", shots=5)
    panel.add_run(head_run)
    saved = {t["meta"]["metric"]: t for t in panel.figure._widget_data}
    assert list(saved["val_acc"]["x"]) == [float(h["epoch"]) for h in head_run.history]
    assert list(saved["val_acc"]["y"]) == pytest.approx([h["val_acc"] for h in head_run.history])
    assert not any(a.get("name") == "waiting" for a in panel.figure._widget_layout.get("annotations", []))


@pytest.mark.slow
def test_add_run_overlays_runs_with_unique_labels(head_run):
    panel = TrainPanel(dataset="digits", shots=5)
    panel.add_run(head_run)
    panel.add_run(head_run)
    labels = [t.meta["run"] for t in panel.figure.data]
    assert len(set(labels)) == 2 and any(lbl.endswith("#2") for lbl in labels)
    assert np.allclose(panel.figure.data[3].y, [h["val_acc"] for h in head_run.history])


@pytest.mark.slow
def test_runs_of_several_datasets_each_get_their_raw_pixel_row_and_a_legend_naming_the_data(head_run, tmp_path):
    other = tl_lab.fit("efficientnet_lite0", tl_lab.load_dataset("shapes", shots=2), epochs=1, progress=False,
                       run_dir=tmp_path / "shapes")
    panel = TrainPanel(dataset="digits", shots=5)
    panel.add_run(head_run)
    panel.add_run(other)
    table = panel.table.value
    assert table.count("raw pixels (logistic regression)") == 2
    for run, name in ((head_run, "digits, 5-shot"), (other, "shapes, 2-shot")):
        acc = tl_lab.baseline(run.data)["test_acc"]
        assert re.search(rf"raw pixels \(logistic regression\)</td><td>{name}</td>.*?{acc:.3f}", table), name
    legends = [t.name for t in panel.figure.data if t.showlegend]
    assert [lbl.rsplit(", ", 1)[-1] for lbl in legends] == ["digits", "shapes"]


def test_wide_figures_fit_the_output_area_and_column_titles_do_not_collide():
    from tl_lab.plots.inside import MAX_WIDTH, attribution_overlays, feature_map_grid, wrap_title

    fig = feature_map_grid(np.random.rand(12, 8, 8), image=np.zeros((32, 32, 3), np.uint8), stage="stage3")
    assert fig.layout.width <= MAX_WIDTH <= 930  # was 1000 px in a 932 px box: the fifth column was cut
    maps = {k: np.random.rand(2, 16, 16) for k in ("Saliency (gradient)", "Integrated Gradients", "Grad-CAM",
                                                   "Occlusion (8 px)", "Input × Gradient")}
    fig = attribution_overlays(np.zeros((2, 16, 16, 3), np.uint8), maps)
    assert fig.layout.width <= MAX_WIDTH
    column = (fig.layout.width - fig.layout.margin.l - fig.layout.margin.r) / (1 + len(maps))
    titles = [a.text for a in fig.layout.annotations if a.text and a.textangle != 90]
    assert "Saliency<br>(gradient)" in titles and "Integrated<br>Gradients" in titles
    for t in titles:  # each line narrower than its column at 13 px (0.58 em a character, generous for sans-serif)
        assert all(len(line) * 0.58 * 13 <= column for line in t.split("<br>")), t
    assert wrap_title("image", 100) == "image"
