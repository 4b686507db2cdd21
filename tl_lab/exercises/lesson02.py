"""Lesson 02, feature extraction: classifiers on frozen features, the data-efficiency curve, labels saved.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

import numpy as np

from tl_lab.exercises.common import CLIPART_TEST_IMAGES, compare
from tl_lab.exercises.questions import Choice, Code, Number, Predict, Question

TITLE = "Feature extraction"

NEAREST_MEAN_SOLUTION = '''\
import numpy as np

def answer(train_x, train_y, test_x):
    """Nearest class mean in the centred, L2-normalised feature space."""
    mean = train_x.mean(axis=0)                                   # centre on the training mean
    def unit(z):
        z = z - mean
        return z / np.linalg.norm(z, axis=1, keepdims=True)      # each row to unit length
    z = unit(train_x)
    centroids = np.stack([z[train_y == k].mean(axis=0) for k in range(int(train_y.max()) + 1)])
    distances = ((unit(test_x)[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    return distances.argmin(axis=1)                               # the nearest centroid
'''


def synthetic_features(seed: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small features with a large common offset and rows of very different lengths, so a classifier that skips
    the centring or the normalisation predicts differently: (train_x (40, 6), train_y (40,), test_x (60, 6))."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(4, 6))
    offset = 4.0 * rng.normal(size=6)
    train_y = np.repeat(np.arange(4), 10)
    scale = rng.uniform(0.3, 3.0, size=(100, 1))
    x = (offset + means[np.concatenate([train_y, rng.integers(0, 4, 60)])] + 0.8 * rng.normal(size=(100, 6))) * scale
    return x[:40], train_y, x[40:]


def _variants(train_x, train_y, test_x) -> dict[str, np.ndarray]:
    from tl_lab.inside.prototypes import fit_prototypes

    k = int(train_y.max()) + 1
    fit = {(c, n): fit_prototypes(train_x, train_y, k, center=c, normalize=n) for c, n in ((True, True), (False, True),
                                                                                      (True, False))}
    return {
        "right": fit[True, True].predict(test_x),
        "Your classifier does not centre the features on the training mean first (subtract train_x.mean(axis=0) "
        "from every row, train and test, before normalising).": fit[False, True].predict(test_x),
        "Your classifier does not scale each row to unit length, so long feature vectors dominate (divide each "
        "centred row by its norm; without it, centring changes nothing).": fit[True, False].predict(test_x),
        "Your classifier picks the farthest class mean: take the argmin of the distances (or the argmax of the "
        "negative distances).": fit[True, True].scores(test_x).argmin(axis=1),
    }


def _check_nearest_mean(fn) -> str | None:
    if not callable(fn):
        return f"Pass a function nearest_mean(train_x, train_y, test_x), not {type(fn).__name__}"
    train_x, train_y, test_x = synthetic_features()
    got = np.asarray(fn(train_x.copy(), train_y.copy(), test_x.copy()))
    if got.shape != (len(test_x),):
        return f"Return one class index per test row: shape ({len(test_x)},), got {got.shape}"
    variants = _variants(train_x, train_y, test_x)
    if np.array_equal(got, variants["right"]):
        return None
    for message, pred in variants.items():
        if message != "right" and np.array_equal(got, pred):
            return message
    agree = float((got == variants["right"]).mean())
    return (f"Your predictions agree with the reference (tl_lab.inside.prototypes) on {agree:.0%} of the test rows; "
            "centre on the training mean, scale rows to unit length, average per class, pick the nearest mean.")


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 2: how does a linear head trained on the frozen features compare with a "
                  "linear classifier on raw pixels, on 10-shot clip art?",
            choices=("frozen features clearly better", "about the same", "raw pixels clearly better"),
            needs=("clipart_frozen_head", "clipart_raw_pixels"),
            measure=compare("clipart_frozen_head", "clipart_raw_pixels", CLIPART_TEST_IMAGES,
                            ("frozen features clearly better", "about the same", "raw pixels clearly better")),
            explanation="The frozen body maps each image to 1,280 numbers that already separate objects (it learned "
                        "them from 1.3 million ImageNet photos); raw pixels must be separated from 70 images alone.",
            hints=("How much does a pixel value say about whether a drawing shows an animal or a vehicle?",),
            solution_text="answer = 'frozen features clearly better'",
        ),
        Number(
            "q2", "From section 4: with how many images per class did the frozen head match the best "
                  "from-scratch accuracy in your run?",
            read=lambda r: r["shots_frozen_head_to_match_scratch"],
            tolerance=0.05,
            mistakes={
                "That is how many images per class training from scratch needed for its best result; the question "
                "asks how many the frozen head needed to match it.": lambda r: r["scratch_best_shots"],
                "That is the label-saving factor (scratch's images divided by the frozen head's); the question "
                "asks for the frozen head's images per class.": lambda r: r["label_saving_factor"],
                "That is the accuracy to match; the question asks for a number of images per class.":
                    lambda r: r["scratch_best_acc"],
            },
            needs=("shots_frozen_head_to_match_scratch",),
            hints=("Read the RESULT line shots_frozen_head_to_match_scratch, or the frozen_head row of section 4.",),
            solution_text="answer = lesson.results()['shots_frozen_head_to_match_scratch']",
        ),
        Code(
            "q3", "A third classifier on frozen features: write nearest_mean(train_x, train_y, test_x) -> predicted "
                  "class per test row, the nearest class mean after centring on the training mean and scaling "
                  "each row to unit length. It is checked against tl_lab.inside.prototypes on small synthetic data.",
            verify=_check_nearest_mean,
            example_call="q3.check(nearest_mean)",
            hints=("Centre train and test rows on train_x.mean(axis=0), then divide each row by its norm.",
                   "Average the transformed training rows per class; predict the class whose mean is nearest."),
            solution_text=NEAREST_MEAN_SOLUTION,
        ),
        Choice(
            "q4", "The linear probe and the frozen head measured within a few points of each other. Why?",
            options=(("Both are linear classifiers on the same frozen features; they differ only in how they are "
                      "fitted (a regularised logistic regression chosen on validation, or SGD with early stopping)"),
                     "The probe trains the body too, which makes up for its simpler optimiser",
                     "Both read the raw pixels, so they are the same model",
                     "The frozen head copies the probe's weights"),
            answer=0,
            why_not={1: "the probe trains nothing in the body: it fits a logistic regression on cached features",
                     2: "both read the 1,280 pooled features of the frozen body, not pixels",
                     3: "the two are fitted independently; the head starts from a random initialisation"},
            explanation="Same model family on the same features: small differences come from the fitting and the "
                        "choice of regularisation, not from what they can represent.",
            hints=("What does each of them train, and on what input?",),
            solution_text="answer = 0",
        ),
    ]
