"""Parameter-efficient fine-tuning: FreezePlan(params="norm" | "bias" | "lora") trains exactly what it says."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from tl_lab.backbones.registry import load_backbone
from tl_lab.data.datasets import load_dataset
from tl_lab.training.checkpoints import checkpoint_size, load_onto_pretrained
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit
from tl_lab.training.peft_params import PEFT_MISSING, count_chosen, lora_targets, merge_lora

# EfficientNet-Lite0's last stages, by hand: stage7 is one MBConv block 192 -> 1152 (expand x6) -> 320 with three
# BatchNorms (1152, 1152, 320) and no convolution biases; conv_head is a 1x1 conv 320 -> 1280 + BN(1280); the head
# a 1280 -> 10 linear layer (12,810 parameters). LoRA adapts the two 1x1 convs of stage7 (the depthwise 3x3 is
# left out) and conv_head's: r * (in + out) each.
HEAD = 1280 * 10 + 10
NORM = 2 * (1152 + 1152 + 320) + 2 * 1280
BIAS = (1152 + 1152 + 320) + 1280
LORA = (192 + 1152) + (1152 + 320) + (320 + 1280)  # per unit of rank


@pytest.fixture(scope="module")
def lite0_10():
    return load_backbone(num_classes=10)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", shots=2, seed=0, image_size=32)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict, model: nn.Module) -> set[str]:
    after = model.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, after[k])}


@pytest.mark.parametrize(("params", "rank", "expected"), [
    ("norm", None, NORM + HEAD), ("bias", None, BIAS + HEAD), ("lora", 4, 4 * LORA + HEAD), ("lora", 8, 8 * LORA + HEAD),
])
def test_trainable_counts_equal_hand_computed_ones(lite0_10, params, rank, expected):
    plan = FreezePlan("stage7", params=params, lora_rank=rank)
    summary = plan.summary(lite0_10)
    assert summary.trainable == expected
    assert summary.total == sum(p.numel() for p in lite0_10.model.parameters())  # nothing added by a summary
    assert f"{expected:,}" in str(summary)


def test_applied_plan_trains_exactly_the_counted_parameters(digits):
    bb = load_backbone(num_classes=10)
    plan = FreezePlan("stage7", params="lora", lora_rank=2)
    groups = plan.apply(bb, lr=1e-3)
    in_groups = sum(p.numel() for g in groups for p in g["params"])
    requiring = sum(p.numel() for p in bb.model.parameters() if p.requires_grad)
    assert in_groups == requiring == 2 * LORA + HEAD == plan.summary(bb).trainable
    assert lora_targets(bb.model.get_submodule("stage7"), "stage7") == ["stage7.0._expand_conv", "stage7.0._project_conv"]


def test_norm_only_changes_only_norm_parameters_and_statistics(digits, tmp_path):
    bb = load_backbone(num_classes=10)
    norms = {f"{n}.{p}" for n, m in bb.model.named_modules() if isinstance(m, nn.BatchNorm2d)
             for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    before = _state(bb.model)
    fit(bb, digits, plan=FreezePlan("stage7", params="norm"), epochs=2, progress=False, run_dir=tmp_path)
    changed = _changed(before, bb.model)
    body = {k for k in changed if not k.startswith("head.")}
    assert body and body <= {k for k in norms if k.startswith(("stage7.", "conv_head."))}
    assert any(k.endswith(".weight") for k in body)  # the affine scale moved, not only the statistics


def test_bias_only_changes_only_biases(digits, tmp_path):
    bb = load_backbone(num_classes=10)
    before = _state(bb.model)
    fit(bb, digits, plan=FreezePlan("stage7", params="bias", bn="eval"), epochs=2, progress=False, run_dir=tmp_path)
    body = {k for k in _changed(before, bb.model) if not k.startswith("head.")}
    assert body and all(k.endswith(".bias") and k.startswith(("stage7.", "conv_head.")) for k in body)


def test_lora_keeps_base_weights_and_merges_to_the_same_outputs(digits, tmp_path):
    bb = load_backbone(num_classes=10)
    before = _state(bb.model)
    plan = FreezePlan("stage7", params="lora", lora_rank=4)
    run = fit(bb, digits, plan=plan, epochs=2, progress=False, run_dir=tmp_path, lr=1e-2)
    after = bb.model.state_dict()
    lora_b = [v for k, v in after.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero; training moved it
    for key, old in before.items():
        if key.startswith("head.") or "running_" in key or "num_batches" in key:
            continue
        new_key = key if key in after else key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(after[new_key], old), key
    x = torch.randn(3, 3, 32, 32)
    bb.model.eval()
    with torch.no_grad():
        y = bb.model(x)
        merge_lora(bb.model)
        assert not any("lora_" in k for k in bb.model.state_dict())
        torch.testing.assert_close(bb.model(x), y, atol=1e-4, rtol=1e-4)
    # the checkpoint stores only what changed, and reproduces the run on a fresh pretrained backbone
    size = checkpoint_size(run.checkpoint, load_backbone(num_classes=10).model)
    expected_kb = (4 * LORA + HEAD) * 4 / 1000  # float32 factors + head; plus the BN statistics of two stages
    assert expected_kb < size["stored_kb"] < 0.2 * size["full_kb"]
    fresh = load_onto_pretrained(load_backbone(num_classes=10), run.checkpoint, plan)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), y, atol=1e-4, rtol=1e-4)


def test_norm_checkpoint_is_small_and_reloads_exactly(digits, tmp_path):
    bb = load_backbone(num_classes=10)
    plan = FreezePlan("stage7", params="norm")
    run = fit(bb, digits, plan=plan, epochs=1, progress=False, run_dir=tmp_path)
    bb.model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y = bb.model(x)
        fresh = load_onto_pretrained(load_backbone(num_classes=10), run.checkpoint, plan)
        torch.testing.assert_close(fresh(x), y, atol=1e-6, rtol=1e-5)  # memory layouts differ: not bitwise
    size = checkpoint_size(run.checkpoint, bb.model)
    # stored: head + norm affine + statistics (running mean/var + counters) of stage7 and conv_head, float32
    stats = 2 * (1152 + 1152 + 320 + 1280) * 4 + 4 * 8
    assert size["stored_kb"] == pytest.approx(((HEAD + NORM) * 4 + stats) / 1000)
    assert size["full_kb"] > 13_000


def test_bad_combinations_are_clear_errors():
    with pytest.raises(ValueError, match="trainable_from='head' trains only the head"):
        FreezePlan("head", params="norm")
    with pytest.raises(ValueError, match="lora_rank is for params='lora'"):
        FreezePlan(None, params="bias", lora_rank=4)
    with pytest.raises(ValueError, match="lora_rank must be a whole number >= 1"):
        FreezePlan(None, params="lora", lora_rank=0)
    with pytest.raises(ValueError, match="bn='train' re-estimates"):
        FreezePlan(None, params="lora", bn="train")
    with pytest.raises(ValueError, match="params must be one of 'all', 'norm', 'bias', 'lora'; got 'weights'"):
        FreezePlan(None, params="weights")
    assert FreezePlan(None, params="lora").lora_rank == 8


def test_missing_peft_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    bb = load_backbone(num_classes=10)
    with pytest.raises(ImportError, match=r'pip install "tl-lab\[peft\]"'):
        FreezePlan("stage7", params="lora").apply(bb)
    assert "tl-lab[peft]" in PEFT_MISSING


def test_plan_round_trips_through_its_dict():
    plan = FreezePlan("stage6", params="lora", lora_rank=4)
    assert FreezePlan(**plan.to_dict()) == plan
    assert FreezePlan(**FreezePlan("stage6").to_dict()).to_dict() == {"trainable_from": "stage6", "bn": "frozen",
                                                                     "lr_mult": {}}
    assert plan.describe() == "train from stage6 (LoRA rank 4)"


def test_lora_count_on_a_tiny_net_by_hand():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(), nn.Linear(8, 5))
    # conv 3x3 3->8: r*(3*9 + 8); depthwise: left out; linear 8->5: r*(8+5)
    assert count_chosen(net, "lora", rank=2) == 2 * (27 + 8) + 2 * 13
    assert lora_targets(net) == ["0", "3"]


def test_efficiency_scatter_draws_methods_on_a_log_axis_and_raw_pixels_as_a_line():
    from tl_lab.plots import efficiency_scatter

    recs = [{"dataset": d, "method": m, "trainable": n, "test_acc": a} for d in ("clipart", "digits")
            for m, n, a in (("raw pixels", 100_000, 0.3), ("bias only", 33_818, 0.65), ("LoRA r=2", 58_378, 0.7),
                            ("LoRA r=16", 377_354, 0.72), ("full fine-tune", 3_383_818, 0.8))]
    fig = efficiency_scatter(recs)
    assert [t.name for t in fig.data] == ["bias only", "LoRA r=2", "LoRA r=16", "full fine-tune"] * 2
    assert fig.data[0].x == (33_818,) and fig.data[3].y == (0.8,)
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    assert fig.data[1].marker.symbol != fig.data[2].marker.symbol  # LoRA ranks share a colour, not a symbol
    assert [s.y0 for s in fig.layout.shapes] == [0.3, 0.3]  # raw pixels, one line per panel
    with pytest.raises(ValueError):
        efficiency_scatter([{"dataset": "digits", "method": "bias only"}])


def test_freezer_offers_what_trains_and_shows_the_exact_count():
    from tl_lab.widgets.freezer import StageFreezer

    f = StageFreezer("efficientnet_lite0", num_classes=10)
    f.set_trainable_from("stage7")
    f.params.value = "lora:4"
    assert f.plan == FreezePlan("stage7", params="lora", lora_rank=4, lr_mult={"body": 0.1})
    assert f.trainable == 4 * LORA + HEAD  # from a middle stage the body LR defaults to fine-tuning's 0.1
    f.params.value = "bias"
    assert f.trainable == BIAS + HEAD and "16,714" in f.count.value
    f.set_plan(FreezePlan(None, params="lora", lora_rank=2))  # a rank the menu lacks is added
    assert f.params.value == "lora:2" and f.plan.lora_rank == 2
    f.set_trainable_from("head")  # only the head trains: nothing to choose inside the body
    assert f.plan == FreezePlan("head") and f.trainable == HEAD
    f.set_trainable_from("stage7")
    f.params.value = "lora:4"
    f.bn.value = "train"  # LoRA with re-estimated statistics: refused, visibly
    assert "bn='train' re-estimates" in f.status.text


def test_checkpoint_leaves_out_statistics_that_cannot_change(digits, tmp_path):
    """bn="eval": trainable stages keep their BatchNorm statistics, so a bias-only checkpoint is the biases + head."""
    bb = load_backbone(num_classes=10)
    plan = FreezePlan("stage7", params="bias", bn="eval")
    run = fit(bb, digits, plan=plan, epochs=1, progress=False, run_dir=tmp_path)
    assert checkpoint_size(run.checkpoint, bb.model)["stored_kb"] == pytest.approx((BIAS + HEAD) * 4 / 1000)
    x = torch.randn(2, 3, 32, 32)
    bb.model.eval()
    with torch.no_grad():
        fresh = load_onto_pretrained(load_backbone(num_classes=10), run.checkpoint, plan)
        torch.testing.assert_close(fresh(x), bb.model(x), atol=1e-6, rtol=1e-5)
