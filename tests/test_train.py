"""The training loop: quality bars on embedded data, cache equivalence, determinism, resume, stop and faults."""

from __future__ import annotations

import json
import math
import threading

import pytest
import torch
from safetensors.torch import load_file

from tl_lab.backbones.registry import load_backbone
from tl_lab.data.datasets import DatasetSplits, load_dataset
from tl_lab.training.checkpoints import (
    CheckpointMismatchError,
    apply_model_state,
    load_checkpoint,
)
from tl_lab.training.events import (
    BatchEnd,
    EpochEnd,
    FitEnd,
    FitStart,
    StopCause,
    Stopped,
    StopToken,
)
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit
from tl_lab.training.settings import suggest_lr


@pytest.fixture(scope="module")
def digits10():
    return load_dataset("digits", shots=10, seed=0, image_size=64)


def _fit(data, tmp_path, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("run_dir", tmp_path / "run")
    return fit("efficientnet_lite0", data, **kw)


def test_frozen_head_on_digits_meets_the_bar(digits10, tmp_path):
    run = _fit(digits10, tmp_path, plan=FreezePlan.frozen_head())
    assert run.best["test_acc"] >= 0.80
    assert run.cache.startswith("memory") and "conv_head" in run.cache
    assert len(run.history) == 100 and not run.stopped_early
    assert run.trainable_parameters == 1280 * 10 + 10
    # files: best + last checkpoints and run.json with everything needed to rerun it
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["config"]["data"]["name"] == "digits" and saved["config"]["data"]["shots"] == 10
    assert saved["config"]["plan"] == {"trainable_from": "head", "bn": "frozen", "lr_mult": {}}
    assert {"torch", "torchvision", "python"} <= set(saved["config"]["versions"])
    assert saved["history"] == json.loads(json.dumps(run.history))
    # readable in an editor: one epoch per line, not one field per line
    lines = (tmp_path / "run" / "run.json").read_text().splitlines()
    assert sum(line.lstrip().startswith('{"epoch": ') for line in lines) == 100


def test_events_arrive_in_order_with_metrics(digits10, tmp_path):
    events = []
    run = _fit(digits10, tmp_path, epochs=3, batch_size=25, callbacks=[events.append])
    kinds = [type(e) for e in events]
    assert kinds[0] is FitStart and kinds[-1] is FitEnd
    assert kinds.count(BatchEnd) == 3 * 4 and kinds.count(EpochEnd) == 3
    ends = [e for e in events if isinstance(e, EpochEnd)]
    assert [e.metrics["val_acc"] for e in ends] == [h["val_acc"] for h in run.history]
    assert events[-1].run is run


@pytest.mark.slow
def test_same_call_twice_gives_the_same_history(digits10, tmp_path):
    a = _fit(digits10, tmp_path / "a", epochs=5, plan=FreezePlan(trainable_from="stage7"))
    b = _fit(digits10, tmp_path / "b", epochs=5, plan=FreezePlan(trainable_from="stage7"))
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("seconds", "images_per_s")} for e in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)


@pytest.mark.slow
def test_cached_and_uncached_runs_reach_the_same_accuracy(digits10, tmp_path):
    cached = _fit(digits10, tmp_path / "c", epochs=8)
    naive = _fit(digits10, tmp_path / "n", epochs=8, cache=False)
    assert naive.cache == "off: cache=False"
    assert "pooled 'conv_head' features" in cached.cache  # only the classifier runs per epoch
    assert abs(cached.best["test_acc"] - naive.best["test_acc"]) <= 0.01
    assert cached.history[-1]["train_loss"] == pytest.approx(naive.history[-1]["train_loss"], rel=1e-3, abs=1e-4)


@pytest.mark.slow
def test_resume_continues_to_the_same_result(digits10, tmp_path):
    plan = FreezePlan(trainable_from="stage7")
    full = _fit(digits10, tmp_path / "full", epochs=6, plan=plan)
    stop = StopToken()

    def stop_after_third_epoch(event):
        if isinstance(event, EpochEnd) and event.epoch == 2:
            stop.stop("test stop")

    first = _fit(digits10, tmp_path / "resumed", epochs=6, plan=plan, stop=stop, callbacks=[stop_after_third_epoch])
    assert first.stopped_early and len(first.history) == 3
    # a stop right after an epoch's end is seen on the next batch; the partial epoch is redone on resume
    resumed = fit("efficientnet_lite0", digits10, epochs=6, plan=plan, progress=False, resume=tmp_path / "resumed" / "run")
    assert len(resumed.history) == 6
    assert [h["val_loss"] for h in resumed.history] == pytest.approx([h["val_loss"] for h in full.history], rel=1e-5)
    assert resumed.best["test_acc"] == pytest.approx(full.best["test_acc"])


