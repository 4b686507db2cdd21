"""Lesson 04, why features transfer: probes at every stage, random-init features, CKA before and after fine-tuning.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

import numpy as np

from tl_lab.exercises.common import DIGITS_TEST_IMAGES, extreme_of
from tl_lab.exercises.questions import (
    Code,
    Number,
    Outcome,
    Predict,
    Question,
    beyond_noise,
)

TITLE = "Why features transfer"

# Lite0's body stages, stem .. conv_head: the lesson reports the best stage's depth as index / 8
_STAGES = ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "conv_head")
_WHERE = ("early (stem to stage3)", "middle (stage4, stage5)", "late (stage6 to conv_head)")

CKA_SOLUTION = '''\
import numpy as np

def answer(x, y):
    """Linear CKA of activations x (n, p) and y (n, q) of the same n examples."""
    x = x - x.mean(axis=0)                        # centre every feature
    y = y - y.mean(axis=0)
    hsic = lambda a, b: np.linalg.norm(b.T @ a) ** 2   # tr(K L) with K = a a^T, L = b b^T (the 1/(n-1)^2 cancels)
    return hsic(x, y) / np.sqrt(hsic(x, x) * hsic(y, y))
'''


def _peak(results) -> Outcome:
    depth = float(results["digits_peak_depth"])
    index = round(depth * (len(_STAGES) - 1))
    where = _WHERE[0] if index <= 3 else _WHERE[1] if index <= 5 else _WHERE[2]
    best, last = float(results["digits_probe_best"]), float(results["digits_probe_conv_head"])
    clear = index == len(_STAGES) - 1 or beyond_noise(best, last, DIGITS_TEST_IMAGES)
    detail = (f"The best stage on validation was {_STAGES[index]}; its test accuracy {best:.3f} against "
              f"{last:.3f} at conv_head ({best - last:+.3f} on {DIGITS_TEST_IMAGES} test images).")
    return Outcome(where, {"digits_peak_depth": depth, "digits_probe_best": best, "digits_probe_conv_head": last},
                   clear, detail)


def cka_variants(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The reference linear CKA and the plausible mistakes, for the same x and y."""
    from tl_lab.inside.cka import _hsic_unbiased, cka

    n = len(x)
    k, l = x @ x.T, y @ y.T
    xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
    kc, lc = xc @ xc.T, yc @ yc.T
    biased = lambda a, b: float(np.vdot(a, b)) / (n - 1) ** 2
    return {
        "right": cka(x, y),
        "You forgot to centre the features (subtract each column's mean, or use H K H with H = I - 11ᵀ/n); "
        "uncentred, a shared offset looks like similarity.": float(np.vdot(k, l) / np.sqrt(np.vdot(k, k) * np.vdot(l, l))),
        "That mixes estimators: the unbiased HSIC for the cross term but the biased one for the normalisation. "
        "Use the same estimator in the numerator and the denominator.":
            _hsic_unbiased(k, l) / np.sqrt(biased(kc, kc) * biased(lc, lc)),
        "That is HSIC(K, L), not CKA: divide by sqrt(HSIC(K, K) HSIC(L, L)) so the result lies in [0, 1].":
            biased(kc, lc),
        "You divided by HSIC(K, K) HSIC(L, L) without the square root.":
            float(np.vdot(kc, lc) / (np.vdot(kc, kc) * np.vdot(lc, lc))),
    }


def sample_matrices(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two related random activation matrices (40 examples, 12 and 20 features) with a large common offset."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 12)) + 3.0
    y = np.concatenate([x @ rng.normal(size=(12, 8)), rng.normal(size=(40, 12))], axis=1) + 1.5
    return x, y


def _check_cka(fn) -> str | None:
    if not callable(fn):
        return f"Pass a function cka(x, y) -> float, not {type(fn).__name__}"
    x, y = sample_matrices()
    got = float(fn(x.copy(), y.copy()))
    variants = cka_variants(x, y)
    if abs(got - variants["right"]) < 1e-6:
        same = float(fn(x.copy(), x.copy()))
        if abs(same - 1.0) > 1e-6:
            return f"cka(x, x) should be 1, got {same:.4f}"
        return None
    for message, value in variants.items():
        if message != "right" and abs(got - value) < 1e-6:
            return message
    return (f"Your function gives {got:.4f} where linear CKA (tl_lab.inside.cka.cka) gives {variants['right']:.4f} "
            "on the same two matrices.")


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 2: on digits (far from ImageNet), at which depth does a linear probe on "
                  "the pretrained features work best?",
            choices=_WHERE,
            needs=("digits_peak_depth", "digits_probe_best", "digits_probe_conv_head"),
            measure=_peak,
            explanation="Low and middle stages hold general features (edges, strokes, simple shapes) that any "
                        "image task can use; the top stages specialise in ImageNet's objects, which digits do "
                        "not contain. For clip art, close to ImageNet, the top is best.",
            hints=("Which features would help tell a 3 from an 8: ImageNet object parts, or strokes and curves?",),
            solution_text="answer = 'middle (stage4, stage5)'",
        ),
        Predict(
            "q2", "Before running section 4: after fine-tuning every stage on clip art, which stage's features "
                  "changed most (lowest CKA between pretrained and fine-tuned)?",
            choices=("stem", "stage4", "conv_head"),
            needs=("cka_stem", "cka_stage4", "cka_conv_head"),
            measure=extreme_of({"stem": "cka_stem", "stage4": "cka_stage4", "conv_head": "cka_conv_head"},
                               lowest=True, margin=0.05),
            explanation="Fine-tuning leaves the low stages almost unchanged (CKA near 1) and rewrites the top: "
                        "general features low, task-specific features high.",
            hints=("Which stages hold the features that any image task needs?",),
            solution_text="answer = 'conv_head'",
        ),
        Code(
            "q3", "Write linear CKA, cka(x, y) for activations x (n, p) and y (n, q) of the same n examples. It is "
                  "checked against tl_lab.inside.cka.cka on random matrices.",
            verify=_check_cka,
            example_call="q3.check(my_cka)",
            hints=("Centre every column of x and y first.",
                   "With centred x, y: CKA = ||yᵀx||²_F / (||xᵀx||_F ||yᵀy||_F)."),
            solution_text=CKA_SOLUTION,
        ),
        Number(
            "q4", "On digits, how much test accuracy does the probe at the best stage gain over the probe at the "
                  "last stage (conv_head)? (a difference, e.g. 0.10)",
            read=lambda r: r["digits_probe_best"] - r["digits_probe_conv_head"],
            tolerance=0.0015,
            mistakes={
                "That is conv_head minus the best stage: subtract the last stage's accuracy from the best one's.":
                    lambda r: r["digits_probe_conv_head"] - r["digits_probe_best"],
                "That is clip art's gain; the question asks about digits.":
                    lambda r: r["clipart_probe_best"] - r["clipart_probe_conv_head"],
                "That compares the best stage with raw pixels; the question asks against the last stage.":
                    lambda r: r["digits_probe_best"] - r["digits_raw_pixels"],
            },
            needs=("digits_probe_best", "digits_probe_conv_head"),
            hints=("Read the RESULT lines digits_probe_best and digits_probe_conv_head.",),
            solution_text="answer = lesson.results()['digits_probe_best'] - lesson.results()['digits_probe_conv_head']",
        ),
    ]
