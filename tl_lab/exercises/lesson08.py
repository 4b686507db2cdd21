"""Lesson 08, going further: the backbone zoo, mixed precision, repeatable runs, LoRA.

Each question's ``solution_text`` is Python that leaves the answer in ``answer`` (run in the lesson's namespace).
"""

from __future__ import annotations

from tl_lab.exercises.questions import Choice, Code, Number, Outcome, Predict, Question

TITLE = "Going further"

_SPEED = ("faster (more than 1.2x)", "about the same", "slower (less than 0.8x)")

LORA_SOLUTION = '''\
def answer(in_features, out_features, rank):
    """Trainable parameters LoRA adds to a Linear(in_features, out_features) layer (no bias)."""
    return rank * (in_features + out_features)    # A: rank x in, B: out x rank
'''


def _speed(results) -> Outcome:
    s = float(results["amp_speedup"])
    option = _SPEED[0] if s > 1.2 else _SPEED[2] if s < 0.8 else _SPEED[1]
    agreement = float(results.get("amp_top1_agreement", float("nan")))
    detail = f"The low-precision pass agreed with float32 on {agreement:.0%} of the top-1 answers."
    return Outcome(option, {"amp_speedup": s}, abs(s - 1) > 0.3, detail)


def lora_parameters(in_features: int, out_features: int, rank: int) -> int:
    """The reference: A (rank x in) and B (out x rank)."""
    return rank * (in_features + out_features)


_LORA_CASES = ((64, 32, 4), (1280, 7, 8), (100, 100, 2))


def _check_lora(fn) -> str | None:
    if not callable(fn):
        return f"Pass a function lora_params(in_features, out_features, rank), not {type(fn).__name__}"
    for n_in, n_out, r in _LORA_CASES:
        got = fn(n_in, n_out, r)
        right = lora_parameters(n_in, n_out, r)
        if got == right:
            continue
        mistakes = {
            "That is the full weight matrix (in x out), which LoRA leaves frozen: count only the two small factors.":
                n_in * n_out,
            "That is rank x in x out, a full matrix per rank: LoRA's factors are A (rank x in) and B (out x rank).":
                r * n_in * n_out,
            "You counted only one factor: LoRA trains A (rank x in) and B (out x rank).": r * n_in,
            "You counted only one factor: LoRA trains A (rank x in) and B (out x rank), not only B.": r * n_out,
            "You added the layer's bias: with bias='none' LoRA trains only A and B.": right + n_out,
        }
        for message, value in mistakes.items():
            if got == value:
                return f"For Linear({n_in}, {n_out}) at rank {r}: {message}"
        return f"For Linear({n_in}, {n_out}) at rank {r} LoRA adds {right} parameters; your function says {got}."
    return None


def questions() -> list[Question]:
    return [
        Predict(
            "q1", "Before running section 4: on this machine, is a forward pass in low precision (bfloat16 or "
                  "float16 autocast) faster than float32?",
            choices=_SPEED,
            needs=("amp_speedup",),
            measure=_speed,
            explanation="The speed-up depends on the hardware: on a GPU with tensor cores expect about 2x; on most "
                        "laptop CPUs bfloat16 is emulated and slower, which is why fit keeps AMP off there; server "
                        "CPUs with native bfloat16 instructions (AVX-512 BF16, AMX) can be faster. The precision "
                        "cost is small either way: most top-1 answers agree.",
            hints=("Which device does section 1 report?",
                   "Does it have tensor cores, or native bfloat16 instructions?"),
            solution_text="import torch\nanswer = 'faster (more than 1.2x)' if torch.cuda.is_available() else "
                          "'slower (less than 0.8x)'",
        ),
        Number(
            "q2", "From section 2: how many million parameters does resnet18 have (all of it, head included)?",
            read=lambda r: r["zoo_resnet18_params_millions"],
            tolerance=0.05,
            mistakes={
                "Give millions (like 4.7), not the raw parameter count.":
                    lambda r: 1e6 * r["zoo_resnet18_params_millions"],
                "Give millions, not thousands.": lambda r: 1e3 * r["zoo_resnet18_params_millions"],
                "Give millions, not billions.": lambda r: 1e-3 * r["zoo_resnet18_params_millions"],
            },
            needs=("zoo_resnet18_params_millions",),
            hints=("Read the RESULT line zoo_resnet18_params_millions, or the resnet18 line of section 2.",),
            solution_text="answer = lesson.results()['zoo_resnet18_params_millions']",
        ),
        Code(
            "q3", "LoRA (section 6) adds two small factors to a frozen layer. Write lora_params(in_features, "
                  "out_features, rank): the trainable parameters LoRA adds to a Linear(in_features, out_features) "
                  "layer.",
            verify=_check_lora,
            example_call="q3.check(lora_params)",
            hints=("The update is B @ A with A of shape (rank, in_features).",
                   "B has shape (out_features, rank); the frozen weight does not count."),
            solution_text=LORA_SOLUTION,
        ),
        Choice(
            "q4", "In section 5 the command line reran the notebook's tiny run from its run.json and measured the "
                  "same test accuracy. Why?",
            options=(("run.json records the whole recipe (data, plan, seed, epochs), and training is deterministic "
                      "on this machine for a fixed seed"),
                     "The command line loads the notebook's checkpoint instead of training",
                     "Test accuracy does not depend on training",
                     "The command line copies the notebook's result into its run.json"),
            answer=0,
            why_not={1: "it trains again into a new run folder (tiny_rerun), from the recipe",
                     2: "a different seed or recipe gives a different accuracy; that is what the check would catch",
                     3: "it writes a new run.json in tiny_rerun with the accuracy its own training measured"},
            explanation="A recipe plus a seed is a repeatable experiment: the starting point for a full-size run "
                        "elsewhere.",
            solution_text="answer = 0",
        ),
    ]