def test_resume_refuses_different_settings(digits10, tmp_path):
    _fit(digits10, tmp_path, epochs=1)
    with pytest.raises(ValueError, match=r"these differ: lr \(was 0.003, now 0.01\)"):
        fit("efficientnet_lite0", digits10, epochs=1, lr=0.01, progress=False, resume=tmp_path / "run")


def test_stop_mid_epoch_returns_and_keeps_a_checkpoint(digits10, tmp_path):
    stop = StopToken()
    seen = []

    def click_stop(event):
        seen.append(event)
        if isinstance(event, BatchEnd) and event.batch == 2:
            stop.stop("Stop button")

    run = _fit(digits10, tmp_path, plan=FreezePlan(trainable_from="stage6"), stop=stop, callbacks=[click_stop])
    assert run.stopped_early and run.stop_reason == "Stop button"
    assert sum(isinstance(e, BatchEnd) for e in seen) == 3  # took effect after the batch it was requested in
    assert any(isinstance(e, Stopped) for e in seen)
    assert run.history == [] and run.best["partial"]
    assert run.checkpoint.exists()
    assert run.stop_cause is StopCause.REQUESTED and seen[-2].cause is StopCause.REQUESTED  # Stopped, then FitEnd
    # fit measured the kept checkpoint on the test split itself (the panel used to do it after the fact)
    assert run.best["test_acc"] == pytest.approx(run.evaluate("test")["acc"])


def test_threading_event_works_as_stop_token(digits10, tmp_path):
    stop = threading.Event()
    stop.set()
    run = _fit(digits10, tmp_path, epochs=2, stop=stop)
    assert run.stopped_early and run.history == []


def test_keyboard_interrupt_ends_the_run_cleanly(digits10, tmp_path):
    def ctrl_c(event):
        if isinstance(event, BatchEnd) and event.epoch == 1 and event.batch == 1:
            raise KeyboardInterrupt

    run = _fit(digits10, tmp_path, epochs=4, callbacks=[ctrl_c])
    assert run.stopped_early and "KeyboardInterrupt" in run.stop_reason
    assert run.stop_cause is StopCause.INTERRUPTED
    assert len(run.history) == 1 and run.checkpoint.exists()
    assert run.best["epoch"] == 1 and run.best["test_acc"] == pytest.approx(run.evaluate("test")["acc"])


def test_non_finite_loss_stops_with_advice_and_keeps_best(digits10, tmp_path):
    run = _fit(digits10, tmp_path, epochs=5, lr=1e12, optimizer="sgd", schedule="constant",
               plan=FreezePlan(trainable_from="stage7"))
    assert run.stopped_early and run.stop_cause is StopCause.NON_FINITE_LOSS
    assert "the loss became" in run.stop_reason and "lower the learning rate" in run.stop_reason
    assert "epoch" in run.stop_reason and "batch" in run.stop_reason
    assert "(e.g. lr=0.003)" in run.stop_reason  # a tenth of 1e12 would diverge again: the default instead
    assert "nan" not in run.summary().split("stopped early")[0]  # no "test acc nan" line


@pytest.mark.slow
def test_lr_1e5_stops_with_a_sane_suggestion_and_no_nan_test_accuracy(digits10, tmp_path):
    # the head alone: epoch 1 still ends with finite (huge) losses, so it is kept and tested; then the loss overflows
    head = _fit(digits10, tmp_path / "head", epochs=4, lr=1e5)
    assert head.stop_cause is StopCause.NON_FINITE_LOSS and "(e.g. lr=0.003)" in head.stop_reason
    assert head.best["epoch"] == 1 and math.isfinite(head.best["test_acc"])
    assert head.best["test_acc"] == pytest.approx(head.evaluate("test")["acc"])
    # stage7 on: the weights are nan after epoch 1 (validation loss nan), so no epoch is kept and nothing is tested
    body = _fit(digits10, tmp_path / "body", epochs=4, lr=1e5, plan=FreezePlan(trainable_from="stage7"))
    assert body.stop_cause is StopCause.NON_FINITE_LOSS and math.isnan(body.history[0]["val_loss"])
    assert body.best == {} and body.checkpoint is None
    assert any("no weights were kept" in n for n in body.notes)
    for run in (head, body):
        assert "nan" not in run.summary().split("stopped early")[0]


