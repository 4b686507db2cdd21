"""Old-task (ImageNet) agreement of one trained body: against a direct computation, exact where nothing changed."""

from __future__ import annotations

import math

import pytest
import torch

from tl_lab.backbones.registry import load_backbone
from tl_lab.data.datasets import load_dataset
from tl_lab.inside.old_task import (
    PHOTOS,
    TEST,
    old_task_agreement,
    old_task_unavailable,
    photo_images,
    reattach_head,
)


@pytest.fixture(scope="module")
def images():
    return load_dataset("digits", shots=2, image_size=32).test.images[:48]


def _moved(seed: int = 0, scale: float = 0.05):
    """A 10-class Lite0 whose stage6 and stage7 weights moved by seeded noise (as fine-tuning would move them)."""
    bb = load_backbone(num_classes=10)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in bb.model.named_parameters():
            if name.startswith(("stage6.", "stage7.")):
                p.add_(scale * p.abs().mean() * torch.randn(p.shape, generator=g))
    return bb


@torch.no_grad()
def _direct(trained, reference, x: torch.Tensor) -> dict:
    """The definition, by another route: the trained network's own forward up to its head's classifier (read with a
    hook), then the ORIGINAL ImageNet classifier on those features; no reattached copy."""
    feats = []
    classifier = trained.model.get_submodule(trained.head).classifier
    handle = classifier.register_forward_pre_hook(lambda m, args: feats.append(args[0]))
    trained.model.eval()
    reference.model.eval()  # the classifier's dropout off
    try:
        trained.model(reference.normalize(x))
    finally:
        handle.remove()
    imagenet = reference.model.get_submodule(reference.head).classifier
    p1 = imagenet(feats[0]).double().softmax(1)
    p0 = reference.model(reference.normalize(x)).double().softmax(1)
    top = p0.argmax(1)
    return {"top1_agreement": (p1.argmax(1) == top).double().mean().item(),
            "kl_mean": (p0 * (p0.log() - p1.log())).sum(1).mean().item(),
            "p_top_before": p0[torch.arange(len(x)), top].mean().item(),
            "p_top_after": p1[torch.arange(len(x)), top].mean().item()}


def test_agreement_is_the_original_head_on_the_trained_body(lite0, images):
    trained = _moved()
    kept = old_task_agreement(trained, {"digits": images}, reference=lite0)["digits"]
    direct = _direct(trained, lite0, images)
    assert kept["n_images"] == 48
    assert 0.0 < kept["top1_agreement"] < 1.0  # the noise moved some predictions, not all: the test can fail
    assert kept["top1_agreement"] == direct["top1_agreement"]
    for key in ("kl_mean", "p_top_before", "p_top_after"):
        assert kept[key] == pytest.approx(direct[key], rel=1e-4, abs=1e-6), key
    num = den = 0.0  # ||w - w0|| / ||w0|| over the body's parameters, by hand
    w = dict(trained.model.named_parameters())
    for name, w0 in lite0.model.named_parameters():
        if not name.startswith(lite0.head + "."):
            num += (w[name] - w0).double().pow(2).sum().item()
            den += w0.double().pow(2).sum().item()
    assert kept["body_change"] == pytest.approx(math.sqrt(num / den), rel=1e-9) and kept["body_change"] > 0


def test_an_unchanged_body_agrees_exactly_and_the_sample_photos_are_the_default(lite0):
    kept = old_task_agreement(load_backbone(num_classes=10), reference=lite0)  # a new head, the body untouched
    assert list(kept) == [PHOTOS]
    assert kept[PHOTOS]["n_images"] == 4 and tuple(photo_images(lite0).shape) == (4, 3, 224, 224)
    assert kept[PHOTOS]["top1_agreement"] == 1.0 and kept[PHOTOS]["kl_mean"] == 0.0
    assert kept[PHOTOS]["body_change"] == 0.0 and kept[PHOTOS]["p_top_after"] == kept[PHOTOS]["p_top_before"]
    # the photos are ImageNet's evaluation crop of the backbone's own transform
    x = photo_images(lite0)
    assert x.dtype == torch.uint8
    from tl_lab.backbones.samples import sample_photos

    torch.testing.assert_close(lite0.normalize(x[:1]), lite0.transform(sample_photos()[0].image())[None],
                               atol=1e-6, rtol=0)


def test_the_original_networks_probabilities_are_computed_once(images):
    reference = load_backbone()
    calls = []
    reference.model.register_forward_hook(lambda m, args, out: calls.append(m is reference.model))
    first = old_task_agreement(_moved(seed=1), {"digits": images}, reference=reference)
    before = sum(calls)
    second = old_task_agreement(_moved(seed=2), {"digits": images}, reference=reference)
    assert before == 1 and sum(calls) == before  # the original network ran once, for the first run only
    assert first["digits"]["p_top_before"] == second["digits"]["p_top_before"]
    assert first["digits"]["top1_agreement"] != second["digits"]["top1_agreement"] or \
        first["digits"]["kl_mean"] != second["digits"]["kl_mean"]  # each run's own forward pass


def test_a_run_is_measured_on_the_photos_and_its_test_images(lite0):
    import tl_lab

    data = load_dataset("digits", shots=2, image_size=32)
    run = tl_lab.fit("efficientnet_lite0", data, epochs=1, progress=False, save_checkpoints=False)  # frozen head
    kept = old_task_agreement(run, reference=lite0)
    assert list(kept) == [PHOTOS, TEST] and kept[TEST]["n_images"] == len(data.test)
    assert kept[PHOTOS]["top1_agreement"] == kept[TEST]["top1_agreement"] == 1.0  # the body did not train


def test_lora_factors_are_merged_into_the_body_before_the_original_head_reads_it(lite0, images):
    pytest.importorskip("peft")
    from tl_lab.training.peft_params import add_lora

    trained = load_backbone(num_classes=10)
    add_lora(trained.model, ["stage7"], rank=2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in trained.model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    kept = old_task_agreement(trained, {"digits": images}, reference=lite0)["digits"]
    direct = _direct(trained, lite0, images)  # the unmerged LoRA network's own forward
    assert kept["top1_agreement"] == direct["top1_agreement"] < 1.0
    assert kept["kl_mean"] == pytest.approx(direct["kl_mean"], rel=1e-3)
    assert any("lora_" in n for n, _ in trained.model.named_parameters())  # the run's own model is untouched
    plain = reattach_head(trained, lite0)
    assert not any("lora_" in n for n, _ in plain.model.named_parameters())


def test_no_old_task_without_pretrained_weights_and_a_clear_error(lite0):
    scratch = load_backbone(pretrained=False, num_classes=10)
    assert "never learnt ImageNet" in old_task_unavailable(scratch)
    assert old_task_unavailable(load_backbone(num_classes=10)) is None
    with pytest.raises(ValueError, match="no old task to measure: this network was trained from scratch"):
        old_task_agreement(scratch, reference=lite0)
    with pytest.raises(ValueError, match="the reference must be the original pretrained efficientnet_lite0"):
        old_task_agreement(load_backbone(num_classes=10), reference=load_backbone(num_classes=5))


def test_reattach_head_stays_importable_from_the_forgetting_experiment():
    from tl_lab.experiments.forgetting import reattach_head as from_the_experiment

    assert from_the_experiment is reattach_head
