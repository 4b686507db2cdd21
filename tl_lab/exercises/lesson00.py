"""Lesson 00, start here: pretrained features against raw pixels and training from scratch on 10-shot clip art.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

from tl_lab.exercises.common import CLIPART_TEST_IMAGES, best_of
from tl_lab.exercises.questions import Choice, Number, Predict, Question, binomial_se

TITLE = "Start here"


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 3: on 70 labelled clip-art images, which start gives the best test "
                  "accuracy?",
            choices=("raw pixels", "pretrained (frozen head)", "from scratch"),
            needs=("clipart_raw_pixels", "clipart_frozen_head", "clipart_scratch"),
            measure=best_of({"raw pixels": "clipart_raw_pixels", "pretrained (frozen head)": "clipart_frozen_head",
                             "from scratch": "clipart_scratch"}, CLIPART_TEST_IMAGES),
            explanation="ImageNet features already separate objects, so a linear head on them needs few examples; "
                        "a network from scratch has 3.4 million weights to fit from 70 images.",
            hints=("Think about how many numbers each method must learn from 70 images.",
                   "The frozen head learns about 9,000 weights; from scratch learns 3.4 million."),
            solution_text='answer = "pretrained (frozen head)"',
        ),
        Number(
            "q2", "How many points of test accuracy does the pretrained head gain over raw pixels in your run? "
                  "(a difference, e.g. 0.25)",
            read=lambda r: r["clipart_frozen_head"] - r["clipart_raw_pixels"],
            tolerance=0.0015,
            mistakes={
                "That is raw pixels minus pretrained: the question asks how much pretrained *gains*, so subtract "
                "the raw-pixel accuracy from the pretrained one.":
                    lambda r: r["clipart_raw_pixels"] - r["clipart_frozen_head"],
                "You compared with the from-scratch network; the question asks against raw pixels.":
                    lambda r: r["clipart_frozen_head"] - r["clipart_scratch"],
                "That is the pretrained accuracy itself; the question asks for its gain over raw pixels.":
                    lambda r: r["clipart_frozen_head"],
            },
            needs=("clipart_frozen_head", "clipart_raw_pixels"),
            hints=("Read the two RESULT lines: clipart_frozen_head and clipart_raw_pixels.",
                   "Gain = clipart_frozen_head - clipart_raw_pixels."),
            solution_text='answer = lesson.results()["clipart_frozen_head"] - lesson.results()["clipart_raw_pixels"]',
        ),
        Choice(
            "q3", "Your 153 test images give each accuracy a standard error of about "
                  f"{binomial_se(0.6, CLIPART_TEST_IMAGES):.2f}. What does that mean for a 0.03 difference "
                  "between two methods?",
            options=("It is within the noise: another seed or split could reverse it",
                     "It is a real 3-point improvement",
                     "It means the test set is too easy"),
            answer=0,
            why_not={1: "one run on 153 images cannot resolve 3 points: the standard error of a difference is "
                        "about 0.055 here, so 0.03 is well inside it",
                     2: "noise is about how few test images there are, not how easy they are"},
            explanation="Differences smaller than about two standard errors of the difference (~0.11 here) need "
                        "more seeds or more test images before you believe them.",
            hints=("Two standard errors of a difference: 2 * sqrt(se^2 + se^2).",),
            solution_text="answer = 0",
        ),
    ]
