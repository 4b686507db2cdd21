"""Lesson 12, sharing and keeping knowledge: LoRA's parameter count, forgetting and LwF, multi-task heads.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
Every check reads numbers the lesson has already recorded (``lesson.result``): none trains anything.
"""

from __future__ import annotations

from tl_lab.exercises.common import DIGITS_TEST_IMAGES, compare
from tl_lab.exercises.questions import Choice, Code, Number, Outcome, Predict, Question, Results, binomial_se

TITLE = "Sharing and keeping knowledge"

_Q1 = ("LwF keeps clearly more", "about the same", "LwF keeps clearly less")

CONV_LORA_SOLUTION = '''\
def answer(in_channels, out_channels, kernel_size, rank):
    """Trainable parameters LoRA adds to a Conv2d(in_channels, out_channels, kernel_size) layer (no bias)."""
    a = rank * in_channels * kernel_size * kernel_size   # A: a k x k convolution from in_channels to rank channels
    b = out_channels * rank                              # B: a 1x1 convolution from rank to out_channels
    return a + b
'''


def _agreement_images(results: Results) -> int:
    """How many digit test images the agreement was measured on (section 3 records it; 539 is the digits split)."""
    return int(results.get("agree_images", DIGITS_TEST_IMAGES))


def _lwf_against_fine_tuning(results: Results) -> Outcome:
    return compare("agree_lwf", "agree_fine_tune", _agreement_images(results), _Q1)(results)


def _lost_tolerance(results: Results) -> float:
    """One standard error of the fine-tuned agreement (the frozen body's is exactly 1, without noise), and never
    below the rounding of the printed values."""
    return max(0.0015, binomial_se(float(results["agree_fine_tune"]), _agreement_images(results)))


# ---- q4: LoRA on a convolution, checked against the formula peft's factors follow ------------------------------

def conv_lora_parameters(in_channels: int, out_channels: int, kernel_size: int, rank: int) -> int:
    """The reference (``tl_lab.training.peft_params``): A is a k x k convolution to ``rank`` channels
    (``rank * in * k * k``), B a 1x1 convolution back (``out * rank``); the frozen weight and the bias add nothing."""
    return rank * (in_channels * kernel_size * kernel_size + out_channels)


# the first case has k > 1 and distinct sizes, so every mistake below gives a different number
_CONV_CASES = ((16, 24, 3, 4), (40, 112, 1, 8), (3, 32, 5, 2), (1280, 7, 1, 2))


def conv_lora_mistakes(c_in: int, c_out: int, k: int, r: int) -> dict[str, int]:
    """The plausible wrong counts for one layer, each with the message a learner gets."""
    right = conv_lora_parameters(c_in, c_out, k, r)
    return {
        "That is a Linear layer's count, rank x (in + out): A is a k x k convolution, so each of its rank filters "
        "has in x k x k weights.": r * (c_in + c_out),
        "You gave both factors the k x k kernel: only A is a k x k convolution; B is a 1x1 convolution (out x rank).":
            r * (c_in + c_out) * k * k,
        "You counted the kernel once (k), not k x k: a k x k kernel has k * k weights per input channel.":
            r * (c_in * k + c_out),
        "You squared the rank: A has rank filters and B rank inputs, so the rank multiplies once.":
            r * r * (c_in * k * k + c_out),
        "You added the layer's bias (out): with bias='none' LoRA trains only A and B.": right + c_out,
        "That is the full weight (out x in x k x k), which LoRA leaves frozen: count only the two small factors.":
            c_out * c_in * k * k,
        "That is off by one rank: count rank filters in A and rank inputs in B, not rank + 1.":
            (r + 1) * (c_in * k * k + c_out),
    }


