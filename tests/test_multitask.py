"""Multi-task learning: several label sets on the shapes images, one head per task in the one loop, the experiment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tl_lab.data.datasets import load_dataset
from tl_lab.data.procedural import COLOUR_CLASSES, POSITION_CLASSES, SHAPE_CLASSES, shape_targets
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import batch_loss, fit
from tl_lab.training.terms import Batch, MultiTask
from tl_lab.training.multitask import Tasks

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes", shots=8, image_size=32, val_per_class=4)


# ---- the data: label sets ------------------------------------------------------------------------------------------


def test_shape_targets_read_the_quadrant_and_the_strongest_channel_off_the_scene():
    size = 16
    images = np.zeros((3, size, size, 3), np.uint8)
    masks = np.zeros((3, size, size), bool)
    masks[0, 1:5, 10:14] = True  # top right
    images[0][masks[0]] = (200, 40, 40)  # red
    masks[1, 11:15, 2:6] = True  # bottom left
    images[1][masks[1]] = (90, 60, 180)  # blue
    images[1][~masks[1]] = (255, 0, 0)  # a red background does not count: only the object's pixels do
    masks[2, 9:16, 9:16] = True  # bottom right
    images[2][masks[2]] = (10, 250, 100)  # green
    t = shape_targets(images, np.array([0, 3, 5]), masks)
    assert t["position"][1] == POSITION_CLASSES and t["colour"][1] == COLOUR_CLASSES
    assert [POSITION_CLASSES[i] for i in t["position"][0]] == ["top right", "bottom left", "bottom right"]
    assert [COLOUR_CLASSES[i] for i in t["colour"][0]] == ["red", "blue", "green"]
    assert t["shape"][1] == SHAPE_CLASSES and t["shape"][0].tolist() == [0, 3, 5]


def test_shapes_carry_three_label_sets_and_with_target_relabels_the_same_images(shapes):
    assert shapes.target == "shape" and list(shapes.targets) == ["shape", "position", "colour"]
    assert torch.equal(shapes.train.targets["shape"], shapes.train.labels)
    colour = shapes.with_target("colour")
    assert colour.classes == COLOUR_CLASSES and colour.target == "colour"
    for split in ("train", "val", "test"):
        a, b = getattr(shapes, split), getattr(colour, split)
        assert torch.equal(a.images, b.images) and torch.equal(b.labels, a.targets["colour"])
    # the pool is balanced enough that every attribute class occurs in the test split
    assert min(colour.test.counts().values()) > 10
    assert sum(colour.meta["counts"]["train"].values()) == len(shapes.train) == 8 * 6
    assert colour.meta["relabel"] == "colour"


def test_target_option_stratifies_shots_by_that_label_set():
    data = load_dataset("shapes", shots=5, image_size=32, target="position")
    assert data.classes == POSITION_CLASSES and data.train.counts() == dict.fromkeys(POSITION_CLASSES, 5)
    assert torch.equal(data.train.labels, data.train.targets["position"])


def test_label_set_errors_name_the_fix(shapes):
    with pytest.raises(ValueError, match="'digits' has one label set.*load_dataset\\('shapes'\\)"):
        load_dataset("digits", target="colour")
    with pytest.raises(ValueError, match="no label set 'size'; choose target= from shape, position, colour"):
        load_dataset("shapes", target="size")
    with pytest.raises(ValueError, match="no label set 'size'; choose from shape, position, colour"):
        shapes.with_target("size")


# ---- the loss and the heads ----------------------------------------------------------------------------------------


def test_the_loss_is_the_weighted_sum_of_each_heads_cross_entropy_on_its_own_labels(shapes):
    tasks = Tasks.build({"shape": 1.0, "colour": 0.5}, shapes)
    assert tasks.slices == {"shape": slice(0, 6), "colour": slice(6, 9)}
    torch.manual_seed(0)
    logits = torch.randn(8, 9, requires_grad=True)
    y = tasks.labels(shapes.train, torch.arange(8))
    assert torch.equal(y[:, 1], shapes.train.targets["colour"][:8])
    direct = F.cross_entropy(logits[:, :6], y[:, 0]) + 0.5 * F.cross_entropy(logits[:, 6:], y[:, 1])
    loss = batch_loss(MultiTask(tasks), (), Batch(logits, y)).total
    assert loss.item() == pytest.approx(direct.item(), rel=1e-6)
    # each head's logits get the gradient of its own task's term only
    (grad,) = torch.autograd.grad(loss, logits)
    (colour_only,) = torch.autograd.grad(0.5 * F.cross_entropy(logits[:, 6:], y[:, 1]), logits)
    assert torch.allclose(grad[:, 6:], colour_only[:, 6:]) and not torch.any(colour_only[:, :6])


def test_multitask_fit_trains_each_head_on_its_own_labels(shapes):
    run = fit("efficientnet_lite0", shapes, tasks=("shape", "colour"), plan=FreezePlan("stage7"), epochs=8,
              progress=False, save_checkpoints=False)
    head = run.backbone.model.get_submodule(run.backbone.head)
    outs = [m.out_features for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert outs == [6, 3]
    assert run.config["tasks"]["colour"]["classes"] == list(COLOUR_CLASSES)
    assert {"train_acc_shape", "val_acc_shape", "train_acc_colour", "val_acc_colour"} <= set(run.history[-1])
    # per-task test accuracies are what the model's own per-task predictions score against each label set
    probs = run.predict(shapes.test.images)
    for task in ("shape", "colour"):
        acc = (probs[task].argmax(1) == shapes.test.targets[task]).double().mean().item()
        assert run.best[f"test_acc_{task}"] == pytest.approx(acc, abs=1e-9)
    assert run.best["test_acc"] == pytest.approx((run.best["test_acc_shape"] + run.best["test_acc_colour"]) / 2)
    # the shape head learned shapes: far above chance (1/6) on 270 test images; training fits both label sets
    assert run.best["test_acc_shape"] > 0.28  # 5 standard errors above chance at n = 270
    assert run.history[-1]["train_acc_colour"] > 0.6
    assert run.evaluate()["acc_shape"] == pytest.approx(run.best["test_acc_shape"])


def test_multitask_errors_are_clear(shapes):
    digits = load_dataset("digits", shots=2, image_size=32)
    with pytest.raises(ValueError, match="'digits' has one label set"):
        fit("efficientnet_lite0", digits, tasks=("class", "parity"), progress=False, save_checkpoints=False)
    with pytest.raises(ValueError, match="'shapes' has no label set 'size'; choose from shape, position, colour"):
        fit("efficientnet_lite0", shapes, tasks=("shape", "size"), progress=False, save_checkpoints=False)
    with pytest.raises(ValueError, match="two or more label sets.*target='shape'"):
        fit("efficientnet_lite0", shapes, tasks="shape", progress=False, save_checkpoints=False)
    with pytest.raises(ValueError, match="two or more different label sets"):
        fit("efficientnet_lite0", shapes, tasks=("shape", "shape"), progress=False, save_checkpoints=False)
    with pytest.raises(ValueError, match="weight of task 'colour' must be a number >= 0"):
        fit("efficientnet_lite0", shapes, tasks={"shape": 1, "colour": -1}, progress=False, save_checkpoints=False)
    with pytest.raises(ValueError, match="cannot be combined with retain= or adapt_to="):
        fit("efficientnet_lite0", shapes, tasks=("shape", "colour"), retain="l2sp", progress=False,
            save_checkpoints=False)


def test_a_relabelled_run_reruns_with_the_same_labels(shapes, tmp_path):
    from tl_lab.app.rerun import run_from_config

    colour = shapes.with_target("colour")
    run = fit("efficientnet_lite0", colour, epochs=2, progress=False, run_dir=tmp_path / "a")
    assert run.config["data"]["relabel"] == "colour" and "target" not in run.config["data"]
    again = run_from_config(run.config, run_dir=tmp_path / "b", progress=False)
    assert again.data.classes == COLOUR_CLASSES and torch.equal(again.data.train.labels, colour.train.labels)
    assert again.best["test_acc"] == pytest.approx(run.best["test_acc"])


def test_a_multitask_run_reruns_with_its_tasks_and_weights(shapes, tmp_path):
    from tl_lab.app.rerun import run_from_config

    run = fit("efficientnet_lite0", shapes, tasks={"shape": 1.0, "position": 0.5}, epochs=2, progress=False,
              run_dir=tmp_path / "a")
    again = run_from_config(run.config, run_dir=tmp_path / "b", progress=False)
    assert again.config["tasks"] == run.config["tasks"]
    assert again.config["tasks"]["position"]["weight"] == 0.5
    assert again.best["test_acc_position"] == pytest.approx(run.best["test_acc_position"])


# ---- the experiment ------------------------------------------------------------------------------------------------


def test_sharing_effects_verdicts_use_twice_the_standard_error_of_a_difference():
    from tl_lab.experiments.multitask import sharing_effects

    def rec(training, acc, task="shape"):
        return {"shots": 10, "init": "pretrained", "task": task, "training": training, "test_acc": acc, "n_test": 200}

    effects = sharing_effects([rec("single", 0.50), rec("shared", 0.60), rec("single", 0.50, "colour"),
                               rec("shared", 0.45, "colour"), rec("raw pixels", 0.3)])
    noise = [2 * math.sqrt(2 * p * (1 - p) / 200) for p in (0.55, 0.475)]
    assert [e["noise"] for e in effects] == pytest.approx(noise)
    assert [(e["task"], e["verdict"]) for e in effects] == [("shape", "helped"), ("colour", "within noise")]
    assert sharing_effects([rec("single", 0.6), rec("shared", 0.4)])[0]["verdict"] == "hurt"


@pytest.mark.slow
def test_multitask_experiment_records_single_shared_and_raw_pixels():
    from tl_lab.experiments.multitask import multitask

    r = multitask(tasks=("shape", "colour"), shots=(5,), recipes=("fine_tune",), image_size=32, epochs=2)
    recs = r.to_records()
    assert [(x["task"], x["method"]) for x in recs] == [
        ("shape", "raw pixels"), ("colour", "raw pixels"), ("shape", "pretrained, single"),
        ("colour", "pretrained, single"), ("shape", "pretrained, shared"), ("colour", "pretrained, shared")]
    for x in recs:  # accuracies are k / n over the fixed test split
        assert x["n_test"] == 270 and abs(x["test_acc"] * 270 - round(x["test_acc"] * 270)) < 1e-6
    assert [x["chance"] for x in recs[:2]] == pytest.approx([1 / 6, 1 / 3])
    # one note per task, with the verdict the noise rule gives for these two accuracies (recomputed here)
    assert len(r.notes) == 2
    for task, note in zip(("shape", "colour"), r.notes):
        single, shared = (next(x["test_acc"] for x in recs if x["task"] == task and x["training"] == t)
                          for t in ("single", "shared"))
        p = (single + shared) / 2
        noise = 2 * math.sqrt(2 * p * (1 - p) / 270)
        verdict = "helped" if shared - single > noise else "hurt" if shared - single < -noise else "within noise"
        assert note == (f"5 shots, pretrained, {task}: shared {shared:.3f} vs single {single:.3f} "
                        f"({shared - single:+.3f}, noise +/-{noise:.3f}): {verdict}")
    # the shared rows are one run: same seconds, same trainable count
    shared = [x for x in recs if x["training"] == "shared"]
    assert shared[0]["seconds"] == shared[1]["seconds"] and shared[0]["trainable"] == shared[1]["trainable"]
    with pytest.raises(ValueError, match="recipes"):
        multitask(recipes=("linear_probe",))


def test_sharing_bars_one_panel_per_shot_count_one_bar_per_method_chance_per_task():
    from tl_lab.plots import sharing_bars

    recs = [{"shots": k, "task": t, "method": m, "test_acc": acc, "chance": ch}
            for k in (10, 40) for t, ch in (("shape", 1 / 6), ("position", 0.25))
            for m, acc in (("raw pixels", 0.2), ("pretrained, single", 0.6), ("pretrained, shared", 0.5))]
    recs.append({**recs[1], "test_acc": 0.8})  # a second seed of (10, shape, pretrained single): averaged to 0.7
    fig = sharing_bars(recs)
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["raw pixels", "pretrained, single", "pretrained, shared"] * 2
    assert [t.showlegend for t in bars] == [True] * 3 + [False] * 3
    assert bars[1].y == pytest.approx((0.7, 0.6)) and tuple(bars[1].x) == ("shape", "position")
    chance = [t for t in fig.data if t.name == "chance"]
    assert len(chance) == 2 and chance[0].y == pytest.approx((1 / 6, 0.25))
    assert [a.text for a in fig.layout.annotations] == ["10 images per shape class", "40 images per shape class"]
    with pytest.raises(ValueError, match="method"):
        sharing_bars([{"shots": 10, "task": "shape", "test_acc": 0.5}])