def test_suggested_learning_rate():
    assert suggest_lr(0.3) == pytest.approx(0.03)
    assert suggest_lr(1.0) == pytest.approx(0.1)
    assert suggest_lr(1e5) == 3e-3 and suggest_lr(2.0) == 3e-3


def test_out_of_memory_retries_the_epoch_with_half_the_batch(digits10, tmp_path):
    bb = load_backbone("efficientnet_lite0", num_classes=10)
    original = bb.model.forward_range

    def small_batches_only(x, *, start=None, end=None):
        if torch.is_grad_enabled() and x.shape[0] > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(x, start=start, end=end)

    bb.model.forward_range = small_batches_only
    # conv_head trains, so every batch goes through forward_range (a head-only run trains on pooled features)
    run = fit(bb, digits10, plan=FreezePlan(trainable_from="conv_head"), epochs=2, batch_size=32, progress=False,
              run_dir=tmp_path)
    assert run.config["batch_size"] == 8
    assert any("retried it with batch size 16" in n for n in run.notes)
    assert any("retried it with batch size 8" in n for n in run.notes)
    assert len(run.history) == 2 and run.best["test_acc"] > 0.3


def test_bad_inputs_get_clear_errors(digits10, tmp_path):
    one_class = _subset(digits10, digits10.train.labels == 3)
    with pytest.raises(ValueError, match="only one class"):
        _fit(one_class, tmp_path)
    empty = _subset(digits10, digits10.train.labels < 0)
    with pytest.raises(ValueError, match="training split is empty"):
        _fit(empty, tmp_path)
    with pytest.raises(ValueError, match=r"unknown stage 'layer4' .* valid stages: stem"):
        _fit(digits10, tmp_path, plan=FreezePlan(trainable_from="layer4"))
    with pytest.raises(ValueError, match="head has 1000 outputs .* num_classes=10"):
        fit(load_backbone("efficientnet_lite0"), digits10, progress=False, run_dir=tmp_path)
    vit = load_backbone("vit_b_16", pretrained=False, num_classes=10)
    with pytest.raises(ValueError, match="image_size=224"):
        fit(vit, digits10, progress=False, run_dir=tmp_path)


def test_batch_size_larger_than_the_data_is_clamped_with_a_note(digits10, tmp_path):
    run = _fit(digits10, tmp_path, epochs=2, batch_size=1000)
    assert run.config["batch_size"] == len(digits10.train)
    assert "larger than the 100 training images" in run.notes[0]


def test_checkpoint_holds_trainable_weights_and_buffers_only(digits10, tmp_path):
    run = _fit(digits10, tmp_path, epochs=2, plan=FreezePlan(trainable_from="conv_head"))
    keys = set(load_file(run.checkpoint))
    model_keys = {k[len("model."):] for k in keys if k.startswith("model.")}
    assert "conv_head.0.weight" in model_keys and "head.classifier.1.weight" in model_keys
    assert "stage3.0._expand_conv.weight" not in model_keys  # frozen pretrained weight: not stored
    assert "stage3.0._bn0.running_mean" not in model_keys  # frozen BN statistics are the pretrained ones
    assert "conv_head.1.running_mean" in model_keys  # a trainable stage's statistics are stored
    # loading restores the same predictions in a fresh backbone
    fresh = load_backbone("efficientnet_lite0", num_classes=10, seed=123)
    state, info = load_checkpoint(run.checkpoint)
    apply_model_state(fresh.model, state)
    x = digits10.test.images[:8]
    with torch.no_grad():
        assert torch.allclose(fresh.model.eval()(fresh.normalize(x)), run.model.eval()(run.backbone.normalize(x)),
                              atol=1e-5)
    wrong = load_backbone("efficientnet_lite0", num_classes=5)
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch: .*head.classifier.1.weight \(10, 1280\) vs \(5, 1280\)"):
        apply_model_state(wrong.model, state)