def _check_conv_lora(fn) -> str | None:
    if not callable(fn):
        return f"Pass a function lora_params(in_channels, out_channels, kernel_size, rank), not {type(fn).__name__}"
    for c_in, c_out, k, r in _CONV_CASES:
        got = fn(c_in, c_out, k, r)
        right = conv_lora_parameters(c_in, c_out, k, r)
        if got == right:
            continue
        for message, value in conv_lora_mistakes(c_in, c_out, k, r).items():
            if got == value:
                return f"For Conv2d({c_in}, {c_out}, kernel_size={k}) at rank {r}: {message}"
        return (f"For Conv2d({c_in}, {c_out}, kernel_size={k}) at rank {r} LoRA adds {right} parameters; your "
                f"function says {got}.")
    return None


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 3: fine-tuning the whole network on a few digits moves its body, so the "
                  "original ImageNet head, put back on it, agrees less with the untouched network. LwF adds a "
                  "term that distils the original ImageNet outputs on the digit images (strength 1). Against plain "
                  "fine-tuning, how much of the old task does it keep?",
            choices=_Q1,
            needs=("agree_lwf", "agree_fine_tune"),
            measure=_lwf_against_fine_tuning,
            explanation="LwF asks the fine-tuned network to keep giving the original ImageNet outputs on the new "
                        "images, against the new task's loss: how far it holds the body back depends on its "
                        "strength, and at strength 1 on a few digit images (a domain far from ImageNet's photos) the "
                        "gain over plain fine-tuning can be smaller than the noise of the test split. EWC and L2-SP "
                        "pull the weights themselves back instead; try Retain(\"lwf\", 10.0) and compare.",
            hints=("What does LwF ask of the network, and how strongly (its weight against the digits' loss)?",),
            solution_text="answer = 'about the same'   # our fast run (TL_LAB_FAST=1): 0.187 against 0.176, 539 digits",
        ),
        Number(
            "q2", "From section 3: how much old-task agreement did full fine-tuning lose against the frozen body? "
                  "(the frozen body's agreement minus fine-tuning's, e.g. 0.40; accepted within one standard error "
                  "of the measured agreement)",
            read=lambda r: r["agree_frozen_head"] - r["agree_fine_tune"],
            tolerance=_lost_tolerance,
            mistakes={
                "That is fine-tuning's agreement minus the frozen body's: subtract fine-tuning's from the frozen "
                "body's for what it lost.": lambda r: r["agree_fine_tune"] - r["agree_frozen_head"],
                "That is fine-tuning's agreement itself, what it kept; the question asks what it lost against the "
                "frozen body.": lambda r: r["agree_fine_tune"],
                "That is on the new task's axis (test accuracy on digits); the old task is the top-1 agreement with "
                "the original network (the x axis).": lambda r: r["newtask_frozen_head"] - r["newtask_fine_tune"],
                "That is a percentage: give the difference of the two agreements as a fraction (e.g. 0.40).":
                    lambda r: 100 * (r["agree_frozen_head"] - r["agree_fine_tune"]),
                "That is what LwF lost; the question asks about plain fine-tuning (no remedy).":
                    lambda r: r["agree_frozen_head"] - r["agree_lwf"],
            },
            needs=("agree_frozen_head", "agree_fine_tune"),
            hints=("Section 3's table has a top1_agreement column: the frozen_head row and the fine_tune row without "
                   "a remedy.",
                   "Or the RESULT lines agree_frozen_head and agree_fine_tune."),
            solution_text="answer = lesson.results()['agree_frozen_head'] - lesson.results()['agree_fine_tune']",
        ),
        Choice(
            "q3", "In our full-size run (the table under section 4), the pretrained single-task network learned "
                  "the shape far above raw pixels (0.46 against 0.16) but the position only a little above chance "
                  "(0.30; chance 0.25). Which explanation fits?",
            options=(("ImageNet training makes features that barely depend on where an object is, and the body's "
                     "global average pooling then averages over every position: what a shape is survives, where it "
                     "is mostly does not"),
                     "Position has more classes than shape, so it is the harder task",
                     "32 px images are too small to show where the object is",
                     "The position labels are noisy, so no network can learn them"),
            answer=0,
            why_not={1: "position has 4 classes and shape 6 (chance 0.25 against 0.167): by the count, shape is the "
                        "harder one",
                     2: "a quadrant of a 32 px image is 16 px across; where the object is is the coarsest fact about "
                        "the picture, and the labels are read from where it was drawn",
                     3: "the labels are computed from where each object was drawn, so they are exact; and the network "
                        "from scratch learned position about as well as the pretrained one (0.28 against 0.30 in our "
                        "full-size run, within the noise)"},
            explanation="Pretrained features encode what, not where; a task that needs where gains little from "
                        "them, and sharing a body with a task that needs what may pull it either way.",
            hints=("What does a global average pool keep of an object's position?",),
            solution_text="answer = 0",
        ),
        Code(
            "q4", "LoRA (section 1) wraps EfficientNet-Lite's convolutions. Write lora_params(in_channels, "
                  "out_channels, kernel_size, rank): the trainable parameters LoRA adds to a Conv2d(in_channels, "
                  "out_channels, kernel_size) layer (bias='none', groups=1). It is checked against the count of "
                  "peft's factors.",
            verify=_check_conv_lora,
            example_call="q4.check(lora_params)",
            hints=("LoRA's A is a convolution with the layer's own k x k kernel, from in_channels to rank channels.",
                   "B is a 1x1 convolution from rank channels to out_channels; add the two weight counts (no biases)."),
            solution_text=CONV_LORA_SOLUTION,
        ),
    ]
