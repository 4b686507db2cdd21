"""rank_backbones: candidates, records, Kendall tau against a hand count and scipy, verification by training,
every embedded dataset and a learner's folder, errors that name the fix."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from tl_lab.data.datasets import load_dataset
from tl_lab.experiments.backbone_ranking import kendall_tau, rank_backbones

KEYS = {"backbone", "pretrained", "logme", "leep", "score_seconds", "train_seconds", "test_acc"}


def test_kendall_tau_by_hand():
    # pairs (1,1) (2,3) (3,2): concordant 12, 13; discordant 23 -> (2 - 1) / 3
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, None], [1, 2, 5]) == pytest.approx(1.0)  # missing values are left out
    assert math.isnan(kendall_tau([1, 2], [None, None])) and math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_default_candidates_are_the_offline_backbones_each_with_random_init():
    """The test session's hub cache is empty, so the offline candidates are the three embedded Lite networks."""
    data = load_dataset("shapes", shots=2, image_size=32, val_per_class=2, per_class=8)
    seen = []
    r = rank_backbones(data, verify=None, progress=False, throughput=False, callback=seen.append)
    records = r.to_records()
    assert [(x["backbone"], x["pretrained"]) for x in records] == [
        (f"efficientnet_lite{v}", p) for v in (0, 1, 2) for p in (True, False)]
    assert [x["label"] for x in records][:2] == ["efficientnet_lite0", "efficientnet_lite0 (random init)"]
    assert len(seen) == 6 and seen[0]["label"] == "efficientnet_lite0"
    for x in records:
        assert KEYS <= set(x)
        assert x["test_acc"] is None and x["train_seconds"] is None
        assert x["score_seconds"] >= x["forward_seconds"] > 0
        assert x["leep"] <= 0 and np.isfinite(x["logme"])
    assert records[2]["imagenet_top1"] == 0.767 and records[3]["imagenet_top1"] is None
    assert records[4]["parameters"] == 6_092_072
    assert all(math.isnan(t) for t in r.kendall_tau.values())
    assert "raw pixels" in r.summary()


@pytest.mark.slow
def test_verify_trains_each_candidate_and_tau_agrees_with_scipy():
    from scipy.stats import kendalltau

    data = load_dataset("clipart", shots=5, image_size=64, val_per_class=3)
    seen = []
    r = rank_backbones(data, ["efficientnet_lite0"], metrics=("logme", "leep", "probe"), fast=True,
                       progress=False, callback=seen.append)
    records = r.to_records()
    assert len(records) == 2 and len(seen) == 4  # scored, then trained, for each candidate
    pretrained, random_init = records
    assert pretrained["train_seconds"] > 0 and 0 <= pretrained["test_acc"] <= 1
    # ImageNet features transfer to clip art; a frozen random body does not (measured 0.46 vs 0.11)
    assert pretrained["test_acc"] > random_init["test_acc"] + 0.2
    for metric in ("logme", "leep", "probe"):
        assert r.kendall_tau[metric] == pytest.approx(
            kendalltau([x[metric] for x in records], [x["test_acc"] for x in records]).statistic)
    assert r.ranking("test_acc")[0] == "efficientnet_lite0"
    assert images_per_second_positive(records)
    assert [run.name for run in r.runs] == ["rank-efficientnet_lite0-pretrained-frozen_head",
                                            "rank-efficientnet_lite0-random-frozen_head"]
    assert r.runs[0].best["test_acc"] == pretrained["test_acc"]
    assert any(n.startswith("Kendall tau") for n in r.notes)


def images_per_second_positive(records):
    return all(x["images_per_second"] > 0 for x in records)


@pytest.mark.parametrize("name", ["clipart", "digits", "shapes", "textures"])
def test_scores_on_every_embedded_dataset(name, lite0):
    data = load_dataset(name, shots=2, image_size=32, val_per_class=1,
                        **({"per_class": 6} if name in ("shapes", "textures") else {}))
    r = rank_backbones(data, ["efficientnet_lite0"], random_init=False, verify=None, progress=False,
                       throughput=False)
    (record,) = r.to_records()
    assert record["dataset"] == name and np.isfinite(record["logme"]) and record["leep"] <= 0


def test_scores_a_learners_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c, colour in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        (tmp_path / c).mkdir()
        for i in range(6):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, size=(40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / c / f"{i}.png")
    data = load_dataset("folder", root=tmp_path, image_size=32, val_per_class=1)
    r = rank_backbones(data, ["efficientnet_lite0"], verify=None, progress=False, throughput=False)
    pretrained, random_init = r.to_records()
    assert pretrained["dataset"] == "folder" and np.isfinite(pretrained["logme"])
    assert pretrained["leep"] > random_init["leep"]  # the ImageNet head tells red from blue; a random head cannot


