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
    assert p.wait(timeout=60) is None
    assert ">layer4</b>" in p.diagram.value  # the diagram needs no weights
    assert p.status.kind == "warn"
    text = p.status.text
    assert "can't be used offline yet" in text and "resnet18" in text and ".pth" in text
    assert "efficientnet_lite0" in text  # names what works offline
    assert p.status.details_box.layout.display == "none"  # no traceback for this expected case


# ---- TrainPanel -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_panel_trains_in_the_background_and_the_chart_equals_the_history(tmp_path, monkeypatch):
    draws = []
    real = train_panel_module.append_epochs
    monkeypatch.setattr(train_panel_module, "append_epochs", lambda fig, rows, label: (draws.append(len(rows)),
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
        assert list(by_metric[metric].y) == pytest.approx([h[metric] for h in run.history])
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
    assert run.checkpoint.exists() and panel.stop_latency_s is not None
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


def test_stop_with_nothing_training_says_so():
    panel = TrainPanel(dataset="digits", shots=5)
    panel.stop()
    assert panel.status.kind == "warn" and "Nothing is training" in panel.status.text
    with pytest.raises(ValueError, match="no stopped run"):
        panel.resume()


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
def test_feature_explorer_probes_and_embedding_on_digits():
    ex = FeatureExplorer(dataset="digits", shots=5)
    ex.probe_button.click()
    ex.wait(300)
    assert ex.status.kind == "ok", ex.status.text
    assert "raw pixels" in ex.status.text
    ys = [t for t in ex.probe_fig.figure.data if t.name == "linear probe"][0].y
    assert len(ys) == len(tl_lab.load_backbone().body_stages) and all(0 <= y <= 1 for y in ys)
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
    assert len(cmp.figure.figure.data) >= 1 and "raw pixels" in cmp.table.value
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


def test_add_run_overlays_runs_with_unique_labels(head_run):
    panel = TrainPanel(dataset="digits", shots=5)
    panel.add_run(head_run)
    panel.add_run(head_run)
    labels = [t.meta["run"] for t in panel.figure.data]
    assert len(set(labels)) == 2 and any(lbl.endswith("#2") for lbl in labels)
    assert np.allclose(panel.figure.data[3].y, [h["val_acc"] for h in head_run.history])
