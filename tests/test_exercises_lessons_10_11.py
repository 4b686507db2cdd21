"""Checked exercises of lessons 10 and 11: every checker accepts its right answer and rejects the plausible
mistakes, each with its own message (STYLE 19); predictions are judged on recorded numbers with the test split's
binomial noise. The checks every lesson shares (each solution passes on a recorded run, the notebook cells, the
answer cells filled and unfilled) run for 10 and 11 in test_exercises_lessons.py."""

from __future__ import annotations

import copy

import numpy as np
import torch

from tl_lab import exercises
from test_exercises_lessons import RUNS  # the recorded runs and solutions, shared with 01-09

LESSONS = ("10", "11")


def test_both_lessons_are_registered_with_four_questions_of_every_kind():
    totals = exercises.totals()
    for key in LESSONS:
        kinds = sorted(q.kind for q in exercises.lesson(key))
        assert totals[key] == 4 and kinds == ["choice", "code", "number", "predict"], (key, kinds)
        for q in exercises.lesson(key):  # solutions start as these lessons' answer cells do
            assert q.solution_text.lstrip().startswith(("answer =", "import")), (key, q.id)
        for q in exercises.lesson(key):
            assert isinstance(q.hints, (tuple, list)) and all(len(h) > 20 for h in q.hints), (key, q.id)


# ---- predictions: held against the recorded numbers, with the test split's noise ----------------------------------

def test_lesson10_one_shot_prototypes_against_zero_shot():
    q = exercises.lesson("10").q1
    assert q.check(results=RUNS["10"]).correct is None  # no prediction yet
    q.predict("prototypes clearly better")
    assert q.check(results={"clipart_zero_shot": 0.575}).correct is None  # section 3 not run yet
    r = q.check(results=RUNS["10"])
    assert r.correct is False and r.message.startswith("Your run disagrees with 'prototypes clearly better'")
    assert "('zero-shot clearly better')" in r.message and "beyond the noise" in r.message
    assert "clipart_prototypes_1 - clipart_zero_shot = -0.235 (on 153 test images)" in r.message
    assert q.explanation in r.message
    # 0.08 apart on 153 images: two standard errors of the difference are 0.112, so a run cannot tell them apart
    q.predict("about the same")
    close = q.check(results={**RUNS["10"], "clipart_prototypes_1": 0.495})
    assert close.correct is True and "within the noise" in close.message


def test_lesson11_naive_adabn_collapses_beyond_the_noise():
    q = exercises.lesson("11").q1
    q.predict("AdaBN clearly helps")
    r = q.check(results=RUNS["11"])
    assert r.correct is False and "('AdaBN clearly hurts')" in r.message and "beyond the noise" in r.message
    assert "inverted_adabn_naive - inverted_frozen_head = -0.280 (on 539 test images)" in r.message
    q.predict("about the same")  # 0.04 apart on 539 digits is within two standard errors (0.060)
    assert q.check(results={**RUNS["11"], "inverted_adabn_naive": 0.381}).correct is True
    assert q.check(results={**RUNS["11"], "inverted_adabn_naive": 0.351}).correct is False  # 0.07: beyond


# ---- numbers: each plausible misreading gets its own message -------------------------------------------------------


def test_lesson10_plant_difference_is_read_from_two_decimals():
    q = exercises.lesson("10").q2
    run = {**RUNS["10"], "zero_shot_plant_mean": 0.5556, "zero_shot_plant_sum": 0.1111}  # 10/18 and 2/18
    assert q.check(0.56 - 0.11, results=run).correct is True  # the table's rounded values
    assert q.check(0.42, results=run).correct is False


# ---- code answers: run against the reference, mistakes named -------------------------------------------------------

