"""The loss-term protocol: a term defined only here changes the loss by exactly its value, is recorded, compared on
resume and refused by rerun; the loop itself names no feature; checkpoints kept as a term asks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tl_lab.backbones.registry import load_backbone
from tl_lab.data.datasets import load_dataset
from tl_lab.training.events import BatchEnd, EpochEnd, StopToken
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit
from tl_lab.training.terms import Batch, LossTerm, Tap, TermContext, terms_from_config


class HeadL2(LossTerm):
    """``c * ||W||^2`` on the head's classifier weights; remembers each batch's value."""

    name = "head_l2"

    def __init__(self, c: float, *, keep: str = "best_val") -> None:
        self.c, self.keep = c, keep
        self.values: list[float] = []

    def setup(self, ctx: TermContext) -> None:
        head = ctx.backbone.model.get_submodule(ctx.backbone.head)
        self.weight = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1].weight  # the new classifier

    def loss(self, batch: Batch) -> torch.Tensor:
        value = self.c * self.weight.pow(2).sum()
        self.values.append(value.item())
        return value

    def config(self) -> dict:
        return {"kind": "test_head_l2", "name": self.name, "c": self.c}


class ReadsStage6(LossTerm):
    """A term that taps a stage inside the cached prefix without asking for the full forward pass."""

    name = "reads_stage6"
    taps = (Tap("stage6"),)

    def loss(self, batch: Batch) -> torch.Tensor:
        return batch.taps[self.taps[0]].sum() * 0


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", shots=5, seed=0, image_size=32, val_per_class=2)


def _run(data, *, terms=(), **kw):
    losses: list[float] = []
    kw.setdefault("epochs", 3)
    run = fit(load_backbone(num_classes=10, seed=0), data, terms=terms, progress=False, batch_size=16,
              callbacks=[lambda e: losses.append(e.loss) if isinstance(e, BatchEnd) else None, *kw.pop("callbacks", [])],
              **{"save_checkpoints": False, **kw})
    return run, losses


def test_a_term_defined_in_a_test_changes_the_loss_by_exactly_its_value(digits):
    c = 1e-3
    w0 = load_backbone(num_classes=10, seed=0).model.get_submodule("head").classifier[-1].weight.detach()
    plain, plain_losses = _run(digits)
    term = HeadL2(c)
    run, losses = _run(digits, terms=[term])
    # the first batch: the same weights, so the same task loss plus c * ||W0||^2 (by hand)
    assert term.values[0] == pytest.approx(c * w0.pow(2).sum().item(), rel=1e-6)
    assert losses[0] == pytest.approx(plain_losses[0] + c * w0.pow(2).sum().item(), rel=1e-6)
    # every epoch: train_loss = train_task_loss + term_head_l2, each a mean per example of the batches' values
    n = len(digits.train)
    sizes = [min(16, n - i) for i in range(0, n, 16)]  # one epoch's batches
    assert len(term.values) == 3 * len(sizes)
    for e, h in enumerate(run.history):
        vals = term.values[e * len(sizes) : (e + 1) * len(sizes)]
        assert h["term_head_l2"] == pytest.approx(sum(v * k for v, k in zip(vals, sizes)) / n, rel=1e-6)
        assert h["train_loss"] == pytest.approx(h["train_task_loss"] + h["term_head_l2"], rel=1e-6)
    assert all(h["train_task_loss"] == h["train_loss"] and not any(k.startswith("term_") for k in h)
               for h in plain.history)
    assert run.config["terms"] == [{"kind": "test_head_l2", "name": "head_l2", "c": c}]
    assert "terms" not in plain.config


def test_loop_names_no_feature():
    """loop.py loops over terms: no branch tests a named feature (retention, confusion, tasks ...)."""
    source = (Path(__file__).parents[1] / "tl_lab" / "training" / "loop.py").read_text()
    branches = [line for line in source.splitlines() if re.match(r"\s*(if|elif|while)\b|.*\bif\b.*\belse\b", line)]
    named = [line for line in branches if re.search(r"retention|confusion|tasks|multitask|retain|adapt_to|lwf|ewc|"
                                                    r"l2sp|dann", line)]
    assert named == []
    import tl_lab.training.loop as loop

    assert not {"Retention", "RetainTerm", "DomainConfusion", "Tasks", "MultiTask"} & set(vars(loop))  # nor imports one


def test_rerun_refuses_a_term_it_cannot_rebuild_and_repeats_a_registered_one(digits, tmp_path, monkeypatch):
    import tl_lab.training.terms as terms_module
    from tl_lab.app.rerun import run_from_config

    run, _ = _run(digits, terms=[HeadL2(1e-3)], epochs=2, run_dir=tmp_path / "a", save_checkpoints=True)
    with pytest.raises(ValueError, match=r"cannot rerun: the loss term 'head_l2' \(kind 'test_head_l2'\) was defined "
                                         r"outside tl_lab"):
        run_from_config(run.config, run_dir=tmp_path / "b", progress=False)
    monkeypatch.setitem(terms_module._KINDS, "test_head_l2", lambda cfg: HeadL2(cfg["c"]))
    again = run_from_config(run.config, run_dir=tmp_path / "b", progress=False)
    assert again.config["terms"] == run.config["terms"]
    assert [h["term_head_l2"] for h in again.history] == pytest.approx([h["term_head_l2"] for h in run.history])


def test_a_resume_with_other_terms_is_refused_by_name(digits, tmp_path):
    stop = StopToken()

    def stop_after_first(event):
        if isinstance(event, EpochEnd):
            stop.stop("test stop")

    first, _ = _run(digits, terms=[HeadL2(1e-3)], run_dir=tmp_path / "cut", save_checkpoints=True, stop=stop,
                    callbacks=[stop_after_first])
    assert first.stopped_early
    with pytest.raises(ValueError, match=r"these differ: terms \(was head_l2\(c=0.001\), now head_l2\(c=0.002\)\)"):
        _run(digits, terms=[HeadL2(2e-3)], resume=tmp_path / "cut", save_checkpoints=True)
    with pytest.raises(ValueError, match=r"these differ: terms \(was head_l2\(c=0.001\), now none\)"):
        _run(digits, resume=tmp_path / "cut", save_checkpoints=True)
    resumed, _ = _run(digits, terms=[HeadL2(1e-3)], resume=tmp_path / "cut", save_checkpoints=True)
    assert len(resumed.history) == 3


def test_a_term_can_keep_the_last_epoch_instead_of_the_best(digits):
    best, _ = _run(digits, terms=[HeadL2(1e-3)], epochs=6, lr=0.3)  # a rate that overshoots: best is not last
    last, _ = _run(digits, terms=[HeadL2(1e-3, keep="last")], epochs=6, lr=0.3)
    assert [h["val_acc"] for h in best.history] == [h["val_acc"] for h in last.history]
    assert last.best["epoch"] == 6 and last.best["kept"] == "last"
    assert last.best["val_acc"] == last.history[-1]["val_acc"]
    assert best.best["val_acc"] == max(h["val_acc"] for h in best.history)
    with pytest.raises(ValueError, match=r"disagree on which checkpoint to keep \(head_l2: last, h2: best_val\)"):
        other = HeadL2(1.0)
        other.name = "h2"
        _run(digits, terms=[HeadL2(1e-3, keep="last"), other], epochs=1)


def test_bad_terms_are_clear_errors(digits):
    with pytest.raises(TypeError, match="terms must be loss terms"):
        _run(digits, terms=[lambda batch: 0], epochs=1)
    with pytest.raises(ValueError, match="two loss terms share the name 'head_l2'"):
        _run(digits, terms=[HeadL2(1.0), HeadL2(2.0)], epochs=1)
    bb = load_backbone(num_classes=10, seed=0)
    with pytest.raises(RuntimeError, match=r"need the output of 'stage6', which did not run .* full_forward = True"):
        fit(bb, digits, terms=[ReadsStage6()], epochs=1, progress=False, save_checkpoints=False)
    assert not bb.model.get_submodule("stage6")._forward_hooks  # the loop's taps are gone after a fault too


# ---- domain confusion: recorded so a rerun repeats it, or refuses by name ------------------------------------------


@pytest.mark.slow
def test_domain_confusion_reruns_from_its_record_and_a_resume_without_it_is_refused(tmp_path):
    from tl_lab.app.rerun import run_from_config
    from tl_lab.data.shifts import unlabelled_target
    from tl_lab.training.domain_confusion import DomainConfusion, UnlabelledTarget

    data = load_dataset("digits", shots=2, image_size=32, val_per_class=1)
    kw = dict(plan=FreezePlan.fine_tune(), epochs=2, batch_size=10, progress=False)
    run = fit("efficientnet_lite0", data, adapt_to=UnlabelledTarget("inverted", n=24), run_dir=tmp_path / "a", **kw)
    rec = run.config["terms"][0]
    assert rec["target"] == {"shift": "inverted", "n": 24, "seed": 0} and rec["images"] == 24
    assert rec["keep"] == "best_val" and run.config["adapt_to"]["target"] == rec["target"]
    again = run_from_config(run.config, run_dir=tmp_path / "b", progress=False)
    assert again.config["terms"] == run.config["terms"]  # the same 24 target images (their sha256 too)
    for key in ("train_loss", "train_task_loss", "term_domain_confusion", "domain_acc", "dann_lambda"):
        assert [h[key] for h in again.history] == pytest.approx([h[key] for h in run.history], rel=1e-5), key
    with pytest.raises(ValueError, match=r"these differ: terms \(was domain_confusion\(target=\{'shift': 'inverted'.*"
                                         r"now none\)"):
        fit("efficientnet_lite0", data, resume=tmp_path / "a", **kw)
    # images given as a tensor: recorded by count and fingerprint; a rerun refuses, saying why
    pool = unlabelled_target(data, "inverted", n=24)
    kept_last = fit("efficientnet_lite0", data, terms=[DomainConfusion(pool, keep="last")], save_checkpoints=False,
                    **kw)
    assert kept_last.best["epoch"] == 2 and kept_last.config["terms"][0]["keep"] == "last"
    assert kept_last.config["terms"][0]["sha256"] == rec["sha256"]  # the same images as UnlabelledTarget drew
    with pytest.raises(ValueError, match=r"cannot rerun: this run's domain confusion trained towards 24 target "
                                         r"images given as images .* adapt_to=UnlabelledTarget"):
        run_from_config(kept_last.config, run_dir=tmp_path / "c", progress=False)


def test_an_old_domain_confusion_record_is_refused_by_rerun():
    """run.json files written before terms were recorded hold only the image count and stage."""
    old = {"adapt_to": {"images": 200, "stage": "stage7"}, "retain": ["lwf 1"]}
    with pytest.raises(ValueError, match="cannot rerun: this run's domain confusion trained towards 200 target images"):
        terms_from_config(old)
    assert [t.name for t in terms_from_config({"retain": ["lwf 1", "ewc 250"]})["terms"]] == ["lwf", "ewc"]
    assert terms_from_config({"tasks": {"shape": {"weight": 0.5}, "colour": {"weight": 1.0}}}) == {
        "tasks": {"shape": 0.5, "colour": 1.0}}