def test_augmentation_turns_the_cache_off_and_says_why(digits10, tmp_path):
    run = _fit(digits10, tmp_path, epochs=1, augment=True, plan=FreezePlan(trainable_from="conv_head"))
    assert run.cache == "off: random augmentation changes the inputs every epoch"


@pytest.mark.slow
def test_default_fine_tune_on_digits_meets_the_bar(digits10, tmp_path):
    run = _fit(digits10, tmp_path, plan=FreezePlan.fine_tune())
    assert run.best["test_acc"] >= 0.88


@pytest.mark.slow
def test_batchnorm_in_train_mode_on_a_frozen_body_collapses(digits10, tmp_path):
    """The PyTorch tutorial's fixed-feature recipe with the model left in train mode vs BN kept frozen."""
    recipe = dict(optimizer="sgd", lr=1e-3, momentum=0.9, schedule="step", step_size=7, gamma=0.1, epochs=10,
                  batch_size=4, weight_decay=0.0, cache=False)
    frozen_bn = _fit(digits10, tmp_path / "frozen", plan=FreezePlan("head", bn="frozen"), **recipe)
    train_bn = _fit(digits10, tmp_path / "train", plan=FreezePlan("head", bn="train"), **recipe)
    assert frozen_bn.best["test_acc"] - train_bn.best["test_acc"] >= 0.15


def _subset(data: DatasetSplits, mask: torch.Tensor) -> DatasetSplits:
    from dataclasses import replace

    return replace(data, train=data.train.subset(torch.nonzero(mask).flatten()))


def test_without_a_run_folder_the_model_still_ends_with_its_best_weights():
    # A noisy recipe whose last epoch is not its best; runs without files must still restore the best epoch.
    data = load_dataset("digits", shots=5, image_size=32)
    run = fit("efficientnet_lite0", data, plan=FreezePlan(trainable_from="stage7"), epochs=15, lr=0.3,
              schedule="constant", save_checkpoints=False, progress=False)
    assert run.checkpoint is None
    assert run.evaluate("val")["acc"] == pytest.approx(run.best["val_acc"])


def test_checkpoint_keys_looked_up_once_match_a_full_lookup():
    # fit computes the checkpoint's names once per run and passes them on; the result must equal a fresh lookup
    import torch

    from tl_lab.backbones.registry import load_backbone
    from tl_lab.training.checkpoints import model_state_to_save, state_keys
    from tl_lab.training.freeze import FreezePlan

    bb = load_backbone("efficientnet_lite0", num_classes=3)
    FreezePlan(trainable_from="stage7").apply(bb, lr=1e-3)
    prefixes = ("stage7.", "conv_head.", "head.")
    keys = state_keys(bb.model, full=False, buffer_prefixes=prefixes)
    assert keys and all(k.startswith(prefixes) for k in keys)
    assert "head.classifier.1.weight" in keys and not any(k.startswith("stem.") for k in keys)
    fresh = model_state_to_save(bb.model, full=False, buffer_prefixes=prefixes)
    given = model_state_to_save(bb.model, full=False, buffer_prefixes=prefixes, keys=keys)
    assert list(fresh) == list(given) and all(torch.equal(fresh[k], given[k]) for k in fresh)
    full = state_keys(bb.model, full=True)
    assert set(full) == set(bb.model.state_dict())


def test_switching_only_running_stages_keeps_locked_modules_in_eval():
    from tl_lab.backbones.registry import load_backbone
    from tl_lab.training.freeze import FreezePlan

    bb = load_backbone("efficientnet_lite0", num_classes=3)
    FreezePlan(trainable_from="stage7", bn="eval").apply(bb, lr=1e-3)
    model = bb.model
    model.train(True)
    locked = [m for m in model.stage7.modules() if not m.training]
    assert locked, "bn='eval' locks the trainable stages' BatchNorm layers"
    model.train(False, stages=("stage7", "conv_head", "head"))
    assert not model.head.training and not model.stage7.training
    assert model.training  # the model itself and stages not listed are left as they were
    assert not model.stem.training  # (frozen stages are locked in eval mode anyway)
    model.train(True, stages=("stage7", "conv_head", "head"))
    assert model.head.training and model.stage7.training
    assert all(not m.training for m in locked)  # the locks survive a partial switch


