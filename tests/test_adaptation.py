"""Adapting without target labels: AdaBN, the gradient reversal layer and DANN in fit, LP-FT, the new shifts.

Each method is checked against a direct computation on small data: BatchNorm statistics against the mean and
variance of the layer's input computed by hand, the reversed gradient against autograd without the layer, the
domain loss against binary cross-entropy written out, the sketch shift against a hand-worked step edge.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tl_lab.backbones.registry import load_backbone
from tl_lab.data.datasets import ImageSplit, load_dataset
from tl_lab.data.shifts import SHIFTS, shift_images, unlabelled_target
from tl_lab.training.adapt_bn import adapt_bn, batchnorm_layers
from tl_lab.training.domain_confusion import DomainClassifier, dann_lambda, domain_loss, grad_reverse


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@pytest.fixture(scope="module")
def lite0_10():
    return load_backbone("efficientnet_lite0", num_classes=10)


def _images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ---- AdaBN -------------------------------------------------------------------------------------------------------


def _first_bn_input(bb, images: torch.Tensor) -> torch.Tensor:
    """The input of the first BatchNorm layer, computed directly: the stem convolution of the normalised images."""
    convs = [m for m in bb.model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        return convs[0](bb.normalize(images))


def test_adabn_statistics_are_those_of_the_given_images(lite0_10):
    images = _images(12)
    before = {k: v.clone() for k, v in lite0_10.model.state_dict().items()}
    adapted = adapt_bn(lite0_10, images, batch_size=12)  # one batch: exact mean and unbiased variance
    first = batchnorm_layers(adapted.model)[0]
    act = _first_bn_input(lite0_10, images)  # (N, C, H, W)
    torch.testing.assert_close(first.running_mean, act.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(first.running_var, act.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(first.running_mean, batchnorm_layers(lite0_10.model)[0].running_mean)
    # every BatchNorm layer moved; every weight is bit-identical; the original is untouched
    for old, new in zip(batchnorm_layers(lite0_10.model), batchnorm_layers(adapted.model)):
        assert not torch.equal(old.running_mean, new.running_mean)
        assert new.momentum == old.momentum and new.training == old.training
    state = adapted.model.state_dict()
    stats = ("running_mean", "running_var", "num_batches_tracked")
    for key, value in before.items():
        assert torch.equal(lite0_10.model.state_dict()[key], value), key
        if not key.endswith(stats):
            assert torch.equal(state[key], value), key
    assert adapted.meta["adabn"]["images"] == 12 and adapted.model is not lite0_10.model


def test_adabn_averages_batches_and_reads_images_of_a_split(lite0_10):
    images = _images(8, seed=1)
    split = ImageSplit(images, torch.zeros(8, dtype=torch.int64), ("a",))
    two = adapt_bn(lite0_10, split, batch_size=4)  # two equal batches: the mean of batch means is the mean
    first = batchnorm_layers(two.model)[0]
    act = _first_bn_input(lite0_10, images)
    torch.testing.assert_close(first.running_mean, act.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    halves = [a.var(dim=(0, 2, 3), unbiased=True) for a in act.split(4)]
    torch.testing.assert_close(first.running_var, (halves[0] + halves[1]) / 2, rtol=1e-4, atol=1e-5)
    assert int(first.num_batches_tracked) == 2
    only = adapt_bn(lite0_10, images, stages=("stage7",))  # only the named stage's statistics change
    for stage in lite0_10.stages:
        old = batchnorm_layers(lite0_10.model.get_submodule(stage))
        new = batchnorm_layers(only.model.get_submodule(stage))
        same = all(torch.equal(a.running_mean, b.running_mean) for a, b in zip(old, new))
        assert same == (stage != "stage7"), stage


def test_adabn_refuses_bad_input(lite0_10):
    with pytest.raises(ValueError, match="need at least 2 unlabelled target images to estimate statistics; got 0"):
        adapt_bn(lite0_10, torch.zeros(0, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8 tensor"):
        adapt_bn(lite0_10, torch.zeros(4, 3, 32, 32))
    with pytest.raises(ValueError, match=r"are 32x32 px but the model was trained at 64x64; load them with image_size=64"):
        adapt_bn(lite0_10, _images(4), image_size=64)
    with pytest.raises(ValueError, match="unknown stages"):
        adapt_bn(lite0_10, _images(4), stages=("layer9",))
    convnext = load_backbone("convnext_tiny", pretrained=False, num_classes=10)  # LayerNorm only
    with pytest.raises(ValueError, match="convnext_tiny has no BatchNorm layers, so there are no statistics to adapt"):
        adapt_bn(convnext, _images(4, size=64))


# ---- the gradient reversal layer and the DANN pieces ---------------------------------------------------------------


def test_gradient_reversal_flips_and_scales_the_gradient_into_the_body():
    torch.manual_seed(0)
    body, head = nn.Linear(4, 3), nn.Linear(3, 1)
    x = torch.randn(5, 4)

    def grads(reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        body.zero_grad(), head.zero_grad()
        f = body(x)
        out = head(grad_reverse(f, 0.3) if reverse else f).sum()
        out.backward()
        return body.weight.grad.clone(), head.weight.grad.clone()

    body_plain, head_plain = grads(False)
    body_rev, head_rev = grads(True)
    torch.testing.assert_close(body_rev, -0.3 * body_plain)  # the body gets -lambda times the gradient
    torch.testing.assert_close(head_rev, head_plain)  # the domain classifier learns as usual
    f = torch.randn(2, 3)
    assert torch.equal(grad_reverse(f, 0.7), f)  # identity forward


def test_dann_lambda_follows_the_papers_schedule():
    for p in (0.0, 0.1, 0.25, 0.5, 1.0):
        assert dann_lambda(p) == pytest.approx(2 / (1 + math.exp(-10 * p)) - 1)
    assert dann_lambda(0.0) == 0.0 and dann_lambda(1.0) == pytest.approx(0.999909, abs=1e-6)
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\]"):
        dann_lambda(1.5)


def test_domain_loss_is_binary_cross_entropy_over_both_domains():
    torch.manual_seed(0)
    clf = DomainClassifier(4, hidden=8)
    src, tgt = torch.randn(5, 4), torch.randn(3, 4) + 2
    loss, correct, count = domain_loss(clf, src, tgt, 0.5)
    logits = clf(torch.cat([src, tgt]))
    labels = torch.tensor([0.0] * 5 + [1.0] * 3)
    expected = -(labels * F.logsigmoid(logits) + (1 - labels) * F.logsigmoid(-logits)).mean()
    torch.testing.assert_close(loss, expected)
    assert count == 8 and correct == int(((logits > 0).float() == labels).sum())
    with pytest.raises(ValueError, match="same C"):
        domain_loss(clf, src, torch.randn(3, 5), 0.5)


# ---- the new shifts ----------------------------------------------------------------------------------------------


def test_blended_is_the_absolute_difference_with_a_photo_crop():
    black = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    white = torch.full_like(black, 255)
    a, b = shift_images(black, "blended", seed=4), shift_images(white, "blended", seed=4)
    total = a.int() + b.int()  # |p - 0| + |p - 255| = 255, up to rounding each to an integer
    assert (total - 255).abs().max() <= 1 and (total == 255).float().mean() > 0.95
    assert a.float().std() > 10  # a natural photo crop, not a flat colour
    assert torch.equal(a, shift_images(black, "blended", seed=4))
    assert not torch.equal(a, shift_images(black, "blended", seed=5))


def test_sketch_draws_dark_edges_on_white():
    step = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    step[..., 4:] = 255  # black left half, white right half
    sketch = shift_images(step, "sketch")
    # Sobel x / 4 across the step is 255 in columns 3 and 4; twice that clamps to a black line; elsewhere white
    expected = torch.full((8, 8), 255, dtype=torch.uint8)
    expected[:, 3:5] = 0
    for c in range(3):
        assert torch.equal(sketch[0, c], expected)
    flat = torch.full((2, 3, 8, 8), 77, dtype=torch.uint8)
    assert torch.equal(shift_images(flat, "sketch"), torch.full_like(flat, 255))
    assert {"blended", "sketch"} <= set(SHIFTS)


def test_unlabelled_target_images_come_from_outside_every_split():
    data = load_dataset("digits", shots=2, image_size=32)
    pool = unlabelled_target(data, "inverted", n=50, seed=1)
    assert len(pool) == 50 and pool.images.shape[1:] == (3, 32, 32)
    used = set(torch.cat([data.train.ids, data.val.ids, data.test.ids]).tolist())
    assert not used & set(pool.ids.tolist())
    again = unlabelled_target(data, "inverted", n=50, seed=1)
    assert torch.equal(pool.images, again.images)
    # the images are the shifted pool images: inverting them back gives the clean digits
    full = load_dataset("digits", shots=None, image_size=32)
    where = {int(i): k for k, i in enumerate(full.train.ids)}
    clean = full.train.images[[where[int(i)] for i in pool.ids]]
    assert torch.equal(255 - pool.images, clean)
    with pytest.raises(ValueError, match="n must be >= 1"):
        unlabelled_target(data, "inverted", n=0)


# ---- DANN through fit ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fit_with_adapt_to_records_the_domain_classifier_and_cleans_up(monkeypatch):
    import tl_lab.training.domain_confusion as confusion_module
    from tl_lab.training.events import EpochEnd
    from tl_lab.training.freeze import FreezePlan
    from tl_lab.training.loop import fit

    # the reference for domain_acc: the domain classifier's hits recomputed on every batch it saw, counted by hand
    # (source images are domain 0: right when the logit is <= 0; target images domain 1: right when > 0)
    real_domain_loss, batches, epochs_seen = confusion_module.domain_loss, [], []

    def recount(classifier, source, target, lambd):
        with torch.no_grad():
            logits = classifier(torch.cat([source, target]).float())
        hits = int((logits[: len(source)] <= 0).sum()) + int((logits[len(source):] > 0).sum())
        batches.append((hits, len(source) + len(target)))
        return real_domain_loss(classifier, source, target, lambd)

    def per_epoch(event):
        if isinstance(event, EpochEnd):
            epochs_seen.append(list(batches))
            batches.clear()

    monkeypatch.setattr(confusion_module, "domain_loss", recount)
    data = load_dataset("digits", shots=2, image_size=32, val_per_class=1)
    target = unlabelled_target(data, "inverted", n=24)
    bb = load_backbone("efficientnet_lite0", num_classes=10)
    run = fit(bb, data, plan=FreezePlan.fine_tune(), epochs=2, batch_size=10, adapt_to=target, progress=False,
              save_checkpoints=False, callbacks=[per_epoch])
    assert [set(h) >= {"domain_acc", "domain_loss", "dann_lambda"} for h in run.history] == [True, True]
    # lambda at the last batch of each epoch: progress (epoch + batch / batches) / epochs with 2 batches per epoch
    assert run.history[0]["dann_lambda"] == pytest.approx(dann_lambda(0.25))
    assert run.history[1]["dann_lambda"] == pytest.approx(dann_lambda(0.75))
    # 20 training images in 2 batches of 10, each beside 10 target images: 40 domain decisions per epoch
    assert [[count for _, count in epoch] for epoch in epochs_seen] == [[20, 20], [20, 20]]
    expected = [sum(hits for hits, _ in epoch) / 40 for epoch in epochs_seen]
    assert [h["domain_acc"] for h in run.history] == expected
    assert run.config["adapt_to"] == {"images": 24, "stage": bb.body_stages[-1]}
    assert run.cache.startswith("off") and "domain_classifier" in run.history[0]["lr"]
    assert not bb.model.get_submodule(bb.body_stages[-1])._forward_hooks  # the feature hook is gone
    with pytest.raises(ValueError, match="but the plan freezes it"):
        fit(bb, data, plan=FreezePlan("head"), epochs=1, adapt_to=target, progress=False, save_checkpoints=False)
    assert not bb.model.get_submodule(bb.body_stages[-1])._forward_hooks
    with pytest.raises(ValueError, match="the target images are 64 px but the training images are 32 px"):
        fit(bb, data, plan=FreezePlan.fine_tune(), epochs=1, adapt_to=_images(4, size=64), progress=False,
            save_checkpoints=False)


# ---- LP-FT ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_lp_ft_first_trains_only_the_head_then_everything(monkeypatch):
    import tl_lab.training.lp_ft as lp_ft_module

    data = load_dataset("digits", shots=2, image_size=32, val_per_class=1)
    bb = load_backbone("efficientnet_lite0", num_classes=10)
    start = {k: v.clone() for k, v in bb.model.state_dict().items()}
    after_probe = {}
    real_fit = lp_ft_module.fit

    def spy(backbone, data, **kwargs):  # the state between the phases
        if after_probe == {} and kwargs["name"].endswith("fine_tune"):
            after_probe.update({k: v.clone() for k, v in backbone.model.state_dict().items()})
        return real_fit(backbone, data, **kwargs)

    monkeypatch.setattr(lp_ft_module, "fit", spy)
    result = lp_ft_module.lp_ft(bb, data, epochs=(3, 1))
    body = [k for k in start if not k.startswith(bb.head + ".")]
    head = [k for k in start if k.startswith(bb.head + ".")]
    assert all(torch.equal(after_probe[k], start[k]) for k in body)  # phase 1: body bit-identical
    assert any(not torch.equal(after_probe[k], start[k]) for k in head)  # ... and the head trained
    final = bb.model.state_dict()
    assert any(not torch.equal(final[k], after_probe[k]) for k in body if "running" not in k)  # phase 2: body moves
    assert result.probe.config["plan"]["trainable_from"] == "head"
    assert result.fine_tune.config["plan"]["trainable_from"] is None and len(result.fine_tune.history) == 1
    assert result.best is result.fine_tune.best
    with pytest.raises(ValueError, match=r"epochs must be \(probe_epochs, fine_tune_epochs\)"):
        lp_ft_module.lp_ft(bb, data, epochs=(3,))


# ---- figures -------------------------------------------------------------------------------------------------------


def test_adaptation_figures_draw_the_records_they_are_given():
    from tl_lab.plots.adaptation import adaptation_bars, domain_accuracy_curves, domain_embedding

    recs = [{"strategy": "fine_tune", "shift": s, "training": t, "test_acc": a, "unlabelled_images": n}
            for s, t, a, n in [("none", "clean", 0.9, 0), ("inverted", "clean", 0.4, 0), ("inverted", "dann", 0.5, 200),
                               ("noisy", "clean", 0.2, 0), ("noisy", "dann", 0.3, 200), ("noisy", "dann", 0.4, 200)]]
    fig = adaptation_bars(recs)
    assert [t.name for t in fig.data] == ["source only (fine-tune)", "domain confusion (DANN)"]
    assert list(fig.data[0].x) == ["inverted", "noisy"] and list(fig.data[1].y) == [0.5, pytest.approx(0.35)]
    assert list(fig.data[1].customdata) == ["200 unlabelled target images"] * 2
    with pytest.raises(ValueError, match="unknown methods \\['DANN'\\]"):
        adaptation_bars(recs, methods=["DANN"])
    with pytest.raises(ValueError, match="no records match these methods"):
        adaptation_bars(recs, methods=["LP-FT (source only)"])
    curves = domain_accuracy_curves({"inverted": [0.9, 0.7, 0.5]})
    assert list(curves.data[0].y) == [0.9, 0.7, 0.5] and list(curves.data[0].x) == [1, 2, 3]
    xy = torch.arange(8, dtype=torch.float32).reshape(4, 2).numpy()
    emb = domain_embedding({"before": xy, "after": xy}, ["source", "source", "target", "target"])
    assert [(t.name, len(t.x)) for t in emb.data] == [("source", 2), ("target", 2)] * 2
    with pytest.raises(ValueError, match="expected \\(3, 2\\) to match domains"):
        domain_embedding({"before": xy}, [0, 1, 1])


def test_domain_separability_is_one_when_apart_and_chance_when_the_same():
    from tl_lab.training.domain_confusion import domain_separability

    g = torch.Generator().manual_seed(0)
    a = torch.randn(60, 4, generator=g)
    assert domain_separability(a, a + 10) == 1.0  # far apart along every feature
    same = domain_separability(a[:30], a[30:])  # two halves of one distribution
    assert 0.2 < same < 0.75
    with pytest.raises(ValueError, match="at least 5 images per domain"):
        domain_separability(a[:3], a[:10])


@pytest.mark.slow
def test_source_statistics_re_estimates_batchnorm_on_the_source_images():
    from tl_lab.experiments.domain_shift import FINE_TUNE_BN, source_statistics
    from tl_lab.training.recipes import train_run

    data = load_dataset("digits", shots=2, image_size=32, val_per_class=1)
    run = train_run("efficientnet_lite0", data, FINE_TUNE_BN, epochs=1, seed=0, run_dir=None, name="bn")
    weights = {k: v.clone() for k, v in run.model.state_dict().items() if "running" not in k and "num_batches" not in k}
    expected = adapt_bn(run, torch.cat([data.train.images, data.val.images]))
    assert source_statistics(run) is run
    for old, new in zip(batchnorm_layers(expected.model), batchnorm_layers(run.model)):
        assert torch.equal(old.running_mean, new.running_mean) and torch.equal(old.running_var, new.running_var)
    assert all(torch.equal(run.model.state_dict()[k], v) for k, v in weights.items())
    assert run.best["test_acc"] == run.evaluate("test")["acc"]
    assert "re-estimated on the 30 source training + validation images" in run.notes[-1]
