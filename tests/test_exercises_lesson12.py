"""Checked exercises of lesson 12: the LwF prediction is held against the recorded agreements with the binomial noise
of the images they were measured on, the number's tolerance is that noise, and the LoRA count of a convolution is
checked against peft's real factors and rejects the plausible mistakes, each with its own message (STYLE 19). The
checks every lesson shares run for 12 in test_exercises_lessons.py."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest

from tl_lab import exercises
from test_exercises_lessons import RUNS


def test_lesson12_has_one_question_of_every_kind():
    kinds = sorted(q.kind for q in exercises.lesson("12"))
    assert kinds == ["choice", "code", "number", "predict"]
    assert exercises.totals()["12"] == 4 and list(exercises.totals()).index("12") == 12  # registered in order


def test_lwf_prediction_names_the_measured_agreements_and_the_noise():
    q = exercises.lesson("12").q1
    q.predict("LwF keeps clearly more")
    assert q.check(results={"agree_fine_tune": 0.176}).correct is None  # section 3 not run yet
    r = q.check(results=RUNS["12"])
    # 0.011 apart on 539 images: two standard errors of the difference are 0.047
    assert r.correct is False and r.message.startswith("Your run disagrees with 'LwF keeps clearly more'")
    assert "agree_lwf = 0.187, agree_fine_tune = 0.176 ('about the same')" in r.message
    assert "within the noise of the test split" in r.message
    assert "agree_lwf - agree_fine_tune = +0.011 (on 539 test images)" in r.message and q.explanation in r.message
    q.predict("LwF keeps clearly more")
    clear = q.check(results={**RUNS["12"], "agree_lwf": 0.30})
    assert clear.correct is True and "beyond the noise" in clear.message


def test_lwf_prediction_uses_the_number_of_images_the_run_recorded():
    q = exercises.lesson("12").q1
    q.predict("about the same")
    run = {**RUNS["12"], "agree_lwf": 0.236}  # +0.060: beyond the noise of 539 images (0.049), within that of 100
    assert q.check(results=run).correct is False
    r = q.check(results={**run, "agree_images": 100})
    assert r.correct is True and "(on 100 test images)" in r.message


def test_number_tolerance_is_one_standard_error_of_the_agreement():
    q = exercises.lesson("12").q2
    se = math.sqrt(0.176 * 0.824 / 539)  # 0.0164
    assert q.check(0.824 + 0.9 * se, results=RUNS["12"]).correct is True
    assert q.check(0.824 + 1.2 * se, results=RUNS["12"]).correct is False
    # LwF's loss is 0.011 from fine-tuning's in the recorded run (within the noise): accepted there, named here
    r = q.check(0.70, results={**RUNS["12"], "agree_lwf": 0.30})
    assert r.correct is False and "That is what LwF lost" in r.message


@pytest.mark.slow  # importing peft takes seconds
def test_conv_lora_count_against_peft():
    pytest.importorskip("peft")
    from torch import nn

    from tl_lab.exercises.lesson12 import _CONV_CASES, conv_lora_parameters
    from tl_lab.training.peft_params import add_lora

    for c_in, c_out, k, rank in _CONV_CASES[:3]:
        model = nn.Sequential(OrderedDict(stage=nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2))))
        assert add_lora(model, ["stage"], rank=rank) == 1
        added = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
        assert added == conv_lora_parameters(c_in, c_out, k, rank), (c_in, c_out, k, rank)


def test_conv_lora_mistakes_each_get_their_own_message():
    from tl_lab.exercises.lesson12 import conv_lora_mistakes

    values = list(conv_lora_mistakes(16, 24, 3, 4).values())
    assert len(set(values)) == len(values) and 672 not in values  # every mistake shows on the first case
    q = exercises.lesson("12").q4
    assert q.check(lambda i, o, k, r: r * (i * k * k + o)).correct is True
    cases = [(lambda i, o, k, r: r * (i + o), "a Linear layer's count"),
             (lambda i, o, k, r: r * (i + o) * k * k, "only A is a k x k convolution"),
             (lambda i, o, k, r: r * (i * k + o), "counted the kernel once"),
             (lambda i, o, k, r: r * r * (i * k * k + o), "squared the rank"),
             (lambda i, o, k, r: r * (i * k * k + o) + o, "added the layer's bias"),
             (lambda i, o, k, r: o * i * k * k, "the full weight"),
             (lambda i, o, k, r: (r + 1) * (i * k * k + o), "off by one rank"),
             (lambda i, o, k, r: r * (i * k * k + o) if k == 3 else 0, "Conv2d(40, 112, kernel_size=1) at rank 8 "
                                                                         "LoRA adds 1216 parameters; your function "
                                                                         "says 0"),
             ("lora", "Pass a function")]
    for fn, message in cases:
        r = q.check(fn)
        assert r.correct is False and message in r.message, (message, r.message)
    assert "For Conv2d(16, 24, kernel_size=3) at rank 4:" in q.check(lambda i, o, k, r: r * (i + o)).message
