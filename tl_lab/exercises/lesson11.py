"""Lesson 11, adapting without labels: AdaBN (naive and sound), domain confusion (DANN), LP-FT.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from tl_lab.exercises.common import DIGITS_TEST_IMAGES, compare
from tl_lab.exercises.questions import Choice, Code, Number, Predict, Question

TITLE = "Adapting without labels"

_Q1 = ("AdaBN clearly helps", "about the same", "AdaBN clearly hurts")

ADABN_SOLUTION = '''\
import copy
import torch

def answer(model, batches):
    """A copy of model whose BatchNorm running statistics are re-estimated on the target batches."""
    new = copy.deepcopy(model)                    # never change the source model
    new.eval()                                    # everything else keeps its eval behaviour
    bns = [m for m in new.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()                  # forget the source statistics
        bn.momentum = None                        # a plain average over the batches, not a moving one
        bn.train()                                # only in train mode does BatchNorm update its statistics
    with torch.no_grad():                         # no weight changes: only forward passes
        for x in batches:
            new(x)
    new.eval()
    return new
'''


# ---- q4: AdaBN as code, checked against tl_lab.adapt_bn on a tiny network ---------------------------------------

def tiny_net(seed: int = 0) -> nn.Module:
    """A small staged CNN with two BatchNorm layers (stem, body, head), as tl_lab's networks are built."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        body=nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        head=nn.Linear(6, 3),
    ))


def source_and_target(seed: int = 0) -> tuple[nn.Module, torch.Tensor, list[torch.Tensor]]:
    """The tiny net with source statistics (estimated on bright images), uint8 target images (dark, high contrast),
    and those target images as the normalised float batches of 4 that a learner's function receives."""
    g = torch.Generator().manual_seed(seed)
    model = tiny_net(seed)
    source = torch.randint(150, 256, (16, 3, 32, 32), generator=g, dtype=torch.uint8)
    target = torch.cat([torch.randint(0, 120, (4, 3, 32, 32), generator=g, dtype=torch.uint8),
                        torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8),
                        torch.randint(60, 200, (4, 3, 32, 32), generator=g, dtype=torch.uint8)])
    model.train()
    with torch.no_grad():
        for lo in range(0, len(source), 4):
            model(_normalize(source[lo:lo + 4]))
    model.eval()
    return model, target, [_normalize(target[lo:lo + 4]) for lo in range(0, len(target), 4)]


def _normalize(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255.0 - 0.5) / 0.25


def _bn_stats(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(m.running_mean.clone(), m.running_var.clone()) for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def reference_adabn(model: nn.Module, target: torch.Tensor) -> nn.Module:
    """``tl_lab.adapt_bn`` on the tiny net: a Backbone around it (Lite0's preprocessing, replaced), batches of 4."""
    from dataclasses import replace

    from tl_lab.backbones.registry import load_backbone
    from tl_lab.training.adapt_bn import adapt_bn

    lite0 = load_backbone("efficientnet_lite0", pretrained=False, num_classes=3)
    spec = replace(lite0.spec, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), min_input_size=8)
    tiny = replace(lite0, model=model, stages=("stem", "body", "head"), head="head", spec=spec, meta={})
    return adapt_bn(tiny, target, batch_size=4).model


