"""Lesson 03, fine-tuning and freezing: how much of the network to train, at which rates, and BatchNorm.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

from tl_lab.exercises.common import CLIPART_TEST_IMAGES, best_of
from tl_lab.exercises.questions import Choice, Code, Number, Predict, Question

TITLE = "Fine-tuning and freezing"

_FROM_STAGE6 = ("stage6", "stage7", "conv_head", "head")


def _plan_from_stage6_with_fixed_bn(plan) -> str | None:
    """The reference: ``FreezePlan("stage6", bn="eval")`` trains exactly stage6 onward and updates no BN stats."""
    from tl_lab.backbones.registry import load_backbone
    from tl_lab.training.freeze import FreezePlan

    if not isinstance(plan, FreezePlan):
        return f"Pass a tl_lab.FreezePlan, not {type(plan).__name__}: e.g. tl_lab.FreezePlan('stage7', bn='train')"
    layout = plan.summary(load_backbone("efficientnet_lite0", pretrained=False))
    trains = tuple(layout.trainable_stages)
    if trains != _FROM_STAGE6:
        if trains == ("head",):
            return "That plan trains only the head: stage6 and everything after it should train too."
        if "stem" in trains:
            return "That plan freezes nothing: the stem and stages 1-5 should stay frozen."
        extra = [s for s in trains if s not in _FROM_STAGE6]
        if extra:
            return f"That plan also trains {', '.join(extra)}: training should start at stage6."
        return f"That plan leaves {', '.join(s for s in _FROM_STAGE6 if s not in trains)} frozen: start at stage6."
    if plan.bn != "eval":
        return (f"The right stages train, but with bn={plan.bn!r} the trainable stages' BatchNorm layers still "
                "update their running statistics: bn='eval' keeps every layer's statistics fixed.")
    return None


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running the sweep (section 3): on 10-shot clip art, which trains to the better test "
                  "accuracy?",
            choices=("head only", "fine-tune all"),
            needs=("sweep_head_only", "sweep_fine_tune_all"),
            measure=best_of({"head only": "sweep_head_only", "fine-tune all": "sweep_fine_tune_all"},
                            CLIPART_TEST_IMAGES),
            explanation="With 70 images, training the whole body can overfit and wash out useful ImageNet "
                        "features; with the body at a tenth of the head's rate it can also adapt them. Which wins "
                        "depends on the data and the budget, which is why the lesson measures it.",
            hints=("How many images per class are there, and how many weights does 'fine-tune all' move?",),
            solution_text='answer = "fine-tune all"   # what our full-size run measured; yours may differ',
        ),
        Code(
            "q2", "Write the FreezePlan that trains exactly from stage6 onward, with every BatchNorm layer's "
                  "statistics fixed.",
            verify=_plan_from_stage6_with_fixed_bn,
            example_call="q2.check(tl_lab.FreezePlan(...))",
            hints=("FreezePlan's first argument names the first stage that trains.",
                   "bn='frozen' fixes only the frozen stages' statistics; another value fixes all of them."),
            solution_text="answer = tl_lab.FreezePlan('stage6', bn='eval')",
        ),
        Number(
            "q3", "What fraction of Lite0's parameters trains under FreezePlan('stage6')? (a number between 0 "
                  "and 1)",
            read=lambda r: r["trainable_fraction_from_stage6"],
            tolerance=0.0015,
            mistakes={
                "That is the frozen fraction: the question asks for the fraction that trains.":
                    lambda r: 1 - r["trainable_fraction_from_stage6"],
                "Give a fraction between 0 and 1, not a percentage.":
                    lambda r: 100 * r["trainable_fraction_from_stage6"],
            },
            needs=("trainable_fraction_from_stage6",),
            hints=("The plan's summary table counts trainable and total parameters.",),
            solution_text='answer = lesson.results()["trainable_fraction_from_stage6"]   # summary.trainable / summary.total',
        ),
        Choice(
            "q4", "With the whole body frozen, bn='train' collapsed test accuracy (section 5). Why?",
            options=("The frozen stages' BatchNorm layers kept rewriting their running statistics from tiny "
                     "batches, so test-time features differ from those the head learned on",
                     "The optimizer updated the frozen body's weights",
                     "Its learning rate was too high",
                     "The feature cache was off, so it trained on different images"),
            answer=0,
            why_not={1: "requires_grad=False kept every frozen weight fixed; only the running statistics moved",
                     2: "the three runs used the same learning rate, and two of them did not collapse",
                     3: "the cache changes how fast a run is, not which images it sees"},
            explanation="requires_grad=False does not stop BatchNorm from updating its running statistics in "
                        "training mode; bn='frozen' keeps frozen stages in eval mode.",
            solution_text="answer = 0",
        ),
    ]
