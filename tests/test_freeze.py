"""Freeze plans: exact trainable counts, frozen weights and BatchNorm statistics untouched by a training step."""

from __future__ import annotations

import pytest
import torch

from tl_lab.backbones.registry import load_backbone
from tl_lab.training.freeze import FreezePlan


@pytest.fixture
def bb():
    return load_backbone("efficientnet_lite0", num_classes=4)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_trainable_counts_are_exact(bb):
    plan = FreezePlan(trainable_from="stage7")
    plan.apply(bb)
    expected = sum(_count(bb.model.get_submodule(s)) for s in ("stage7", "conv_head", "head"))
    assert sum(p.numel() for p in bb.model.parameters() if p.requires_grad) == expected
    summary = plan.summary(bb)
    assert summary.trainable == expected
    assert summary.total == sum(p.numel() for p in bb.model.parameters())
    # head by hand: 1280 * 4 weights + 4 biases
    head_only = FreezePlan(trainable_from="head").summary(bb)
    assert head_only.trainable == 1280 * 4 + 4
    assert FreezePlan(trainable_from=None).summary(bb).frozen == 0


def test_unknown_stage_lists_the_valid_ones(bb):
    with pytest.raises(ValueError, match=r"unknown stage 'layer4' for efficientnet_lite0; valid stages: stem, stage1"):
        FreezePlan(trainable_from="layer4").apply(bb)
    with pytest.raises(ValueError, match="lr_mult names unknown stage 'nope'"):
        FreezePlan(lr_mult={"nope": 0.1}).summary(bb)
    with pytest.raises(ValueError, match="bn must be one of 'frozen', 'eval', 'train'"):
        FreezePlan(bn="sometimes")


def _one_step(bb, plan, lr=0.1):
    groups = plan.apply(bb, lr=lr)
    opt = torch.optim.SGD(groups, lr=lr)
    bb.model.train()
    x = torch.randn(6, 3, 64, 64) * 2 + 1  # statistics far from ImageNet's, so updating BN stats would show
    loss = torch.nn.functional.cross_entropy(bb.model(x), torch.tensor([0, 1, 2, 3, 0, 1]))
    opt.zero_grad()
    loss.backward()
    opt.step()


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_one_step_leaves_frozen_weights_and_bn_stats_bit_identical(bb):
    frozen_before = _snapshot(bb.model.stage3)
    trainable_before = _snapshot(bb.model.conv_head)
    _one_step(bb, FreezePlan(trainable_from="stage7"))
    frozen_after = _snapshot(bb.model.stage3)
    for key, value in frozen_before.items():
        assert torch.equal(value, frozen_after[key]), key
    assert not bb.model.stage3.training  # locked in eval mode under model.train()
    after = _snapshot(bb.model.conv_head)
    assert not torch.equal(trainable_before["0.weight"], after["0.weight"])
    # trainable stage's BN statistics do update under the default policy
    assert not torch.equal(trainable_before["1.running_mean"], after["1.running_mean"])


def test_bn_train_policy_lets_frozen_statistics_drift(bb):
    before = _snapshot(bb.model.stage3)
    _one_step(bb, FreezePlan(trainable_from="head", bn="train"))
    after = _snapshot(bb.model.stage3)
    stat_keys = [k for k in before if k.endswith("running_mean")]
    assert stat_keys and all(not torch.equal(before[k], after[k]) for k in stat_keys)
    weight_keys = [k for k in before if k.endswith("weight")]
    assert all(torch.equal(before[k], after[k]) for k in weight_keys)  # weights still frozen


def test_bn_eval_policy_fixes_statistics_but_trains_weights(bb):
    before = _snapshot(bb.model.conv_head)
    _one_step(bb, FreezePlan(trainable_from=None, bn="eval"))
    after = _snapshot(bb.model.conv_head)
    assert torch.equal(before["1.running_mean"], after["1.running_mean"])
    assert not torch.equal(before["1.weight"], after["1.weight"])


def test_lr_multipliers_become_param_groups(bb):
    plan = FreezePlan(trainable_from="stage6", lr_mult={"body": 0.1, "stage7": 0.5})
    groups = plan.apply(bb, lr=1e-3)
    by_stage = {g["stage"]: g["lr"] for g in groups}
    assert by_stage == pytest.approx({"stage6": 1e-4, "stage7": 5e-4, "conv_head": 1e-4, "head": 1e-3})
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == plan.summary(bb).trainable


def test_summary_table_reads_well(bb):
    text = str(FreezePlan(trainable_from="conv_head").summary(bb))
    assert "frozen to" not in text and "train from conv_head" in text
    assert "stage7" in text and "frozen" in text and "trainable" in text
    row = {r.stage: r for r in FreezePlan(trainable_from="conv_head").summary(bb).rows}
    assert row["stage7"].bn == "fixed" and row["conv_head"].bn == "updating" and row["head"].bn == "-"
    assert FreezePlan(**FreezePlan(trainable_from="stage5", lr_mult={"body": 0.1}).to_dict()).describe() == \
        "train from stage5 (LR body×0.1)"


@pytest.mark.parametrize(("bn", "changing", "cached_after"), [
    # frozen: only trainable stages move; eval: nothing's statistics move; train: every stage's statistics move
    ("frozen", ("stage7", "conv_head", "head"), "stage6"),
    ("eval", ("stage7", "conv_head", "head"), "stage6"),
    ("train", None, None),
])
def test_the_summary_decides_once_what_changes_and_what_can_be_cached(bb, bn, changing, cached_after):
    from tl_lab.training.feature_cache import cache_plan

    layout = FreezePlan(trainable_from="stage7", bn=bn).summary(bb)
    assert layout.trainable_stages == ("stage7", "conv_head", "head")
    assert layout.changing_stages == (changing or bb.stages)
    updating = {r.stage for r in layout.rows if r.bn_train}
    assert updating == {"frozen": {"stage7", "conv_head", "head"}, "eval": set(), "train": set(bb.stages)}[bn]
    last, why = cache_plan(layout, augment=False)
    assert last == cached_after
    assert why == ("on" if cached_after else "off: bn='train' lets the frozen stages' BatchNorm statistics change every batch")
    assert cache_plan(layout, augment=True)[1] == "off: random augmentation changes the inputs every epoch"
    assert cache_plan(FreezePlan(trainable_from=None).summary(bb), augment=False)[0] is None


def test_a_zero_multiplier_freezes_a_stage_everywhere(bb):
    plan = FreezePlan(trainable_from="stage7", lr_mult={"stage7": 0})
    layout = plan.summary(bb)
    assert layout.trainable_stages == ("conv_head", "head")
    groups = layout.apply(bb.model, lr=1e-3)
    assert [g["stage"] for g in groups] == ["conv_head", "head"]
    assert not any(p.requires_grad for p in bb.model.stage7.parameters())
    from tl_lab.training.feature_cache import cache_plan

    assert cache_plan(layout, augment=False) == ("stage7", "on")  # the frozen stage7 joins the cached prefix
