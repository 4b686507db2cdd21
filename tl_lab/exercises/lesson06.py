"""Lesson 06, when transfer fails: domain shift, negative transfer, forgetting.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

import math

from tl_lab.exercises.common import DIGITS_TEST_IMAGES
from tl_lab.exercises.questions import (
    Choice,
    Number,
    Outcome,
    Predict,
    Question,
    binomial_se,
)

TITLE = "When transfer fails"

_STRATEGIES = {"raw pixels": "raw_pixels", "frozen head": "frozen_head", "fine-tuned": "fine_tune"}


def _largest_drop(results) -> Outcome:
    """Which strategy loses most accuracy from clean to inverted digits; clear when the two largest drops differ
    by more than two standard errors of that difference (four accuracies on the 539 test digits)."""
    n = DIGITS_TEST_IMAGES
    acc = {o: (float(results[f"shift_{s}_clean"]), float(results[f"shift_{s}_inverted"]))
           for o, s in _STRATEGIES.items()}
    drop = {o: c - i for o, (c, i) in acc.items()}
    first, second = sorted(drop, key=drop.get, reverse=True)[:2]
    se = math.sqrt(sum(binomial_se(v, n) ** 2 for o in (first, second) for v in acc[o]))
    numbers = {f"shift_{s}_{k}": acc[o][j] for o, s in _STRATEGIES.items() for j, k in enumerate(("clean", "inverted"))}
    detail = ("Drops: " + ", ".join(f"{o} {d:+.3f}" for o, d in drop.items()) +
              f" ({first!r} by {drop[first] - drop[second]:.3f} more than {second!r}).")
    return Outcome(first, numbers, drop[first] - drop[second] > 2 * se, detail)


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 2: trained on clean digits and tested on inverted ones (white on black "
                  "becomes black on white), which loses the most accuracy?",
            choices=tuple(_STRATEGIES),
            needs=tuple(f"shift_{s}_{k}" for s in _STRATEGIES.values() for k in ("clean", "inverted")),
            measure=_largest_drop,
            explanation="A linear classifier on raw pixels learned which pixels are bright: inverting every pixel "
                        "reverses its evidence, so it collapses to chance. Pretrained features respond to edges "
                        "and strokes, which inversion keeps, so they keep most of their accuracy.",
            hints=("What does a weight on a raw pixel mean after every pixel value is flipped?",),
            solution_text="answer = 'raw pixels'",
        ),
        Number(
            "q2", "From section 3: by how much did the detour through digits change clip art's test accuracy, "
                  "compared with going from ImageNet directly? (via digits minus direct; negative if it hurt)",
            read=lambda r: r["nt_imagenet_via_digits"] - r["nt_imagenet_direct"],
            tolerance=0.0015,
            mistakes={
                "That is direct minus via digits: the question asks for via digits minus direct (negative when "
                "the detour hurt).": lambda r: r["nt_imagenet_direct"] - r["nt_imagenet_via_digits"],
                "You compared the detour with the best no-transfer floor (raw pixels); the question compares it "
                "with ImageNet directly.": lambda r: r["nt_imagenet_via_digits"] - r["nt_raw_pixels"],
                "That is the detour's accuracy itself; the question asks for the change.":
                    lambda r: r["nt_imagenet_via_digits"],
            },
            needs=("nt_imagenet_via_digits", "nt_imagenet_direct"),
            hints=("Read the RESULT lines nt_imagenet_via_digits and nt_imagenet_direct.",),
            solution_text="answer = lesson.results()['nt_imagenet_via_digits'] - lesson.results()['nt_imagenet_direct']",
        ),
        Choice(
            "q3", "In section 4, fine-tuning on clip art changed the body's weights by about 0.5 %, yet most of "
                  "ImageNet's top-1 predictions changed. Why?",
            options=(("The old ImageNet head reads the body's last features; small changes to many weights add up "
                      "to features the old head no longer matches"),
                     "Fine-tuning retrained the ImageNet head on clip art",
                     "Clip art images are harder than ImageNet photos",
                     "The frozen body's BatchNorm statistics were reset"),
            answer=0,
            why_not={1: "the 1,000-class ImageNet head was kept as it was; only a new clip-art head was trained",
                     2: "agreement is measured against the same network's own earlier predictions, on the same "
                        "images, so difficulty cancels out",
                     3: "a frozen body (the frozen head plan) kept all of its predictions, BatchNorm included"},
            explanation="Forgetting is about features, not about how far the weights moved: freeze, or fine-tune "
                        "gently, if the old task matters.",
            solution_text="answer = 0",
        ),
    ]