def test_errors_name_the_fix():
    data = load_dataset("shapes", shots=2, image_size=32, val_per_class=1, per_class=6)
    with pytest.raises(ValueError, match=r"unknown backbone\(s\) \['resnet19'\]; choose from: efficientnet_lite0, "):
        rank_backbones(data, ["resnet19"], verify=None, progress=False)
    with pytest.raises(ValueError, match=r"unknown metric \['nce'\]; choose from: logme, leep, probe"):
        rank_backbones(data, ["efficientnet_lite0"], metrics=("nce",), verify=None, progress=False)
    with pytest.raises(ValueError, match=r"unknown verify recipe 'train'; choose one of: frozen_head, fine_tune"):
        rank_backbones(data, ["efficientnet_lite0"], verify="train", progress=False)
    one_shot = load_dataset("shapes", shots=1, image_size=32, val_per_class=1, per_class=6)
    with pytest.raises(ValueError, match="shots >= 2"):
        rank_backbones(one_shot, ["efficientnet_lite0"], verify=None, progress=False)


# ---- figures -----------------------------------------------------------------------------------------------------

RECORDS = [
    {"backbone": "efficientnet_lite0", "pretrained": True, "label": "efficientnet_lite0", "logme": -0.32,
     "leep": -0.36, "score_seconds": 1.5, "test_acc": 0.6, "parameters": 4_652_008, "images_per_second": 300.0,
     "recipe": "frozen_head"},
    {"backbone": "efficientnet_lite0", "pretrained": False, "label": "efficientnet_lite0 (random init)",
     "logme": -0.39, "leep": -1.95, "score_seconds": 1.2, "test_acc": 0.12, "parameters": 4_652_008,
     "images_per_second": 300.0, "recipe": "frozen_head"},
]


def test_ranking_figures_show_the_numbers_they_are_given():
    from tl_lab.plots import cost_vs_accuracy, score_vs_accuracy, transferability_scores

    bars = transferability_scores(RECORDS)
    logme_bars = bars.data[0]
    assert list(logme_bars.text) == ["-0.320", "-0.390"]
    # bars start left of the lowest score, so the better (higher) score has the longer bar
    assert logme_bars.x[0] > logme_bars.x[1] and logme_bars.base + logme_bars.x[0] == pytest.approx(-0.32)
    assert "1.5 s" in bars.layout.yaxis.ticktext[0]
    scatter = score_vs_accuracy(RECORDS, tau={"logme": 1.0, "leep": 1.0}, baseline=0.3)
    assert "Kendall τ = +1.00" in scatter.layout.annotations[0].text
    assert list(scatter.data[1].y) == [0.6, 0.12]
    cost = cost_vs_accuracy(RECORDS, cost="parameters")
    assert cost.data[0].x[0] == pytest.approx(4.652008)
    with pytest.raises(ValueError, match="unknown cost 'flops'; choose one of: parameters, images_per_second"):
        cost_vs_accuracy(RECORDS, cost="flops")
    with pytest.raises(ValueError, match="run rank_backbones with verify='frozen_head'"):
        score_vs_accuracy([{**r, "test_acc": None} for r in RECORDS])


# ---- widgets -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_picker_lists_the_offline_networks_with_their_cost():
    from tl_lab.widgets.picker import BackbonePicker, offline_cost_rows

    rows = offline_cost_rows(measure=False)
    assert [r["network"] for r in rows] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert [r["parameters"] for r in rows] == [4_652_008, 5_416_680, 6_092_072]
    assert [r["ImageNet top-1"] for r in rows] == [0.751, 0.767, 0.776]
    picker = BackbonePicker()
    picker.wait(120)
    html = picker.costs.value
    assert "efficientnet_lite2" in html and "77.6%" in html and "6,092,072" in html and "images/s" in html