def test_batch_learning_rates_follow_the_one_cycle_formula(digits10, tmp_path):
    # 3 epochs x 4 batches: BatchEnd.lr is the head's rate each batch trained with, per OneCycleLR's definition
    events = []
    run = _fit(digits10, tmp_path, epochs=3, batch_size=25, lr=0.01, callbacks=[events.append])
    rates = [e.lr for e in events if isinstance(e, BatchEnd)]
    total, w = 12, 0.25 * 12 - 1
    expected = [0.01 / 25 + (0.01 - 0.01 / 25) * (1 - math.cos(math.pi * k / w)) / 2 if k <= w else
                1e-6 + (0.01 - 1e-6) * (1 + math.cos(math.pi * (k - w) / (total - 1 - w))) / 2 for k in range(total)]
    assert rates == pytest.approx(expected, rel=1e-9)
    assert [h["lr"]["head"] for h in run.history] == pytest.approx([expected[3], expected[7], expected[11]])


def test_fit_names_the_one_wrong_argument_before_loading_anything(digits10, tmp_path):
    with pytest.raises(ValueError, match=r"^epochs must be an int >= 1, or None for automatic .*; got -1$"):
        _fit(digits10, tmp_path, epochs=-1)
    with pytest.raises(ValueError, match=r"^batch_size must be an int >= 1 \(the default is 16\); got 0$"):
        _fit(digits10, tmp_path, batch_size=0)
    with pytest.raises(ValueError, match=r"^cache must be True, False or 'auto'; got 'yes'$"):
        _fit(digits10, tmp_path, cache="yes")
    assert not (tmp_path / "run").exists()


def test_predict_prepares_pil_images_as_the_run_trained(digits10, tmp_path):
    from PIL import Image

    from tl_lab.data.imagefiles import fit_square

    run = _fit(digits10, tmp_path, epochs=3)
    images = digits10.test.images[:60]
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    from_tensor, from_pil = run.predict(images), run.predict(pil)
    assert from_tensor.shape == (60, 10) and torch.allclose(from_pil, from_tensor, atol=1e-6)
    all_pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in digits10.test.images]
    acc = (run.predict(all_pil).argmax(1) == digits10.test.labels).float().mean().item()
    assert acc == pytest.approx(run.best["test_acc"])  # the same test accuracy as fit measured
    # a larger photo is resized to the run's 64 px as the folder loader would, not to the backbone's 224 crop
    big = pil[0].resize((150, 120))
    expected = run.predict(torch.from_numpy(fit_square(big, 64)).permute(2, 0, 1))
    assert torch.allclose(run.predict(big), expected, atol=1e-6)  # one PIL image works too


@pytest.mark.slow
def test_resume_with_augmentation_gives_the_uninterrupted_history(tmp_path):
    data = load_dataset("digits", shots=5, seed=0, image_size=32)
    kw = dict(plan=FreezePlan(trainable_from="conv_head"), epochs=4, augment=True, progress=False)
    full = fit("efficientnet_lite0", data, run_dir=tmp_path / "full", **kw)
    stop = StopToken()

    def stop_after_second_epoch(event):
        if isinstance(event, EpochEnd) and event.epoch == 1:
            stop.stop("test stop")

    fit("efficientnet_lite0", data, run_dir=tmp_path / "part", stop=stop, callbacks=[stop_after_second_epoch], **kw)
    resumed = fit("efficientnet_lite0", data, resume=tmp_path / "part", **kw)
    assert len(resumed.history) == 4
    for key in ("train_loss", "val_loss", "train_acc", "val_acc"):
        assert [h[key] for h in resumed.history] == pytest.approx([h[key] for h in full.history], rel=1e-5), key
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in full.history]  # the schedule continued exactly
    assert resumed.best["test_acc"] == pytest.approx(full.best["test_acc"])