def _stats_after(model: nn.Module, batches: list[torch.Tensor], *, reset: bool, momentum: float | None,
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    new = copy.deepcopy(model)
    new.eval()
    for bn in (m for m in new.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        if reset:
            bn.reset_running_stats()
        bn.momentum = momentum
        bn.train()
    with torch.no_grad():
        for x in batches:
            new(x)
    return _bn_stats(new)


def adabn_variants(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, list]:
    """BatchNorm statistics of the plausible mistakes, on the same model and batches."""
    return {
        "Your BatchNorm layers still hold the source statistics: in eval mode BatchNorm only reads its running "
        "statistics. Put the BatchNorm layers in train mode (bn.train()) for the forward passes.":
            _bn_stats(model),
        "Your BatchNorm layers hold freshly reset statistics (mean 0, variance 1): in eval mode BatchNorm does not "
        "update them. Put the BatchNorm layers in train mode (bn.train()) for the forward passes.":
            _stats_after(model, [], reset=True, momentum=None),
        "Your statistics mix the source's with the target's: BatchNorm's default momentum (0.1) keeps a moving "
        "average that starts from the source statistics. Reset them (bn.reset_running_stats()) and set "
        "bn.momentum = None for a plain average over the target batches.":
            _stats_after(model, batches, reset=False, momentum=0.1),
        "You reset the statistics but kept the default momentum 0.1: a moving average from mean 0, variance 1 "
        "after three batches is not the target's statistics. Set bn.momentum = None for a plain average.":
            _stats_after(model, batches, reset=True, momentum=0.1),
        "Your statistics are the last batch's alone (momentum 1.0): with bn.momentum = None every batch counts "
        "equally.": _stats_after(model, batches, reset=True, momentum=1.0),
    }


def _same(a: list, b: list, atol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(torch.allclose(m1, m2, atol=atol) and torch.allclose(v1, v2, atol=atol)
                                    for (m1, v1), (m2, v2) in zip(a, b))


def _check_adabn(fn) -> str | None:
    if not callable(fn):
        return f"Pass a function adabn(model, batches) -> adapted model, not {type(fn).__name__}"
    model, target, batches = source_and_target()
    before_stats = _bn_stats(model)
    before_weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    out = fn(model, [b.clone() for b in batches])
    if not isinstance(out, nn.Module):
        return f"Return the adapted model (an nn.Module), not {type(out).__name__}"
    if out is model or not _same(_bn_stats(model), before_stats):
        return ("Your function changed the model it was given: AdaBN returns a copy (copy.deepcopy(model)) and "
                "leaves the source model as it was, so you can compare the two.")
    for name, value in out.state_dict().items():
        if name in before_weights and not torch.allclose(value, before_weights[name]):
            return (f"Your function changed the weight {name}: AdaBN changes no weight, only the BatchNorm running "
                    "statistics (use torch.no_grad() and no optimizer).")
    got = _bn_stats(out)
    if _same(got, _bn_stats(reference_adabn(copy.deepcopy(model), target))):
        if any(m.training for m in out.modules()):
            return ("The statistics are right, but some layers are still in train mode: return the model in eval "
                    "mode (out.eval()), ready to test.")
        return None
    for message, stats in adabn_variants(model, batches).items():
        if _same(got, stats):
            return message
    return ("Your BatchNorm statistics differ from tl_lab.adapt_bn's on the same target batches: reset each "
            "BatchNorm layer's statistics, set momentum = None, run every batch forward with the BatchNorm layers "
            "in train mode and without gradients.")


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 3: the frozen head (ImageNet body frozen, a new head trained on clean "
                  "digits) tested on inverted digits. What does AdaBN, re-estimating its BatchNorm statistics on "
                  "unlabelled inverted digits, do to its accuracy?",
            choices=_Q1,
            needs=("inverted_adabn_naive", "inverted_frozen_head"),
            measure=compare("inverted_adabn_naive", "inverted_frozen_head", DIGITS_TEST_IMAGES, _Q1),
            explanation="The head learned on features normalised with ImageNet's statistics; swapping in the "
                        "target's changes what every feature means to it, and accuracy collapses towards chance "
                        "(the recorded full-size run: 0.429 -> 0.137). AdaBN only helps a head trained under the "
                        "source's own BatchNorm statistics (the sound protocol, section 4).",
            hints=("Under which BatchNorm statistics did the frozen head learn: the digits' or ImageNet's?",),
            solution_text="answer = 'AdaBN clearly hurts'   # the naive protocol",
        ),
        Number(
            "q2", "From section 4: by how much did AdaBN change the sound model's (fine_tune_bn) test accuracy on "
                  "inverted digits? (after minus before, e.g. 0.12)",
            read=lambda r: r["inverted_adabn_sound"] - r["inverted_bn_source_only"],
            tolerance=0.0015,
            mistakes={
                "That is before minus after: subtract the accuracy without AdaBN from the accuracy with it.":
                    lambda r: r["inverted_bn_source_only"] - r["inverted_adabn_sound"],
                "That is the naive model's change (frozen head + AdaBN); the question asks about the sound one "
                "(fine_tune_bn + AdaBN).": lambda r: r["inverted_adabn_naive"] - r["inverted_frozen_head"],
                "That compares with plain fine-tuning (inverted_source_only), a different model; the question asks "
                "for the same model before and after AdaBN (inverted_bn_source_only).":
                    lambda r: r["inverted_adabn_sound"] - r["inverted_source_only"],
                "That compares the target (inverted) accuracy with the source (clean) accuracy; the question asks "
                "for the change on inverted digits.":
                    lambda r: r["inverted_adabn_sound"] - r["clean_fine_tune_bn"],
            },
            needs=("inverted_adabn_sound", "inverted_bn_source_only"),
            hints=("Section 4 prints 'inverted: naive ... sound before -> after (change)'.",
                   "Or the RESULT lines inverted_adabn_sound and inverted_bn_source_only."),
            solution_text="answer = lesson.results()['inverted_adabn_sound'] - lesson.results()['inverted_bn_source_only']",
        ),
        Choice(
            "q3", "Over three seeds (notebooks/references/dann_seeds.json) DANN did not reliably raise target "
                  "accuracy: on inverted digits its mean gain was -0.004, on blended digits it hurt at two seeds "
                  "of three, though it trains the body to fool a domain classifier. Which explanation fits?",
            options=(("Features a domain classifier cannot tell apart need not put the classes in the same places: "
                     "target 3s can land among the source's 8s, and no target label says otherwise (Zhao et al. "
                     "2019)"),
                     "The gradient reversal layer also reverses the label loss, so the body unlearns the digits",
                     "DANN reads the target labels and overfits the few it has",
                     ("fit keeps the best source-validation epoch; keeping the last epoch would have made DANN a "
                     "reliable gain")),
            answer=0,
            why_not={1: "the reversal sits only between the body and the domain classifier; the label loss trains "
                        "the body as usual (DANN's clean accuracy stays close to plain fine-tuning's)",
                     2: "no method in this lesson reads the unlabelled target images' labels; only the oracle uses "
                        "labelled target images",
                     3: "the reference measured the last epoch too: DANN's mean fell on both shifts (inverted "
                        "0.833 -> 0.810, blended 0.468 -> 0.440)"},
            explanation="Domain confusion aligns the two feature distributions as wholes; whether the classes line "
                        "up across them is an empirical question, and here the answer varied with the seed.",
            hints=("What does the domain classifier know about the digits' classes?",),
            solution_text="answer = 0",
        ),
        Code(
            "q4", "Write AdaBN: adabn(model, batches) -> a copy of model whose BatchNorm running statistics are "
                  "re-estimated on the target batches (a list of float tensors, already normalised), every weight "
                  "unchanged, returned in eval mode. It is checked against tl_lab.adapt_bn on a tiny network.",
            verify=_check_adabn,
            example_call="q4.check(adabn)",
            hints=(("BatchNorm updates running_mean and running_var only in train mode, by a moving average with "
                   "momentum 0.1 that starts from the statistics it holds."),
                   ("For each BatchNorm layer of a deep copy: reset_running_stats(), momentum = None, train(); then "
                   "run every batch forward under torch.no_grad() and return the copy in eval mode.")),
            solution_text=ADABN_SOLUTION,
        ),
    ]