@pytest.mark.slow
def test_chooser_scores_then_verifies_with_numbers_from_the_library():
    from tl_lab.widgets.backbone_choice import BackboneChooser
    from tl_lab.widgets.state import LabState

    state = LabState(dataset="clipart", shots=3)  # the chooser alone accepts any shots
    chooser = BackboneChooser(state=state, backbones=["efficientnet_lite0"], image_size=32)
    assert chooser.verify_button.disabled
    chooser.score_button.click()
    chooser.wait(300)
    assert chooser.status.kind == "ok", chooser.status.text
    records = chooser.result.to_records()
    bars = chooser.scores_fig.widget
    assert [round(v, 6) for v in bars.data[0].x] == [round(r["logme"] - bars.data[0].base, 6) for r in records]
    assert not chooser.verify_button.disabled
    chooser.verify_button.click()
    chooser.wait(600)
    assert chooser.status.kind == "ok", chooser.status.text
    tau = chooser.result.kendall_tau
    assert f"logme {tau['logme']:+.2f}" in chooser.status.text
    records = chooser.result.to_records()
    logme = [t for t in chooser.check_fig.widget.data if t.x and len(t.x) == len(records)][0]
    assert list(logme.x) == pytest.approx([r["logme"] for r in records])  # the chart shows the measured numbers
    assert list(logme.y) == pytest.approx([r["test_acc"] for r in records])
    assert chooser.check_fig.widget in chooser.check_fig.children and chooser.check_fig.layout.display == ""
    assert [r.name for r in state.runs] == [r.name for r in chooser.result.runs] and len(state.runs) == 2


def _ranking(records, *, trained):
    from tl_lab.experiments.backbone_ranking import RankingResult

    rows = [{**r, "imagenet_top1": None, "train_seconds": 2.0 if trained else None,
             "test_acc": r["test_acc"] if trained else None} for r in records]
    return RankingResult("backbone_ranking", rows, 1.0, config={"dataset": "clipart", "raw_pixels_test_acc": 0.3},
                         metrics=("logme", "leep"))


def _shown(slot):
    """The figure a FigureSlot puts on the page: its widget, when it is among the slot's children and shown."""
    if slot.widget is None or slot.widget not in slot.children or slot.layout.display == "none":
        return None
    return slot.widget


def test_chooser_shows_the_verification_again_after_a_second_score(monkeypatch):
    """Score, verify, score again, verify again: the second verification's charts are on the page with its own
    numbers (the slots' FigureWidgets stay among their children; the first verification is cleared and hidden)."""
    from tl_lab.widgets import backbone_choice
    from tl_lab.widgets.state import LabState

    second = [{**r, "logme": r["logme"] - 0.5, "test_acc": r["test_acc"] / 2} for r in RECORDS]
    scorings = iter([RECORDS, second])
    current = []  # the records of the last scoring: what its verification measures

    def score(*_a, **_k):
        current[:] = next(scorings)
        return _ranking(current, trained=False)

    monkeypatch.setattr(backbone_choice, "rank_backbones", score)
    monkeypatch.setattr(backbone_choice, "verify_ranking", lambda *_a, **_k: _ranking(current, trained=True))
    monkeypatch.setattr(LabState, "data", lambda self, *a, **k: None)
    chooser = backbone_choice.BackboneChooser(state=LabState(dataset="clipart", shots=3))
    assert _shown(chooser.check_fig) is None and _shown(chooser.cost_fig) is None  # nothing verified yet
    for records in (RECORDS, second):
        chooser.score_button.click()
        chooser.wait(60)
        assert chooser.status.kind == "ok", chooser.status.text
        # a new scoring: the last verification is gone from the page (and from a saved snapshot)
        assert _shown(chooser.check_fig) is None and _shown(chooser.cost_fig) is None
        assert chooser.check_fig.widget is None or list(chooser.check_fig.widget.data) == []
        chooser.verify_button.click()
        chooser.wait(60)
        assert chooser.status.kind == "ok", chooser.status.text
        check, cost = _shown(chooser.check_fig), _shown(chooser.cost_fig)
        assert check is not None and cost is not None, "the verification charts must be displayed"
        points = [t for t in check.data if t.type == "scatter" and t.x is not None and len(t.x) == len(records)]
        assert [list(t.x) for t in points] == [pytest.approx([r[m] for r in records]) for m in ("logme", "leep")]
        assert all(list(t.y) == pytest.approx([r["test_acc"] for r in records]) for t in points)
        cost_points = [t for t in cost.data if t.type == "scatter" and t.y is not None and len(t.y) == len(records)]
        assert cost_points and list(cost_points[0].y) == pytest.approx([r["test_acc"] for r in records])


def test_chooser_buttons_show_an_error_instead_of_failing_silently(monkeypatch):
    from tl_lab.widgets import backbone_choice
    from tl_lab.widgets.state import LabState

    def refuse(*_a, **_k):
        raise RuntimeError("the worker could not start")

    chooser = backbone_choice.BackboneChooser(state=LabState(dataset="clipart", shots=3))
    monkeypatch.setattr(chooser.worker, "start", refuse)
    chooser.score_button.click()
    assert chooser.status.kind == "error" and chooser.status.text == "Error: RuntimeError: the worker could not start"
