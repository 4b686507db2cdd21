"""Forgetting remedies: LwF, EWC and L2-SP terms against direct formulas, zero at the start, growing as weights move."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tl_lab.data.datasets import load_dataset
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import batch_loss, fit
from tl_lab.training.retention import Retain, diagonal_fisher, ewc_penalty, l2sp_penalty, lwf_loss


def test_lwf_is_kl_by_hand_at_temperature_two():
    torch.manual_seed(0)
    z, z0 = torch.randn(4, 6), torch.randn(4, 6)
    T = 2.0
    q = [[math.exp(v / T) for v in row] for row in z0.tolist()]
    p = [[math.exp(v / T) for v in row] for row in z.tolist()]
    kl = 0.0
    for qi, pi in zip(q, p):
        qs, ps = sum(qi), sum(pi)
        kl += sum((a / qs) * math.log((a / qs) / (b / ps)) for a, b in zip(qi, pi))
    assert lwf_loss(z, z0, temperature=T).item() == pytest.approx(kl / 4, rel=1e-5)
    assert lwf_loss(z0, z0).item() == pytest.approx(0.0, abs=1e-7)


def test_l2sp_and_ewc_against_direct_formulas_on_a_tiny_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 5))
    anchors = {n: p.detach().clone() for n, p in net.named_parameters()}
    fisher = {n: torch.rand_like(p) for n, p in net.named_parameters()}
    assert l2sp_penalty(net.named_parameters(), anchors).item() == 0.0
    assert ewc_penalty(net.named_parameters(), anchors, fisher).item() == 0.0
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    w = dict(net.named_parameters())
    direct_l2 = 0.5 * sum(((w[n] - anchors[n]) ** 2).sum().item() for n in w)
    direct_ewc = 0.5 * sum((fisher[n] * (w[n] - anchors[n]) ** 2).sum().item() for n in w)
    assert l2sp_penalty(net.named_parameters(), anchors).item() == pytest.approx(direct_l2, rel=1e-6)
    assert ewc_penalty(net.named_parameters(), anchors, fisher).item() == pytest.approx(direct_ewc, rel=1e-6)


def test_diagonal_fisher_is_the_mean_squared_gradient_of_the_predicted_class():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 5))
    x = torch.randn(6, 3)
    fisher = diagonal_fisher(net, [x[:4], x[4:]], ["0.weight", "2.bias"])
    expected = {"0.weight": torch.zeros(4, 3), "2.bias": torch.zeros(5)}
    for xi in x:  # one image at a time, by hand: softmax gradient of the top class's log-probability
        h = torch.tanh(net[0](xi))
        z = net[2](h)
        p = z.softmax(0)
        k = int(z.argmax())
        dz = -p
        dz[k] += 1.0                                  # d log p_k / d z
        expected["2.bias"] += dz.detach() ** 2
        dh = net[2].weight.T @ dz * (1 - h**2)        # back through the tanh
        expected["0.weight"] += torch.outer(dh, xi).detach() ** 2
    for name, value in expected.items():
        torch.testing.assert_close(fisher[name], value / 6, rtol=1e-5, atol=1e-7)
    assert all(p.requires_grad for p in net.parameters())  # restored


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", shots=2, seed=0, image_size=32)


def _body_change(method: str | None, strength: float, data) -> float:
    from tl_lab.backbones.registry import load_backbone

    bb = load_backbone(num_classes=10, seed=0)
    w0 = {n: p.detach().clone() for n, p in bb.model.named_parameters() if n.startswith("stage7.")}
    # plain SGD: a pull's gradient shrinks the step (AdamW rescales each step and hides it)
    run = fit(bb, data, plan=FreezePlan("stage7", bn="eval"), epochs=3, lr=0.05, optimizer="sgd", momentum=0.0,
              seed=0, progress=False, save_checkpoints=False, retain=[Retain(method, strength)] if method else None)
    if method:
        assert run.config["retain"] == [f"{method} {strength:g}"]
    w = dict(bb.model.named_parameters())
    return sum((w[n] - v).pow(2).sum().item() for n, v in w0.items()) ** 0.5


@pytest.mark.parametrize(("method", "strength"), [("lwf", 10.0), ("l2sp", 5.0)])
def test_a_remedy_in_fit_keeps_the_body_closer_to_its_start(digits, method, strength):
    """Measured: no remedy 0.273, L2-SP 5: 0.216, LwF 10: 0.214 (L2 distance of stage7's weights from the start).

    EWC is left out here: with SGD its pull diverges once lr * lambda * max(F) > 2 (measured at lambda=10);
    its term in the loop is checked through batch_loss below.
    """
    free = _body_change(None, 0.0, digits)
    held = _body_change(method, strength, digits)
    assert 0 < held < 0.9 * free, (held, free)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lwf", "l2sp"])
def test_a_resumed_run_with_a_remedy_gives_the_uninterrupted_history(digits, tmp_path, method):
    """The remedy's anchors and teacher are the pretrained network's, also when a resume loads the stopped weights
    (it once built them after the resume, so the pull went towards the stopped weights)."""
    from tl_lab.training.events import EpochEnd, StopToken

    kw = dict(plan=FreezePlan("stage7", bn="eval"), epochs=4, seed=0, progress=False, retain=[method])
    full = fit("efficientnet_lite0", digits, run_dir=tmp_path / "full", **kw)
    stop = StopToken()

    def stop_after_the_second_epoch(event):
        if isinstance(event, EpochEnd) and event.epoch == 1:
            stop.stop("test stop")

    first = fit("efficientnet_lite0", digits, run_dir=tmp_path / "cut", stop=stop,
                callbacks=[stop_after_the_second_epoch], **kw)
    assert first.stopped_early and len(first.history) == 2
    resumed = fit("efficientnet_lite0", digits, resume=tmp_path / "cut", **kw)
    assert [h["train_loss"] for h in resumed.history] == pytest.approx([h["train_loss"] for h in full.history],
                                                                       rel=1e-5)
    other = "l2sp" if method == "lwf" else "lwf"
    with pytest.raises(ValueError, match=rf"these differ: terms \(was {method} [\d.]+, now {other} [\d.]+\)"):
        fit("efficientnet_lite0", digits, resume=tmp_path / "cut", **{**kw, "retain": [other]})
    with pytest.raises(ValueError, match=rf"these differ: terms \(was {method} [\d.]+, now none\)"):
        fit("efficientnet_lite0", digits, resume=tmp_path / "cut", **{**kw, "retain": None})


def test_a_rerun_repeats_the_remedies_with_their_strengths(digits, tmp_path):
    from tl_lab.app.rerun import run_from_config

    assert Retain.from_label(Retain("ewc", 250.0).label()) == Retain("ewc", 250.0)
    assert Retain.from_label("lwf") == Retain("lwf")
    run = fit("efficientnet_lite0", digits, plan=FreezePlan("stage7", bn="eval"), epochs=1, progress=False,
              retain=[Retain("l2sp", 2.5)], run_dir=tmp_path / "a")
    again = run_from_config(run.config, run_dir=tmp_path / "b", progress=False)
    assert again.config["retain"] == ["l2sp 2.5"]
    assert again.history[0]["train_loss"] == pytest.approx(run.history[0]["train_loss"], rel=1e-5)


def test_retention_terms_in_batch_loss(digits):
    """batch_loss adds exactly each remedy's value; with no weights moved, LwF/EWC/L2-SP add 0."""
    from tl_lab.backbones.registry import load_backbone
    from tl_lab.training.feed import Feed, Precision
    from tl_lab.training.retention import retain_terms
    from tl_lab.training.terms import Batch, CrossEntropy, Taps, TermContext

    bb = load_backbone(num_classes=10)
    plan = FreezePlan("stage7", bn="eval")
    layout = plan.summary(bb)
    layout.apply(bb.model, lr=1e-3)
    feed = Feed(bb, digits, cache_after="stage6", why="test", device=torch.device("cpu"),
                precision=Precision.choose(torch.device("cpu"), False), augment=None, memory_cap_mb=64, cache_dir=None)
    terms = retain_terms([Retain("lwf", 1.0), Retain("ewc", 10.0), Retain("l2sp", 1.0)])
    for t in terms:
        t.setup(TermContext(bb, digits, layout, feed, torch.device("cpu")))
    taps = Taps(bb.model, [tap for t in terms for tap in t.taps])
    x, y = feed.inputs("train", torch.arange(8), step=0), feed.labels("train", torch.arange(8))
    bb.model.eval()

    def loss():
        with taps.capture() as tapped:
            logits = feed.suffix(x)
        return batch_loss(CrossEntropy(), terms, Batch(logits, y, x, tapped))

    plain = loss()
    torch.testing.assert_close(plain.total, plain.task, atol=1e-5, rtol=0)
    assert all(abs(t.last) < 1e-5 for t in terms) and set(plain.terms) == {"lwf", "ewc", "l2sp"}
    assert sum(f.sum().item() for f in terms[1].fisher.values()) > 0
    with torch.no_grad():  # move the trainable body: every term grows, by more for a bigger move
        for n, p in bb.model.named_parameters():
            if n.startswith("stage7."):
                p.add_(0.01 * torch.randn_like(p))
    small = loss()
    assert small.total.item() == pytest.approx(small.task.item() + sum(v.item() for v in small.terms.values()))
    with torch.no_grad():
        for n, p in bb.model.named_parameters():
            if n.startswith("stage7."):
                p.add_(0.05 * torch.randn_like(p))
    big = loss()
    for k in ("lwf", "ewc", "l2sp"):
        assert 0 < small.terms[k].item() < big.terms[k].item(), k
    taps.close()
    assert not bb.model.get_submodule(bb.head).classifier._forward_pre_hooks


def test_bad_remedies_are_clear_errors():
    with pytest.raises(ValueError, match="remedy must be one of 'lwf', 'ewc', 'l2sp'; got 'replay'"):
        Retain("replay")
    with pytest.raises(ValueError, match="strength must be a number >= 0"):
        Retain("ewc", -1.0)
    assert Retain("lwf").strength == 1.0 and Retain("lwf").temperature == 2.0


def test_forgetting_tradeoff_has_one_trace_per_remedy_and_checks_the_image_set():
    from tl_lab.plots import forgetting_tradeoff

    recs = [{"plan": p, "remedy": r, "images": im, "top1_agreement": a, "task_b_test_acc": b}
            for im in ("photos", "test")
            for p, r, a, b in (("frozen_head", "none", 1.0, 0.55), ("fine_tune", "none", 0.14, 0.55),
                               ("fine_tune", "ewc 10000", 0.88, 0.57), ("fine_tune", "ewc 100", 0.31, 0.59),
                               ("fine_tune", "lwf 1", 0.36, 0.57))]
    fig = forgetting_tradeoff(recs, images="test")
    assert [t.name for t in fig.data] == ["no remedy", "EWC", "LwF"]
    assert fig.data[1].x == (0.31, 0.88) and fig.data[1].text == ("EWC 100", "EWC 10000")  # ordered by agreement
    assert fig.data[0].text == ("fine-tune all", "frozen body")  # readable names, not the code's keys
    with pytest.raises(ValueError, match="no records for images='train'; choose one of: photos, test"):
        forgetting_tradeoff(recs, images="train")


def test_plans_that_cannot_use_a_remedy_are_refused_before_anything_is_built():
    from tl_lab.backbones.registry import load_backbone
    from tl_lab.training.retention import check_remedies

    bb = load_backbone(num_classes=10)
    assert check_remedies("l2sp", FreezePlan.fine_tune().summary(bb)) == (Retain("l2sp", 0.1),)
    assert check_remedies(None, FreezePlan.frozen_head().summary(bb)) == ()
    with pytest.raises(ValueError, match=r"LwF holds the body back while it trains, but this plan trains only the "
                                         r"head: .* nothing of the old task can be forgotten; unfreeze some body"):
        check_remedies(["lwf"], FreezePlan.frozen_head().summary(bb))
    frozen_by_lr = FreezePlan("stage7", lr_mult={"stage7": 0.0, "conv_head": 0.0})  # LR factor 0: not trained
    with pytest.raises(ValueError, match="trains only the head"):
        check_remedies("ewc", frozen_by_lr.summary(bb))
    with pytest.raises(ValueError, match=r"EWC and L2-SP pull weights back .* LoRA \(params='lora'\)"):
        check_remedies([Retain("ewc", 10.0)], FreezePlan("stage7", params="lora").summary(bb))
    assert check_remedies("lwf", FreezePlan("stage7", params="lora").summary(bb)) == (Retain("lwf"),)
    with pytest.raises(ValueError, match=r"L2-SP keeps what a pretrained network knew, but this network starts "
                                         r"from random weights"):
        check_remedies("l2sp", FreezePlan(None).summary(bb), pretrained=False)


def test_fit_refuses_a_remedy_its_plan_cannot_use(digits):
    with pytest.raises(ValueError, match="trains only the head"):
        fit("efficientnet_lite0", digits, plan=FreezePlan.frozen_head(), epochs=1, progress=False,
            save_checkpoints=False, retain="lwf")
    with pytest.raises(ValueError, match="starts from random weights"):
        fit("efficientnet_lite0", digits, plan=FreezePlan(None), pretrained=False, epochs=1, progress=False,
            save_checkpoints=False, retain=Retain("l2sp", 1.0))


def test_a_strength_must_be_a_finite_number():
    for bad in (float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match=r"ewc strength must be a number >= 0; .*the default, 100, is a good"):
            Retain("ewc", bad)