def test_an_out_of_memory_retry_restarts_the_epoch_from_its_starting_weights(digits10, tmp_path):
    """An OutOfMemoryError in the second batch of epoch 2 (after one step moved the weights): the retry starts from
    the weights epoch 1 ended with, at half the batch size, with a note. On a CPU too (a patched step raises it)."""
    bb = load_backbone("efficientnet_lite0", num_classes=10)
    original = bb.model.forward_range
    weight = bb.model.get_submodule("head").classifier[-1].weight
    seen = {"calls": 0}
    ended: list[torch.Tensor] = []
    retried: list[torch.Tensor] = []

    def oom_once(x, *, start=None, end=None):
        if torch.is_grad_enabled():
            seen["calls"] += 1
            if seen["calls"] == 4 + 2:  # epoch 2 (4 batches of 25 per epoch), batch 2
                raise torch.OutOfMemoryError("out of memory (simulated)")
            if seen["calls"] == 4 + 3:  # the retried epoch's first batch
                retried.append(weight.detach().clone())
        return original(x, start=start, end=end)

    bb.model.forward_range = oom_once

    def at_epoch_end(event):
        if isinstance(event, EpochEnd) and event.epoch == 0:
            ended.append(weight.detach().clone())

    run = fit(bb, digits10, plan=FreezePlan(trainable_from="conv_head"), epochs=2, batch_size=25, progress=False,
              run_dir=tmp_path, callbacks=[at_epoch_end], device="cpu")
    assert torch.equal(retried[0], ended[0])  # not the weights after the failed epoch's first step
    assert run.config["batch_size"] == 12
    assert run.notes.count("CPU ran out of memory in epoch 2; retried it with batch size 12") == 1
    assert len(run.history) == 2


@pytest.mark.slow
def test_a_full_disk_keeps_training_and_keeps_the_best_weights_in_memory(digits10, tmp_path, monkeypatch):
    """From epoch 2 every checkpoint write fails as on a full disk: the run ends normally, its model holds the best
    weights (those of the same run with a writable folder) and a note names the folder and one checkpoint's size."""
    import errno

    from safetensors import SafetensorError

    import tl_lab.training.checkpoints as checkpoints
    import tl_lab.training.run as run_module

    kw = dict(plan=FreezePlan("conv_head"), epochs=4, batch_size=25, lr=0.05)
    ok = _fit(digits10, tmp_path / "ok", run_dir=tmp_path / "ok", **kw)
    stored = sum(t.numel() * t.element_size() for t in load_checkpoint(ok.checkpoint)[0].values())
    writes = {"n": 0}
    save = checkpoints.save_file

    def disk_fills_up(tensors, filename, metadata=None):
        writes["n"] += 1
        if writes["n"] > 2:  # epoch 1's best and last went through
            open(filename, "wb").write(b"partial")
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return save(tensors, filename, metadata=metadata)

    def no_room(info):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints, "save_file", disk_fills_up)
    full = _fit(digits10, tmp_path, run_dir=tmp_path / "full", **kw)
    assert len(full.history) == 4 and not full.stopped_early
    assert [h["val_acc"] for h in full.history] == [h["val_acc"] for h in ok.history]
    assert full.best["epoch"] == ok.best["epoch"] > 1 and full.best["test_acc"] == ok.best["test_acc"]
    for name, p in full.model.state_dict().items():
        assert torch.equal(p, ok.model.state_dict()[name]), name
    note = next(n for n in full.notes if n.startswith("checkpoints could not be written"))
    assert str(tmp_path / "full") in note and "the disk holding it is full" in note
    assert f"one checkpoint needs about {stored / 1e6:.1f} MB" in note
    assert full.checkpoint is None and not (tmp_path / "full" / "best.tmp").exists()
    # run.json on the full disk as well: an OSError(ENOSPC); the run still returns with a note
    monkeypatch.setattr(run_module, "_dumps_run", no_room)
    writes["n"] = 0
    again = _fit(digits10, tmp_path, run_dir=tmp_path / "again", **kw)
    assert again.best["test_acc"] == ok.best["test_acc"]
    assert any(n.startswith(f"run.json could not be written to {tmp_path / 'again'} (No space left on device)")
               for n in again.notes)


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path):
    """Two runs with the same backbone and plan started within one second (two widgets, two processes) used to share
    one folder and overwrite each other's checkpoints."""
    from tl_lab.training.run import _fresh_folder

    made = [_fresh_folder(tmp_path / "tl_lab_runs", "20261207-120000-lite0-head") for _ in range(3)]
    assert [name for name, _ in made] == ["20261207-120000-lite0-head", "20261207-120000-lite0-head-2",
                                          "20261207-120000-lite0-head-3"]
    assert all(folder.is_dir() and folder.name == name for name, folder in made)
