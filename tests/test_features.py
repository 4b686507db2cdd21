"""Feature analyses: taps against documented shapes, filters against the weights, cached pooled features, linear
probes against the measured depth curves (digits peaks mid-network, clipart rises to the top), cuts that ``fit``
can train, and 2-D embeddings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tl_lab.backbones.cut import cut_at
from tl_lab.backbones.registry import load_backbone
from tl_lab.backbones.staged import ClassifierHead, StagedModel
from tl_lab.data.datasets import load_dataset
from tl_lab.inside.embedding import embed
from tl_lab.inside.feature_maps import FeatureMaps, feature_maps, filters
from tl_lab.inside.probes import C_GRID, fit_probe, probe_stages
from tl_lab.inside.stage_features import clear_feature_cache, stage_features
from tl_lab.inside.taps import tap
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit

LITE0_64 = {  # documented Lite0 stage outputs for 64 px inputs (C, H, W)
    "stem": (32, 32, 32), "stage1": (16, 32, 32), "stage2": (24, 16, 16), "stage3": (40, 8, 8),
    "stage4": (80, 4, 4), "stage5": (112, 4, 4), "stage6": (192, 2, 2), "stage7": (320, 2, 2),
    "conv_head": (1280, 2, 2),
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", shots=10)


@pytest.fixture(scope="module")
def vit():
    return load_backbone("vit_b_16", pretrained=False)


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


# ---- tap -------------------------------------------------------------------------------------------------------


def test_tap_records_documented_shapes_and_cleans_up(lite0):
    model = lite0.model
    model.train()
    model.stem.training = False  # a module that was in eval mode on its own must stay so
    before = _hook_count(model)
    with tap(model, ["stage1", "stage3", "conv_head"]) as acts:
        assert not model.training and not model.stage3.training  # eval mode inside the block
        model(torch.zeros(2, 3, 64, 64))
    tapped = ("stage1", "stage3", "conv_head")
    assert {k: tuple(v.shape[1:]) for k, v in acts.items()} == {s: LITE0_64[s] for s in tapped}
    assert all(not v.requires_grad for v in acts.values())
    assert _hook_count(model) == before
    assert model.training and model.stage3.training and not model.stem.training
    model.eval()


def test_tap_cleans_up_after_an_error_and_can_keep_train_mode(lite0):
    model = lite0.model
    model.eval()
    with pytest.raises(RuntimeError, match="boom"):
        with tap(model, "stage2", eval_mode=False, transform=lite0.pooled) as acts:
            model.forward_range(torch.zeros(1, 3, 64, 64), end="stage2")
            assert acts["stage2"].shape == (1, 24)  # the transform ran inside the hook
            raise RuntimeError("boom")
    assert _hook_count(model) == 0 and not model.training


def test_tap_unknown_stage_names_the_choices(lite0):
    with pytest.raises(ValueError, match=r"cannot tap 'layer9'.*stem, stage1"):
        with tap(lite0.model, ["layer9"]):
            pass


# ---- filters ---------------------------------------------------------------------------------------------------


def test_filters_are_the_first_conv_scaled_per_filter_around_mid_grey(lite0):
    f = filters(lite0)
    assert f.layer == "stem.0" and f.shape == (32, 3, 3, 3) and f.tiles.shape == (32, 3, 3, 3)
    w = lite0.model.get_submodule("stem.0").weight.detach().numpy().transpose(0, 2, 3, 1)
    m = np.abs(w).reshape(32, -1).max(axis=1)
    np.testing.assert_allclose(f.tiles, 0.5 + w / (2 * m[:, None, None, None]), atol=1e-6)
    extremes = np.abs(f.tiles - 0.5).reshape(32, -1).max(axis=1)
    np.testing.assert_allclose(extremes, 0.5, atol=1e-6)  # each filter reaches black or white on its own
    assert f.mosaic(columns=8, pad=1).shape == (4 * 4 - 1, 8 * 4 - 1, 3)


def test_filters_of_a_vit_are_its_patch_embedding(vit):
    f = filters(vit)
    assert f.layer == "embed.conv_proj" and f.tiles.shape == (768, 16, 16, 3)


# ---- feature maps ----------------------------------------------------------------------------------------------


def test_feature_maps_keep_the_strongest_channels_per_image(lite0, digits):
    images = digits.test.images[:3]
    maps = feature_maps(lite0, images, ["stage1", "stage4"], top_k=5)
    assert set(maps) == {"stage1", "stage4"}
    fm = maps["stage4"]
    assert type(fm) is FeatureMaps and fm.stage == "stage4" and not fm.tokens
    with torch.no_grad(), tap(lite0.model, ["stage4"]) as acts:  # the reference: the stage's own output
        lite0.model(lite0.normalize(images))
    np.testing.assert_allclose(fm.activations, acts["stage4"].numpy(), rtol=1e-5, atol=1e-6)
    assert fm.activations.dtype == np.float32 and fm.top_channels.shape == (3, 5) and fm.top_maps.shape == (3, 5, 4, 4)
    means = fm.activations.mean(axis=(2, 3))
    np.testing.assert_allclose(fm.channel_means, means, rtol=1e-5, atol=1e-6)
    for i in range(3):
        np.testing.assert_array_equal(fm.top_channels[i], np.argsort(-means[i], kind="stable")[:5])
        np.testing.assert_array_equal(fm.top_maps[i], fm.activations[i, fm.top_channels[i]])


def test_feature_maps_accept_pil_images_and_refuse_the_head(lite0):
    pil = [Image.new("RGB", (80, 60), (200, 30, 30)), Image.new("RGB", (64, 64), (0, 0, 255))]
    maps = feature_maps(lite0, pil, "stage2", top_k=2)
    assert maps["stage2"].activations.shape == (2, 24, 56, 56)  # transform -> 224 px
    with pytest.raises(ValueError, match="head outputs logits"):
        feature_maps(lite0, torch.zeros(1, 3, 64, 64, dtype=torch.uint8), ["head"])


def test_feature_maps_lay_vit_tokens_on_their_patch_grid(vit):
    maps = feature_maps(vit, torch.zeros(1, 3, 224, 224, dtype=torch.uint8), ["block1"], top_k=3)
    assert maps["block1"].tokens and maps["block1"].activations.shape == (1, 768, 14, 14)


# ---- pooled stage features ---------------------------------------------------------------------------------------


def test_stage_features_one_pass_per_batch_match_a_direct_forward_and_are_cached(digits):
    bb = load_backbone()
    split = digits.train.subset(range(40))
    calls = []
    handle = bb.model.stem.register_forward_hook(lambda *a: calls.append(1))
    try:
        clear_feature_cache()
        feats = stage_features(bb, split, ["stage2", "stage5"], batch_size=32)
        assert len(calls) == 2  # both stages from the same 2 batches
        assert feats["stage2"].shape == (40, 24) and feats["stage5"].shape == (40, 112)
        with torch.no_grad():
            bb.model.eval()
            direct = bb.model.forward_range(bb.normalize(split.images[:5]), end="stage5").mean(dim=(2, 3))
        np.testing.assert_allclose(feats["stage5"][:5], direct.numpy(), rtol=1e-4, atol=1e-5)
        calls.pop()  # that direct forward pass
        again = stage_features(bb, split, ["stage5", "stage2"])
        assert len(calls) == 2 and again["stage5"] is feats["stage5"]  # served from memory
        assert not feats["stage5"].flags.writeable  # a caller cannot corrupt the cache

        with torch.no_grad():  # training-like in-place update: the cache must notice
            bb.model.stage5[0]._project_conv.weight.mul_(0.5)
        changed = stage_features(bb, split, ["stage5"], batch_size=32)
        assert len(calls) == 4 and not np.allclose(changed["stage5"], feats["stage5"])
        bb.model.stage5[0]._project_conv.weight.data.mul_(2.0)  # ``.data`` edits skip the version counter
        restored = stage_features(bb, split, ["stage5"], batch_size=32)
        assert len(calls) == 6
        np.testing.assert_allclose(restored["stage5"], feats["stage5"], rtol=1e-4, atol=1e-5)

        head = bb.model.head.classifier[-1].weight
        with torch.no_grad():
            head.add_(1.0)  # the head does not change body features: still cached
        stage_features(bb, split, ["stage5"], batch_size=32)
        assert len(calls) == 6
        clear_feature_cache()
        stage_features(bb, split, ["stage5"], batch_size=32)
        assert len(calls) == 8
    finally:
        handle.remove()


def test_stage_features_default_to_every_body_stage_and_restore_train_mode(lite0, digits):
    lite0.model.train()
    feats = stage_features(lite0, digits.val)
    assert list(feats) == list(lite0.body_stages)
    assert {s: f.shape for s, f in feats.items()} == {s: (100, shape[0]) for s, shape in LITE0_64.items()}
    assert lite0.model.training
    lite0.model.eval()


# ---- linear probes ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_probe(lite0, digits):
    return probe_stages(lite0, digits)  # the session's Lite0: later calls reuse its cached features


@pytest.mark.slow
def test_probe_on_digits_peaks_mid_network_and_beats_raw_pixels(digits_probe):
    result = digits_probe
    print(result)
    test = [p.test_acc for p in result.probes]
    assert [p.stage for p in result.probes] == list(LITE0_64)
    peak = int(np.argmax(test))
    assert 0 < peak < len(test) - 1, "digits are far from ImageNet: a middle stage should probe best"
    assert max(test) - test[-1] >= 0.05
    best = result.probes[[p.stage for p in result.probes].index(result.best_stage)]
    assert result.best_stage not in ("stem", "conv_head")
    assert best.test_acc > result.baseline_test_acc, "the val-chosen stage should beat raw pixels"
    assert test[-1] < result.baseline_test_acc, "the final features do not beat raw pixels on digits"
    records = result.to_records()
    assert len(records) == 9 and records[-1]["stage"] == "conv_head" and records[-1]["dim"] == 1280
    assert "<- best on val" in str(result)


@pytest.fixture(scope="module")
def clipart():
    return load_dataset("clipart", shots=10)  # 128 px keeps it quick


@pytest.mark.slow
def test_probe_on_clipart_rises_to_the_top_and_random_init_stays_low(lite0, clipart):
    pretrained = probe_stages(lite0, clipart)
    random = probe_stages(load_backbone(pretrained=False), clipart, baseline=False)
    print(pretrained, random, sep="\n")
    test = [p.test_acc for p in pretrained.probes]
    assert np.mean(test[-3:]) - np.mean(test[:3]) >= 0.15, "ImageNet features transfer to clip art: late > early"
    assert max(test) - test[-1] <= 0.05  # the top is (near) the best
    assert test[-1] > pretrained.baseline_test_acc + 0.2
    assert test[-1] - random.probes[-1].test_acc >= 0.25, "random-init final features are far worse"


def test_probe_with_fixed_C_and_chosen_stages_gives_records_with_context(lite0, digits):
    thin = {split: getattr(digits, split).subset(range(0, len(getattr(digits, split)), 4)) for split in ("val", "test")}
    small = dataclasses.replace(digits, **thin)  # quicker; every class still in each split
    result = probe_stages(lite0, small, ["stage3", "stage1"], C=0.5)
    assert [p.stage for p in result.probes] == ["stage1", "stage3"]  # forward order
    assert all(p.C == 0.5 for p in result.probes) and 0.5 < result.baseline_test_acc < 1.0
    records = result.to_records()
    assert [r["stage"] for r in records] == ["stage1", "stage3"] and records[1]["dim"] == 40
    assert {"train_acc", "val_acc", "test_acc", "dim", "C", "baseline_test_acc", "backbone", "pretrained",
            "dataset", "shots", "image_size"} <= set(records[0])
    assert (result.backbone, result.pretrained, result.dataset, result.shots, result.image_size) == (
        "efficientnet_lite0", True, "digits", 10, 64)
    # the reference: scikit-learn directly on the same pooled features (scaler + logistic regression, C=0.5)
    feats = {split: stage_features(lite0, getattr(small, split), ["stage1", "stage3"]) for split in ("train", "val", "test")}
    for r in records:
        ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=5000))
        ref.fit(feats["train"][r["stage"]], small.train.labels.numpy())
        for split in ("train", "val", "test"):
            expected = accuracy_score(getattr(small, split).labels.numpy(), ref.predict(feats[split][r["stage"]]))
            assert r[f"{split}_acc"] == pytest.approx(expected, abs=1e-12), (r["stage"], split)
    # best on val accuracy, ties to the lower val log-loss, whichever of the two that is
    assert result.best_stage == max(records, key=lambda r: (r["val_acc"], -r["val_loss"]))["stage"]
    assert list(result.curve("val")) == ["stage1", "stage3"] and result.curve()["stage3"] == records[1]["test_acc"]
    no_val = dataclasses.replace(small, val=digits.val.subset([]))
    unchosen = probe_stages(lite0, no_val, ["stage1"], baseline=False)
    assert unchosen.probes[0].C == 1.0 and "stage1" in str(unchosen)
    with pytest.raises(ValueError, match="val_per_class > 0"):
        unchosen.best_stage
    with pytest.raises(ValueError, match="unknown stage 'layer4'.*stem, stage1"):
        probe_stages(lite0, digits, ["layer4"])


def _reference_probe(splits, grid):
    """The C search written out with plain scikit-learn calls: fit on train, score on val, test only measured."""
    (xt, yt), (xv, yv), (xs, ys) = splits["train"], splits["val"], splits["test"]
    rows = []
    for c in grid:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)).fit(xt, yt)
        rows.append((accuracy_score(yv, model.predict(xv)), -log_loss(yv, model.predict_proba(xv)), c, model))
    acc, neg_loss, c, model = max(rows, key=lambda r: r[:2])  # first of equal (acc, -loss): grid order
    return {"C": c, "train_acc": accuracy_score(yt, model.predict(xt)), "val_acc": acc, "val_loss": -neg_loss,
            "test_acc": accuracy_score(ys, model.predict(xs))}


@pytest.mark.parametrize("noise", [0.5, 2.0, 4.0])
def test_fit_probe_equals_a_direct_sklearn_search_on_synthetic_data(noise):
    rng = np.random.default_rng(int(noise * 10))
    centers = rng.normal(0, 1, (3, 12))

    def split(n):
        y = np.arange(n) % 3
        return centers[y] + rng.normal(0, noise, (n, 12)), y

    splits = {"train": split(30), "val": split(24), "test": split(60)}
    got = fit_probe(splits)
    expected = _reference_probe(splits, C_GRID)
    assert got.scores.keys() == expected.keys()
    for key, value in expected.items():
        assert got.scores[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    # the test split never chooses: other test labels change test_acc only
    flipped = {**splits, "test": (splits["test"][0], (splits["test"][1] + 1) % 3)}
    other = fit_probe(flipped)
    assert {k: other.scores[k] for k in ("C", "val_acc", "val_loss")} == {k: got.scores[k] for k in ("C", "val_acc", "val_loss")}


def test_fit_probe_breaks_accuracy_ties_by_val_log_loss():
    rng = np.random.default_rng(1)
    y = np.arange(40) % 2
    x = rng.normal(0, 0.3, (40, 4)) + 3 * y[:, None]  # separable: every C is 100% on val
    splits = {"train": (x[:20], y[:20]), "val": (x[20:30], y[20:30]), "test": (x[30:], y[30:])}
    got = fit_probe(splits)
    assert got.scores["val_acc"] == 1.0
    assert got.scores["C"] == 10.0  # the weakest regularisation gives the most confident, lowest-loss probe
    assert got.scores == pytest.approx(_reference_probe(splits, C_GRID), rel=1e-9)
    assert fit_probe(splits, C=0.3).scores["C"] == 0.3  # a fixed C is used as given
    no_val = {**splits, "val": (x[:0], y[:0])}
    assert fit_probe(no_val).scores["C"] == 1.0 and np.isnan(fit_probe(no_val).scores["val_acc"])
    with pytest.raises(ValueError, match=r"val split has classes the train split lacks \(\[1\]\)"):
        fit_probe({**splits, "train": (x[:20:2], y[:20:2])})


# ---- cuts ------------------------------------------------------------------------------------------------------


def test_cut_at_builds_an_independent_staged_model_with_a_new_head(lite0):
    cut = cut_at(lite0, "stage4", 7)
    assert cut.stages == ("stem", "stage1", "stage2", "stage3", "stage4", "head") and cut.head == "head"
    assert type(cut.model) is StagedModel and type(cut.model.head) is ClassifierHead
    assert (cut.model.head.classifier.in_features, cut.model.head.classifier.out_features) == (80, 7)  # stage4: 80 ch
    assert cut.meta["cut_at"] == "stage4" and cut.meta["num_classes"] == 7 and cut.spec.gradcam_layer == "stage4"
    assert cut.meta["total_parameters"] == sum(p.numel() for p in cut.model.parameters())
    cut.model.eval()
    assert cut.model(torch.zeros(2, 3, 64, 64)).shape == (2, 7)
    assert not {id(p) for p in cut.model.parameters()} & {id(p) for p in lite0.model.parameters()}  # copies
    torch.testing.assert_close(cut.model.stem[0].weight, lite0.model.stem[0].weight)
    rebuilt = cut.spec.build(False)
    assert rebuilt.stage_names == cut.stages
    with pytest.raises(ValueError, match="cannot cut at 'head'; choose a body stage: stem"):
        cut_at(lite0, "head", 7)


@pytest.mark.slow
def test_cut_at_the_best_probe_stage_beats_the_full_frozen_head(digits, digits_probe, tmp_path):
    stage = digits_probe.best_stage
    cut = cut_at(load_backbone(num_classes=10), stage, 10)
    run_cut = fit(cut, digits, plan=FreezePlan.frozen_head(), epochs=30, progress=False, run_dir=tmp_path / "cut")
    run_full = fit("efficientnet_lite0", digits, plan=FreezePlan.frozen_head(), epochs=30, progress=False,
                   run_dir=tmp_path / "full")
    print(stage, run_cut.best, run_full.best)
    assert run_cut.model.stage_names[-2] == stage and run_cut.cache.startswith("memory")
    assert run_cut.best["test_acc"] >= run_full.best["test_acc"] + 0.03


# ---- embeddings ------------------------------------------------------------------------------------------------


def test_embed_pca_and_tsne_give_reproducible_2d_points():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 10)), rng.normal(6, 1, (30, 10))])
    xy = embed(x, "pca")
    assert xy.shape == (60, 2) and xy.dtype == np.float32
    assert abs(xy[:30, 0].mean() - xy[30:, 0].mean()) > 3  # the first component separates the two clusters
    t1, t2 = embed(torch.from_numpy(x), "tsne", seed=1), embed(x, "tsne", seed=1)
    assert t1.shape == (60, 2)
    np.testing.assert_allclose(t1, t2, rtol=1e-5)
    with pytest.raises(ValueError, match="method must be 'pca' or 'tsne'"):
        embed(x, "umap")
