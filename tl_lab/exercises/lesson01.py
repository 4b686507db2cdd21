"""Lesson 01, what a network sees: first-layer filters, stage-by-stage activity, edges and objects.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

from tl_lab.exercises.common import extreme_of
from tl_lab.exercises.questions import Choice, Number, Predict, Question

TITLE = "What a network sees"


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 3: whose first-layer filters are smoother (neighbouring weights of a "
                  "filter more alike), the pretrained network's or a random one's?",
            choices=("pretrained", "random", "about the same"),
            needs=("filter_smoothness_pretrained", "filter_smoothness_random"),
            measure=_smoother,
            explanation="Training on natural images, whose neighbouring pixels are alike, shapes the first layer "
                        "into smooth edge and colour detectors; a random initialisation draws every weight "
                        "independently, so its neighbours are uncorrelated (smoothness near 0).",
            hints=("Random initialisation draws each weight independently of its neighbours.",),
            solution_text="answer = 'pretrained'",
        ),
        Number(
            "q2", "In section 4, how strongly does stage1's activity follow the cat photo's edges? Give the edge "
                  "alignment your run measured for stage1 (a correlation, e.g. 0.42).",
            read=lambda r: r["cat_edge_alignment_stage1"],
            tolerance=0.0015,
            mistakes={
                "That is the last stage (conv_head); the question asks for stage1, the first stage after the stem.":
                    lambda r: r["cat_edge_alignment_conv_head"],
                "That is stage2; the question asks for stage1 (one stage earlier).":
                    lambda r: r["cat_edge_alignment_stage2"],
                "Give the correlation itself (between -1 and 1), not a percentage.":
                    lambda r: 100 * r["cat_edge_alignment_stage1"],
            },
            needs=("cat_edge_alignment_stage1",),
            hints=("Read the RESULT line cat_edge_alignment_stage1, or the stage1 row printed in section 4.",),
            solution_text="answer = lesson.results()['cat_edge_alignment_stage1']",
        ),
        Choice(
            "q3", "Going up the stages, the grid coarsens (112 → 7) and the activity moves from the outline of a "
                  "shape to the whole object. Why?",
            options=(("Each stage combines a wider neighbourhood of the stage before, so late stages respond to "
                      "larger parts, down to whole objects, on a coarser grid"),
                     "Late stages see a blurred copy of the input image",
                     "Late stages have fewer channels, so they can only represent blobs",
                     "The outline is removed by the normalisation at the input"),
            answer=0,
            why_not={1: "every stage reads the stage before it, not the image; nothing blurs the input",
                     2: "late stages have more channels (up to 1,280 at conv_head), not fewer",
                     3: "the input normalisation shifts and scales colours; it keeps every edge"},
            explanation="Receptive fields grow with depth: stride and stacked convolutions make each late unit see "
                        "a large part of the image, so it can respond to objects rather than to local contrast.",
            hints=("How much of the image does one position of the 7 x 7 grid cover?",),
            solution_text="answer = 0",
        ),
    ]


def _smoother(results):
    out = extreme_of({"pretrained": "filter_smoothness_pretrained", "random": "filter_smoothness_random"},
                     margin=0.1)(results)
    if not out.clear:  # within 0.1 of each other: as smooth as each other
        from tl_lab.exercises.questions import Outcome

        return Outcome("about the same", out.numbers, True, out.detail)
    return out
