"""Lesson 10, zero- and few-shot: ImageNet's labels as a classifier, mean or sum scoring, prototypes.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from tl_lab.exercises.common import CLIPART_TEST_IMAGES, compare
from tl_lab.exercises.questions import Choice, Code, Number, Predict, Question

TITLE = "From zero to a few examples: zero-shot and prototypes"

_Q1 = ("prototypes clearly better", "about the same", "zero-shot clearly better")

CLASS_SCORES_SOLUTION = '''\
import numpy as np

def answer(probs, groups):
    """(N, K) zero-shot scores: class k scores the mean of its ImageNet classes' probabilities."""
    return np.stack([probs[:, list(g)].mean(axis=1) for g in groups], axis=1)
'''


def synthetic_probabilities(seed: int = 10) -> tuple[np.ndarray, list[list[int]]]:
    """Softmax-like rows over 40 "ImageNet" classes (12 images) and three target classes that collect 1, 4 and 20
    of them, so that mean, sum and max scores rank the target classes differently."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(40, 0.3), size=12)
    groups = [[3], [5, 9, 17, 30], list(range(20, 40))]
    return probs, groups


def _reference(probs: np.ndarray, groups, score: str) -> np.ndarray:
    from tl_lab.inside.zero_shot import _class_scores

    matches = [SimpleNamespace(classes=tuple(g)) for g in groups]
    return _class_scores(probs, matches, score)


def score_variants(probs: np.ndarray, groups) -> dict[str, np.ndarray]:
    """The reference mean scores (``tl_lab.inside.zero_shot``) and the plausible mistakes, on the same input."""
    return {
        "right": _reference(probs, groups, "mean"),
        "That is the sum of each class's probabilities (score='sum'): a class that collects many ImageNet classes "
        "wins from their small probabilities alone. Divide by the number of ImageNet classes it collects.":
            _reference(probs, groups, "sum"),
        "That takes each class's most probable ImageNet class (the max); the lesson scores the mean over all of "
        "them.": np.stack([probs[:, list(g)].max(axis=1) for g in groups], axis=1),
        "You divided each class's sum by all 1000 (here 40) ImageNet classes, which ranks like the sum; divide by "
        "the number of ImageNet classes that target class collects.":
            _reference(probs, groups, "sum") / probs.shape[1],
    }


def _check_class_scores(fn) -> str | None:
    if not callable(fn):
        return f"Pass a function class_scores(probs, groups) -> (N, K) scores, not {type(fn).__name__}"
    probs, groups = synthetic_probabilities()
    got = np.asarray(fn(probs.copy(), [list(g) for g in groups]), dtype=float)
    n, k = len(probs), len(groups)
    if got.shape == (k, n):
        return f"Your scores are transposed: return one row per image and one column per target class, ({n}, {k})."
    if got.shape != (n, k):
        return (f"Return the scores, one row per image and one column per target class: shape ({n}, {k}), got "
                f"{got.shape} (the prediction is their argmax, taken afterwards)")
    variants = score_variants(probs, groups)
    if np.allclose(got, variants["right"], atol=1e-9):
        return None
    for message, value in variants.items():
        if message != "right" and np.allclose(got, value, atol=1e-9):
            return message
    worst = float(np.abs(got - variants["right"]).max())
    return (f"Your scores differ from tl_lab.inside.zero_shot's mean scores by up to {worst:.4f}: for each target "
            "class take probs[:, its ImageNet classes] and average over those columns.")


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 3: on clip art, which classifies the 153 test drawings better, "
                  "prototypes from ONE labelled drawing per class, or zero-shot with none?",
            choices=_Q1,
            needs=("clipart_prototypes_1", "clipart_zero_shot"),
            measure=compare("clipart_prototypes_1", "clipart_zero_shot", CLIPART_TEST_IMAGES, _Q1),
            explanation="One drawing is a poor summary of a class as varied as 'animal', while the ImageNet head "
                        "already knows hundreds of animals, vehicles and foods: naming the classes well is worth "
                        "more than one labelled example. With about five per class prototypes catch up.",
            hints=(("How much does one drawing of a cat tell you about all 'animal' drawings? And how many animals "
                   "does the ImageNet head know?"),),
            solution_text="answer = 'zero-shot clearly better'   # our run: 0.340 against 0.575",
        ),
        Number(
            "q2", "From section 2 (Mean or sum?): on the plant drawings, by how much did scoring by the mean beat "
                  "scoring by the sum? (per-class accuracy, mean minus sum: a decimal such as 0.07)",
            read=lambda r: r["zero_shot_plant_mean"] - r["zero_shot_plant_sum"],
            tolerance=0.011,  # the table prints two decimals
            mistakes={
                "That is sum minus mean: subtract the sum's plant accuracy from the mean's.":
                    lambda r: r["zero_shot_plant_sum"] - r["zero_shot_plant_mean"],
                "That is the animal row; the question asks about plant.":
                    lambda r: r["zero_shot_animal_mean"] - r["zero_shot_animal_sum"],
                "That is the difference over all 153 test drawings (clipart_zero_shot - clipart_zero_shot_sum); "
                "the question asks about the plant drawings alone.":
                    lambda r: r["clipart_zero_shot"] - r["clipart_zero_shot_sum"],
                "That is the mean's plant accuracy alone; the question asks how much it beats the sum's.":
                    lambda r: r["zero_shot_plant_mean"],
            },
            needs=("zero_shot_plant_mean", "zero_shot_plant_sum"),
            hints=("Read the plant row of the table under 'Mean or sum?': its mean and sum columns.",
                   "Or the RESULT lines zero_shot_plant_mean and zero_shot_plant_sum."),
            solution_text="answer = lesson.results()['zero_shot_plant_mean'] - lesson.results()['zero_shot_plant_sum']",
        ),
        Code(
            "q3", "Write zero-shot's scoring: class_scores(probs, groups) -> (N, K) scores, where probs (N, 1000) are "
                  "the ImageNet head's probabilities and groups[k] lists the ImageNet class indices target class k "
                  "collected; class k scores the MEAN of those probabilities. It is checked against "
                  "tl_lab.inside.zero_shot on small synthetic probabilities.",
            verify=_check_class_scores,
            example_call="q3.check(class_scores)",
            hints=("probs[:, group] picks one target class's columns.",
                   "Average them over axis=1, and stack the K results as columns (np.stack(..., axis=1))."),
            solution_text=CLASS_SCORES_SOLUTION,
        ),
        Choice(
            "q4", "Scored by the sum, zero-shot got animal drawings right far more often than by the mean, and "
                  "plant drawings far less often. Why?",
            options=(("A drawing makes the network unsure, so it spreads small probabilities over hundreds of "
                     "classes; animal collects 398 ImageNet classes and so that spread from every image, whatever "
                     "it shows, while plant's two classes collect almost nothing"),
                     "Summing 1000 small probabilities loses precision, so the sum's scores are noisy",
                     ("There are more animal drawings in the test split, so a score that favours animal is right "
                     "more often"),
                     "The mean ignores most of animal's 398 classes"),
            answer=0,
            why_not={1: "float sums of at most 1000 numbers in [0, 1] are accurate to about 1e-13; the scores "
                        "differ in what they measure, not in precision",
                     2: "a per-class accuracy is measured on that class's drawings alone, so how many there are does "
                        "not favour it",
                     3: "the mean averages every one of the 398 probabilities; it divides their sum by 398 instead "
                        "of ignoring any"},
            explanation="The sum rewards classes that cover many ImageNet classes; the mean divides that coverage "
                        "out, which is why zero_shot scores by the mean unless asked for score='sum'.",
            hints=("How many ImageNet classes does 'animal' collect, and how many does 'plant'?",),
            solution_text="answer = 0",
        ),
    ]
