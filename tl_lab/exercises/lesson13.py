"""Lesson 13, mistakes, camera and export: what cleaning the labels changed, counting the mistakes, why high training
loss finds mislabelled images, and each image's cross-entropy written by hand.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
Every check reads numbers the lesson has already recorded (``lesson.result``): none trains anything.
"""

from __future__ import annotations

import math

from tl_lab.exercises.common import compare
from tl_lab.exercises.questions import Choice, Code, Number, Outcome, Predict, Question, Results

TITLE = "Mistakes, camera and export"

_Q1 = ("clearly higher", "about the same", "clearly lower")

LOSSES_SOLUTION = '''\
import numpy as np

def answer(probabilities, labels):
    """Each image's cross-entropy: minus the log of the probability the model gave its true class."""
    p = np.asarray(probabilities, dtype=float)
    return -np.log(p[np.arange(len(labels)), np.asarray(labels)])
'''


def _test_images(results: Results) -> int:
    return int(results["l13_test_images"])


def _cleaning(results: Results) -> Outcome:
    return compare("l13_cleaned_frozen_head", "l13_frozen_head", _test_images(results), _Q1)(results)


# ---- q4: each image's cross-entropy --------------------------------------------------------------------------

# (probabilities, labels): rows sum to 1; the true class is never the most probable in the second row, and the
# losses differ image by image, so each mistake below gives different numbers
_CASES = (
    ([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]], [0, 2, 1]),
    ([[0.05, 0.9, 0.05], [0.5, 0.3, 0.2]], [1, 1]),
)


def image_losses(probabilities, labels) -> list[float]:
    """The reference: ``-log p[i, y_i]`` (natural log), one value per image."""
    return [-math.log(row[y]) for row, y in zip(probabilities, labels)]


def loss_mistakes(probabilities, labels) -> dict[str, object]:
    """Plausible wrong answers for one case, each with the message a learner gets."""
    right = image_losses(probabilities, labels)
    return {
        "That is one number for the whole split (the mean loss): the question asks for one loss per image.":
            sum(right) / len(right),
        "That is the sum over the split: give one loss per image.": sum(right),
        "You used the probability of the predicted class (the row's largest): the loss is about the TRUE class's "
        "probability.": [-math.log(max(row)) for row in probabilities],
        "The sign is wrong: cross-entropy is minus the log of the probability, so it is never negative.":
            [-v for v in right],
        "You used 1 - p(true class): cross-entropy is -log p(true class), which grows without bound as p -> 0.":
            [1 - row[y] for row, y in zip(probabilities, labels)],
        "That is log base 2 (bits): PyTorch's cross-entropy uses the natural log.":
            [v / math.log(2) for v in right],
    }


def _as_list(value) -> list[float] | float | None:
    try:
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, (int, float)):
            return float(value)
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(a, b))


def _check_losses(fn) -> str | None:
    if not callable(fn):
        return f"Pass a function image_losses(probabilities, labels), not {type(fn).__name__}"
    for probabilities, labels in _CASES:
        got = _as_list(fn(probabilities, labels))
        right = image_losses(probabilities, labels)
        if got is not None and _close(got, right):
            continue
        for message, value in loss_mistakes(probabilities, labels).items():
            if got is not None and _close(got, value):
                return f"For probabilities {probabilities} and labels {labels}: {message}"
        return (f"For probabilities {probabilities} and labels {labels} the losses are "
                f"{[round(v, 4) for v in right]}; your function gives {got}.")
    return None


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 5: the cleaner finds some of the misfiled training images and they go "
                  "back to their true class; the frozen head is trained again on the same split. On the same test "
                  "images, will the test accuracy be clearly higher, about the same, or clearly lower?",
            choices=_Q1,
            needs=("l13_cleaned_frozen_head", "l13_frozen_head", "l13_test_images"),
            measure=_cleaning,
            explanation="A frozen ImageNet body with a linear head cannot bend its features to fit a few wrong "
                        "labels, so a handful of misfiled images among dozens of right ones moves its decision "
                        "boundary only a little, and a few dozen test images cannot show a change smaller than about "
                        "two standard errors (0.14 at 48 images). Cleaning pays when the wrong labels are many, or "
                        "when the model is flexible enough to learn them (fine-tuning, training from scratch).",
            hints=("How much can a linear head on fixed features bend to fit four wrong labels among fifty?",
                   "And how large a change can 48 test images resolve (two standard errors)?"),
            solution_text="answer = 'about the same'   # our fast run (TL_LAB_FAST=1): 0.646 -> 0.625 on 48 images",
        ),
        Number(
            "q2", "From section 4: how many of the test images did the model get wrong? (a count)",
            read=lambda r: r["l13_test_mistakes"],
            tolerance=0.1,  # a count: the answer is a whole number
            mistakes={
                "That is how many it got right: the question asks for the wrong ones.":
                    lambda r: r["l13_test_images"] - r["l13_test_mistakes"],
                "That is the error rate, a fraction: give the number of images.":
                    lambda r: r["l13_test_mistakes"] / r["l13_test_images"],
                "That is the accuracy: give the number of images the model got wrong.":
                    lambda r: r["l13_frozen_head"],
                "That is the number of test images, right and wrong together.": lambda r: r["l13_test_images"],
            },
            needs=("l13_test_mistakes", "l13_test_images"),
            hints=("The first line of m.summary() says it.",
                   "Or the confusion matrix: everything off its diagonal."),
            solution_text="answer = lesson.results()['l13_test_mistakes']",
        ),
        Choice(
            "q3", "Why are the training images with the highest loss where mislabelled images hide?",
            options=("A misfiled image looks like its true class, so a model that learned from the other images "
                     "gives the label written on it a low probability, and its loss, -log p(written label), is high",
                     "Mislabelled images are larger or noisier files, and large inputs give large losses",
                     "The network learns the mislabelled images first, so their loss falls fastest",
                     "Grad-CAM puts the most attribution on mislabelled images, which raises their loss"),
            answer=0,
            why_not={1: "the loss depends on the probability the model gives the written label, not on the file: every "
                        "image is resized to the same pixels first",
                     2: "the opposite: an image whose label disagrees with everything else the model learned is fitted "
                        "last, if at all, so its loss stays high (which is why high loss finds it)",
                     3: "attributions explain a prediction after the fact; they do not change the loss, which the "
                        "model's probabilities alone decide"},
            explanation="Cross-entropy is -log of the probability the model gives the label it was told. An image "
                        "whose label contradicts what the other images taught gets a low probability for that "
                        "label, so its loss stays high: that is why the cleaner shows the highest training losses "
                        "first. A model that trained on the image itself may have memorised its wrong label (a linear head on "
                        "1280 features fits a few wrong labels easily), so judge with one that barely learned from "
                        "it: class-mean prototypes, or a model trained without it. A hard but correctly labelled "
                        "image can rank high too, so a person decides.",
            hints=("Write the loss of one image with p the model's probability for the label it was given.",),
            solution_text="answer = 0",
        ),
        Code(
            "q4", "Write image_losses(probabilities, labels): each image's cross-entropy, given the model's "
                  "probabilities (one row per image, one column per class) and the true labels (class indices), as "
                  "run.mistakes computes them. Checked against the formula on small examples.",
            verify=_check_losses,
            example_call="q4.check(image_losses)",
            hints=("One number per image: look up the probability of that image's TRUE class in its row.",
                   "Cross-entropy is minus the natural log of that probability."),
            solution_text=LOSSES_SOLUTION,
        ),
    ]
