"""Checked questions: a learner's answer held against a reference, or against the numbers their own run measured.

Four kinds, one interface (``check``, ``hint``, ``solution``; ``kind``, ``options``):

- :class:`Predict`: commit to a prediction *before* running the code (``q.predict("fine-tune all")``), run it,
  then ``q.check()`` compares the prediction with what this run measured (the lesson's ``lesson.result`` values),
  says whether the difference is beyond the run's noise, and gives the lesson's explanation. A wrong prediction is
  feedback, not a failure.
- :class:`Number`: a number read from the learner's own run, accepted within the measurement's noise; plausible
  misreadings (validation for test, a sum for a mean) get their own message.
- :class:`Choice`: one correct explanation among several; each wrong option says why it is wrong.
- :class:`Code`: a code answer (a FreezePlan, a function, a count) checked by running it against a reference.

``check`` returns a :class:`CheckResult`: ``correct`` is True, False, or None (not attempted yet, or a prediction
that still waits for its run), and ``message`` names what was wrong.

Example::

    >>> q = Choice("q1", "Why do pretrained features help with 10 images per class?",
    ...            options=("They were trained on more data", "The network is larger"), answer=0,
    ...            why_not={1: "a larger network from scratch overfits 10 images; size alone does not help"})
    >>> q.check(1).correct, q.check(1).message
    (False, 'Not quite: a larger network from scratch overfits 10 images; size alone does not help')
    >>> q.check(0).correct
    True
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["CheckResult", "Question", "Predict", "Number", "Choice", "Code", "Outcome", "binomial_se",
           "beyond_noise", "Results"]

Kind = Literal["predict", "number", "choice", "code"]
NO_SOLUTIONS_MARKER = ".tl_lab_no_solutions"  # written by tl-lab lessons --copy DIR --no-solutions (app/lessons.py)
Results = Mapping[str, float]  # a lesson's measured numbers: lesson.results()


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` test images: ``sqrt(p (1 - p) / n)``."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def beyond_noise(a: float, b: float, n: int, z: float = 2.0) -> bool:
    """Is ``a - b`` (two accuracies on the same ``n`` test images) larger than ``z`` standard errors of a
    difference, ``z * sqrt(se(a)^2 + se(b)^2)``?"""
    return abs(a - b) > z * math.hypot(binomial_se(a, n), binomial_se(b, n))


def _measured(source: Callable[[], Results] | None) -> Results:
    """The numbers this kernel's lesson measured (``lesson.results()``), or those of ``source``."""
    if source is not None:
        return source()
    from tl_lab.exercises.measured import results

    return results()


