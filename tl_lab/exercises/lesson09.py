"""Lesson 09, choosing a backbone: transferability scores, Kendall's tau, pretrained against random init.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

import itertools

import numpy as np

from tl_lab.exercises.common import CLIPART_TEST_IMAGES, best_of
from tl_lab.exercises.questions import Code, Number, Predict, Question

TITLE = "Choosing a backbone"

KENDALL_SOLUTION = '''\
import itertools

def answer(x, y):
    """Kendall's tau (no ties): (concordant - discordant pairs) / all pairs."""
    score = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        a, b = x[i] - x[j], y[i] - y[j]
        score += 1 if a * b > 0 else -1 if a * b < 0 else 0
    return score / (len(x) * (len(x) - 1) / 2)
'''


def _tau_cases() -> list[tuple[list[float], list[float]]]:
    rng = np.random.default_rng(0)
    cases = [([0.1, 0.4, 0.2, 0.9, 0.5], [0.3, 0.5, 0.35, 0.7, 0.6])]
    for n in (5, 8):
        x = rng.normal(size=n)
        cases.append((x.tolist(), (0.5 * x + rng.normal(size=n)).tolist()))
    return cases


def _check_kendall(fn) -> str | None:
    from scipy.stats import kendalltau, spearmanr

    if not callable(fn):
        return f"Pass a function kendall_tau(x, y) -> float, not {type(fn).__name__}"
    for x, y in _tau_cases():
        got = float(fn(list(x), list(y)))
        right = float(kendalltau(x, y).statistic)
        if abs(got - right) < 1e-9:
            continue
        pairs = list(itertools.combinations(range(len(x)), 2))
        net = sum(np.sign((x[i] - x[j]) * (y[i] - y[j])) for i, j in pairs)
        mistakes = {
            "That is the count of concordant minus discordant pairs: divide by the number of pairs, n(n-1)/2.":
                float(net),
            "That is the share of concordant pairs (in [0, 1]); tau is (concordant - discordant) / pairs, in "
            "[-1, 1].": float(sum((x[i] - x[j]) * (y[i] - y[j]) > 0 for i, j in pairs) / len(pairs)),
            "That is Spearman's rank correlation, not Kendall's tau: count pairs ordered the same way.":
                float(spearmanr(x, y).statistic),
            "The sign is reversed: a pair ordered the same way by both lists counts +1.": -right,
            "That is Pearson's correlation of the values; Kendall's tau only counts which of each pair is larger.":
                float(np.corrcoef(x, y)[0, 1]),
        }
        for message, value in mistakes.items():
            if abs(got - value) < 1e-9:
                return message
        return f"For x = {np.round(x, 2).tolist()} your function gives {got:.4f}; Kendall's tau is {right:.4f}."
    return None


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 2: on clip art, which gives the best frozen-head test accuracy: the best "
                  "ImageNet-pretrained Lite network, the best random-init one, or raw pixels?",
            choices=("pretrained", "random init", "raw pixels"),
            needs=("clipart_best_pretrained", "clipart_best_random", "clipart_raw_pixels"),
            measure=best_of({"pretrained": "clipart_best_pretrained", "random init": "clipart_best_random",
                             "raw pixels": "clipart_raw_pixels"}, CLIPART_TEST_IMAGES),
            explanation="On a target close to ImageNet the weights, not the architecture, carry the result: every "
                        "pretrained candidate beats every random-init one, which is why the scores separate the two "
                        "groups easily and the hard part is ranking the pretrained ones.",
            hints=("Lesson 04 separated what the weights buy from what the architecture buys.",),
            solution_text="answer = 'pretrained'",
        ),
        Number(
            "q2", "From section 2: Kendall's tau between LogME and the frozen-head test accuracy on clip art, over "
                  "all candidates (pretrained and random init)?",
            read=lambda r: r["clipart_tau_logme"],
            tolerance=0.006,
            mistakes={
                "That is LEEP's tau; the question asks for LogME's.": lambda r: r["clipart_tau_leep"],
                "That is tau among the pretrained networks only; the question asks over all candidates.":
                    lambda r: r["clipart_tau_logme_pretrained"],
                "That is digits; the question asks about clip art.": lambda r: r["digits_tau_logme"],
            },
            needs=("clipart_tau_logme",),
            hints=("Read the RESULT line clipart_tau_logme.",),
            solution_text="answer = lesson.results()['clipart_tau_logme']",
        ),
        Code(
            "q3", "Write kendall_tau(x, y) for two lists without ties: (pairs ordered the same way - pairs ordered "
                  "oppositely) / number of pairs. It is checked against scipy.stats.kendalltau.",
            verify=_check_kendall,
            example_call="q3.check(kendall_tau)",
            hints=("Loop over every pair i < j: the pair agrees when x[i] - x[j] and y[i] - y[j] have the same sign.",
                   "There are n (n - 1) / 2 pairs."),
            solution_text=KENDALL_SOLUTION,
        ),
    ]