def test_lesson10_class_scores_against_zero_shot():
    from tl_lab.exercises.lesson10 import score_variants, synthetic_probabilities

    probs, groups = synthetic_probabilities()
    variants = score_variants(probs, groups)
    right = variants["right"]
    assert np.allclose(right[:, 1], probs[:, [5, 9, 17, 30]].mean(axis=1))  # the reference is the mean
    # the mistakes rank the classes differently from the mean on this data, so a wrong function shows in predictions
    assert all((v.argmax(1) != right.argmax(1)).any() for k, v in variants.items() if k != "right")
    q = exercises.lesson("10").q3
    assert q.check(lambda p, g: np.stack([p[:, g_].mean(axis=1) for g_ in g], axis=1)).correct is True
    cases = [(lambda p, g: np.stack([p[:, g_].sum(axis=1) for g_ in g], axis=1), "That is the sum"),
             (lambda p, g: np.stack([p[:, g_].max(axis=1) for g_ in g], axis=1), "most probable ImageNet class"),
             (lambda p, g: np.stack([p[:, g_].sum(axis=1) / p.shape[1] for g_ in g], axis=1), "divided each class's sum by all"),
             (lambda p, g: np.stack([p[:, g_].mean(axis=1) for g_ in g]), "transposed"),
             (lambda p, g: np.stack([p[:, g_].mean(axis=1) for g_ in g], axis=1).argmax(1), "Return the scores"),
             (lambda p, g: np.stack([np.log(p[:, g_]).mean(axis=1) for g_ in g], axis=1), "differ from tl_lab.inside"),
             ("mean", "Pass a function")]
    for fn, message in cases:
        r = q.check(fn)
        assert r.correct is False and message in r.message, (message, r.message)


def _adabn(*, copy_model=True, train_bn=True, reset=True, momentum=None, weights=False, eval_after=True):
    def fn(model, batches):
        new = copy.deepcopy(model) if copy_model else model
        new.eval()
        for bn in (m for m in new.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            if reset:
                bn.reset_running_stats()
            bn.momentum = momentum
            bn.train(train_bn)
            if weights:
                bn.weight.data.mul_(2.0)
        with torch.no_grad():
            for x in batches:
                new(x)
        if eval_after:
            new.eval()
        return new

    return fn


def test_lesson11_reference_is_adapt_bn_and_matches_batch_statistics():
    from tl_lab.exercises.lesson11 import _bn_stats, reference_adabn, source_and_target

    model, target, batches = source_and_target()
    adapted = reference_adabn(copy.deepcopy(model), target)
    stem_input = torch.cat(batches)  # the first BatchNorm's statistics: its input's mean and unbiased variance,
    with torch.no_grad():            # averaged over the three batches of 4
        per_batch = [model.stem[0](b) for b in batches]
    mean = torch.stack([a.mean(dim=(0, 2, 3)) for a in per_batch]).mean(0)
    var = torch.stack([a.var(dim=(0, 2, 3), unbiased=True) for a in per_batch]).mean(0)
    (m, v), _ = _bn_stats(adapted)
    assert torch.allclose(m, mean, atol=1e-5) and torch.allclose(v, var, atol=1e-4)
    assert len(stem_input) == len(target) == 12


def test_lesson11_adabn_against_the_reference():
    q = exercises.lesson("11").q4
    assert q.check(_adabn()).correct is True
    cases = [(_adabn(train_bn=False, reset=False), "still hold the source statistics"),
             (_adabn(train_bn=False), "freshly reset statistics"),
             (_adabn(reset=False, momentum=0.1), "mix the source's with the target's"),
             (_adabn(momentum=0.1), "kept the default momentum 0.1"),
             (_adabn(momentum=1.0), "the last batch's alone"),
             (_adabn(copy_model=False), "changed the model it was given"),
             (_adabn(weights=True), "changed the weight stem.1.weight"),
             (_adabn(eval_after=False), "return the model in eval mode"),
             (lambda m, b: _adabn()(m, b[:1]), "differ from tl_lab.adapt_bn's"),
             (lambda m, b: None, "Return the adapted model"),
             ("adabn", "Pass a function")]
    for fn, message in cases:
        r = q.check(fn)
        assert r.correct is False and message in r.message, (message, r.message)