@dataclass(frozen=True)
class CheckResult:
    """What a check found: ``correct`` (True, False, None = not attempted / waiting for the run) and why."""

    correct: bool | None
    message: str
    measured: Mapping[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:  # `if q.check(...)` reads naturally; None counts as not passed
        return bool(self.correct)

    def __repr__(self) -> str:
        mark = {True: "Correct", False: "Not yet", None: "Not checked"}[self.correct]
        return f"{mark}. {self.message}" if not self.message.startswith(mark) else self.message

    def _repr_html_(self) -> str:  # a coloured box in notebooks and on static pages
        colour = {True: "#1b7f3b", False: "#b3261e", None: "#555"}[self.correct]
        return (f'<div class="tl-lab-check" style="border-left:4px solid {colour};padding:4px 8px">'
                f"{html.escape(repr(self))}</div>")


@dataclass
class Question:
    """Common parts: an id (``q1``), the prompt, tiered hints and a worked solution."""

    id: str
    prompt: str
    hints: Sequence[str] = ()
    solution_text: str = ""
    kind: Kind = field(init=False, default="choice")
    options: tuple[str, ...] = field(init=False, default=())

    def hint(self, level: int = 1) -> str:
        """Hint ``level`` (1 = gentlest). Asking past the last hint gives the last one."""
        if not self.hints:
            return "No hint for this one: try it, then look at the solution."
        if level < 1:
            raise ValueError(f"hint levels start at 1, got {level}")
        return self.hints[min(level, len(self.hints)) - 1]

    def solution(self) -> str:
        """The worked solution, unless this is a learner copy made with ``tl-lab lessons --copy --no-solutions``
        (a marker file beside the notebook, in the kernel's working folder)."""
        if (Path.cwd() / NO_SOLUTIONS_MARKER).exists():
            return (f"Your instructor left the solutions out of this copy. Try {self.id}.hint(1), {self.id}.hint(2) "
                    f"..., and {self.id}.check(...) tells you what is wrong with each attempt.")
        return self.solution_text or "No written solution: the lesson's text above explains it."

    def check(self, *args: Any, **kwargs: Any) -> CheckResult:  # pragma: no cover - each kind defines it
        raise NotImplementedError


@dataclass(frozen=True)
class Outcome:
    """What a run measured for a :class:`Predict` question: the option it supports, the numbers, and whether the
    evidence is beyond the run's noise."""

    option: str
    numbers: Mapping[str, float]
    clear: bool  # beyond the noise of the test split
    detail: str = ""


@dataclass
class Predict(Question):
    """Predict, then run: ``predict(option)`` before the code; ``check()`` after it has measured.

    ``measure(results) -> Outcome`` reads the lesson's results; ``needs`` names the results it reads, so a check
    before the run says which cell to run. ``explanation`` is the lesson's account of what happens.
    """

    choices: Sequence[str] = ()
    needs: Sequence[str] = ()
    measure: Callable[[Results], Outcome] | None = None
    explanation: str = ""
    results: Callable[[], Results] | None = None  # where measured numbers come from (default: lesson.results)

    def __post_init__(self) -> None:
        self.kind, self.options = "predict", tuple(self.choices)
        if len(set(self.options)) != len(self.options) or len(self.options) < 2:
            raise ValueError(f"{self.id}: a prediction needs two or more distinct options, got {self.options}")
        self.prediction: str | None = None
        self._predicted_before: frozenset[str] | None = None

    def predict(self, option: str) -> str:
        """Commit to ``option`` (one of ``options``) before running the exercise's code."""
        if option not in self.options:
            raise ValueError(f"{self.id}: predict one of {list(self.options)}, got {option!r}")
        self.prediction = option
        self._predicted_before = frozenset(k for k in self.needs if k in _measured(self.results))
        return f"Prediction recorded: {option!r}. Now run the code, then call {self.id}.check()."

    def check(self, results: Results | None = None) -> CheckResult:
        if self.prediction is None:
            return CheckResult(None, f"Make a prediction first: {self.id}.predict(...) with one of "
                                     f"{list(self.options)}.")
        measured = dict(results if results is not None else _measured(self.results))
        missing = [k for k in self.needs if k not in measured]
        if missing:
            return CheckResult(None, f"Your prediction {self.prediction!r} is recorded; run the exercise's code "
                                     f"first (this run has not measured {', '.join(missing)} yet).")
        assert self.measure is not None
        out = self.measure(measured)
        numbers = ", ".join(f"{k} = {v:.3f}" for k, v in out.numbers.items())
        noise = ("beyond the noise of the test split" if out.clear else
                 "within the noise of the test split (another seed could order them differently)")
        late = (" (You predicted after this run had already measured it.)"
                if self._predicted_before and set(self.needs) <= self._predicted_before else "")
        tail = f" {out.detail}" if out.detail else ""
        if out.option == self.prediction:
            msg = f"Correct: your run measured {numbers}, {noise}.{tail} {self.explanation}".rstrip()
            return CheckResult(True, msg + late, out.numbers)
        msg = (f"Your run disagrees with {self.prediction!r}: it measured {numbers} ({out.option!r}), "
               f"{noise}.{tail} {self.explanation}").rstrip()
        return CheckResult(False, msg + late, out.numbers)


@dataclass
class Number(Question):
    """A number read from the learner's own run, within ``tolerance(results)`` of ``read(results)``.

    ``mistakes``: ``{message: read_wrong(results)}`` for plausible misreadings; an answer that matches one of
    them (and not the right value) gets that message.
    """

    read: Callable[[Results], float] | None = None
    tolerance: Callable[[Results], float] | float = 0.0015
    mistakes: Mapping[str, Callable[[Results], float]] = field(default_factory=dict)
    needs: Sequence[str] = ()
    results: Callable[[], Results] | None = None

    def __post_init__(self) -> None:
        self.kind = "number"

    def check(self, answer: float | None = None, results: Results | None = None) -> CheckResult:
        if answer is None:
            return CheckResult(None, f"Give your number: {self.id}.check(0.61)")
        try:
            answer = float(answer)
        except (TypeError, ValueError):
            return CheckResult(False, f"Answer with a number (like 0.61), not {type(answer).__name__} {answer!r}")
        measured = dict(results if results is not None else _measured(self.results))
        missing = [k for k in self.needs if k not in measured]
        if missing:
            return CheckResult(None, f"Run the lesson's code first: this run has not measured "
                                     f"{', '.join(missing)} yet.")
        assert self.read is not None
        truth = float(self.read(measured))
        tol = self.tolerance(measured) if callable(self.tolerance) else float(self.tolerance)
        if abs(answer - truth) <= tol:
            return CheckResult(True, f"Correct: your run measured {truth:.3f}.", {"measured": truth})
        for message, wrong in self.mistakes.items():
            try:
                value = float(wrong(measured))
            except KeyError:
                continue
            if abs(answer - value) <= tol and abs(value - truth) > tol:
                return CheckResult(False, message, {"measured": truth})
        return CheckResult(False, f"Your run measured something else: {answer:.3f} is not within {tol:.3f} of "
                                  f"the value this question asks for. {self.hint(1)}", {"measured": truth})


@dataclass
class Choice(Question):
    """One correct option; ``why_not[i]`` says why option ``i`` is wrong."""

    choices: Sequence[str] = ()
    answer: int = 0
    why_not: Mapping[int, str] = field(default_factory=dict)
    explanation: str = ""

    def __init__(self, id: str, prompt: str, *, options: Sequence[str], answer: int,
                 why_not: Mapping[int, str] | None = None, explanation: str = "", hints: Sequence[str] = (),
                 solution_text: str = "") -> None:
        super().__init__(id, prompt, tuple(hints), solution_text)
        self.kind, self.options, self.answer = "choice", tuple(options), answer
        self.why_not, self.explanation = dict(why_not or {}), explanation
        if len(self.options) < 2 or len(set(self.options)) != len(self.options):
            raise ValueError(f"{id}: a choice needs two or more distinct options, got {self.options}")
        if not 0 <= answer < len(self.options):
            raise ValueError(f"{id}: answer {answer} is not an option index (0..{len(self.options) - 1})")

    def check(self, answer: int | str | None = None) -> CheckResult:
        if answer is None:
            listing = "; ".join(f"{i}: {o}" for i, o in enumerate(self.options))
            return CheckResult(None, f"Choose one: {self.id}.check(i) or the option's text. Options: {listing}")
        index = self.options.index(answer) if isinstance(answer, str) and answer in self.options else answer
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.options):
            return CheckResult(False, f"{answer!r} is not one of the options: give an index 0..{len(self.options) - 1} "
                                      "or an option's exact text")
        if index == self.answer:
            return CheckResult(True, f"Correct. {self.explanation}".rstrip())
        return CheckResult(False, f"Not quite: {self.why_not.get(index, 'that does not explain what your run shows')}")


@dataclass
class Code(Question):
    """A code answer checked by ``verify(answer) -> None`` (right) or a message naming what is wrong."""

    verify: Callable[[Any], str | None] | None = None
    example_call: str = ""

    def __post_init__(self) -> None:
        self.kind = "code"

    def check(self, answer: Any = None) -> CheckResult:
        if answer is None:
            return CheckResult(None, f"Pass your answer: {self.example_call or self.id + '.check(answer)'}")
        assert self.verify is not None
        try:
            problem = self.verify(answer)
        except Exception as exc:  # the learner's code raised: say so, with its message
            return CheckResult(False, f"Your answer raised {type(exc).__name__}: {exc}")
        return CheckResult(True, "Correct.") if problem is None else CheckResult(False, problem)
