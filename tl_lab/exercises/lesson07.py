"""Lesson 07, your own data: a folder of images, its report, which plan works, the confusion matrix.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

import numpy as np

from tl_lab.exercises.common import best_of
from tl_lab.exercises.questions import Code, Number, Outcome, Predict, Question

TITLE = "Your own data"

_PLANS = {"raw pixels": "folder_raw_pixels", "from scratch": "folder_scratch", "frozen head": "folder_frozen_head",
          "late stages": "folder_late_stages"}

ACCURACY_SOLUTION = '''\
import numpy as np

def answer(matrix):
    """Accuracy from a confusion matrix (rows: true class, columns: predicted class)."""
    matrix = np.asarray(matrix)
    return np.trace(matrix) / matrix.sum()        # correct predictions / all predictions
'''


def _best_plan(results) -> Outcome:
    return best_of(_PLANS, int(results["folder_test_images"]))(results)


def sample_confusion_matrix() -> np.ndarray:
    """An unbalanced 3-class confusion matrix on which accuracy, balanced accuracy and the error rate all differ."""
    return np.array([[30, 2, 0], [5, 4, 1], [1, 0, 7]])


def _check_accuracy(fn) -> str | None:
    if not callable(fn):
        return f"Pass a function accuracy(matrix) -> float, not {type(fn).__name__}"
    m = sample_confusion_matrix()
    got = float(fn(m.copy()))
    right = np.trace(m) / m.sum()
    if abs(got - right) < 1e-9:
        return None
    mistakes = {
        "That is the error rate (the wrong predictions' share): accuracy is the diagonal's share.": 1 - right,
        "That is the number of correct predictions: divide the diagonal's sum by the total.": float(np.trace(m)),
        "That is the mean of the per-class recalls (balanced accuracy); accuracy counts every image once: the "
        "diagonal's sum over the total.": float(np.mean(np.diag(m) / m.sum(axis=1))),
        "That is the first class's recall only: sum the whole diagonal.": float(m[0, 0] / m[0].sum()),
    }
    for message, value in mistakes.items():
        if abs(got - value) < 1e-9:
            return message
    return f"Your function gives {got:.4f}; the accuracy of this matrix is {right:.4f}."


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 4: on this small folder (four classes, a few dozen images each), which "
                  "plan reaches the best test accuracy?",
            choices=tuple(_PLANS),
            needs=(*_PLANS.values(), "folder_test_images"),
            measure=_best_plan,
            explanation="With little data, start from pretrained features: the frozen head and the late-stages plan "
                        "need few examples; raw pixels and from scratch have to learn everything from the folder. "
                        "Whether training the late stages beats the frozen head depends on the data and is within "
                        "the noise of a small test split.",
            hints=("How many images does each plan have to learn its features from?",),
            solution_text="answer = 'frozen head'",
        ),
        Number(
            "q2", "From section 3: how many files did the loader skip (and report) in your run?",
            read=lambda r: r["folder_files_skipped"],
            tolerance=0.5,
            mistakes={
                "That is the number of images loaded; the question asks how many files were skipped.":
                    lambda r: r["folder_images_loaded"],
                "That counts every file, loaded and skipped; the question asks for the skipped ones only.":
                    lambda r: r["folder_images_loaded"] + r["folder_files_skipped"],
                "That is the number of test images; the question asks how many files the loader skipped.":
                    lambda r: r["folder_test_images"],
            },
            needs=("folder_files_skipped",),
            hints=("The report under the summary lists every skipped file, and why.",),
            solution_text="answer = lesson.results()['folder_files_skipped']",
        ),
        Code(
            "q3", "Write accuracy(matrix): the accuracy of a confusion matrix (rows: true class, columns: "
                  "predicted class), as section 5 computes it.",
            verify=_check_accuracy,
            example_call="q3.check(accuracy)",
            hints=("The diagonal holds the correct predictions.",),
            solution_text=ACCURACY_SOLUTION,
        ),
    ]
