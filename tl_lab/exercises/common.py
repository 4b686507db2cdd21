"""Building blocks the lessons' questions share: "which of these measured accuracies is highest", and plans."""

from __future__ import annotations

from collections.abc import Mapping

from tl_lab.exercises.questions import Outcome, Results, beyond_noise

__all__ = [
    "CLIPART_TEST_IMAGES",
    "DIGITS_TEST_IMAGES",
    "SHAPES_TEST_IMAGES",
    "best_of",
    "compare",
    "extreme_of",
    "fill_solutions",
    "run_solution",
]

CLIPART_TEST_IMAGES = 153  # load_dataset("clipart") keeps a fixed test split of 153 images at every shot count


def best_of(named: Mapping[str, str], n_test: int) -> callable:
    """``measure`` for a :class:`~tl_lab.exercises.questions.Predict`: the option whose result is highest.

    ``named``: ``{option: result name}``. ``clear`` is whether the best beats the runner-up beyond the noise of
    ``n_test`` test images (two standard errors of the difference).
    """

    def measure(results: Results) -> Outcome:
        values = {option: float(results[name]) for option, name in named.items()}
        ranked = sorted(values, key=values.get, reverse=True)
        best, second = ranked[0], ranked[1]
        clear = beyond_noise(values[best], values[second], n_test)
        detail = (f"Best: {best!r} by {values[best] - values[second]:+.3f} over {second!r} "
                  f"(on {n_test} test images).")
        return Outcome(best, {named[o]: values[o] for o in named}, clear, detail)

    return measure


# --- shared by lessons 01-09 (exercises for issue 24) ----------------------------------------------------------------

DIGITS_TEST_IMAGES = 539  # load_dataset("digits") keeps 539 test images at every shot count (5 and 10 checked)
SHAPES_TEST_IMAGES = 270  # load_dataset("shapes", shots=10, image_size=64): 6 classes x 45 test images


def compare(a: str, b: str, n_test: int, options: tuple[str, str, str]) -> callable:
    """``measure`` for "is result ``a`` above, about equal to, or below result ``b``?": ``options`` name the three
    answers in that order. "About equal" means within two standard errors of the difference on ``n_test`` images;
    then ``clear`` is False (another seed could tip it either way)."""
    above, same, below = options

    def measure(results: Results) -> Outcome:
        va, vb = float(results[a]), float(results[b])
        clear = beyond_noise(va, vb, n_test)
        option = same if not clear else (above if va > vb else below)
        detail = f"{a} - {b} = {va - vb:+.3f} (on {n_test} test images)."
        return Outcome(option, {a: va, b: vb}, clear, detail)

    return measure


def extreme_of(named: Mapping[str, str], *, lowest: bool = False, margin: float = 0.05) -> callable:
    """``measure`` for quantities without a test-split noise (correlations over many weights, CKA, timings): the
    option whose result is highest (or ``lowest``); ``clear`` when it leads the runner-up by more than ``margin``."""

    def measure(results: Results) -> Outcome:
        values = {option: float(results[name]) for option, name in named.items()}
        ranked = sorted(values, key=values.get, reverse=not lowest)
        first, second = ranked[0], ranked[1]
        gap = abs(values[first] - values[second])
        word = "Lowest" if lowest else "Highest"
        detail = f"{word}: {first!r}, {gap:.3f} from {second!r}."
        return Outcome(first, {named[o]: values[o] for o in named}, gap > margin, detail)

    return measure


def run_solution(code: str, namespace: dict) -> object:
    """Run a question's ``solution_text`` (Python that leaves the answer in ``answer``) in ``namespace``; return
    ``answer``. Notebooks' answer cells hold ``answer = None  # ...``; a test of a lesson "with the solutions
    filled in" replaces that line with the solution."""
    exec(compile(code, "<solution>", "exec"), namespace)  # noqa: S102 - our own solution text
    return namespace["answer"]


def fill_solutions(nb, lesson_id: str):
    """A lesson notebook (nbformat node, changed in place and returned) with every answer cell filled in: the line
    ``answer = None  # ...`` of a cell about ``ex.qN`` becomes question ``qN``'s ``solution_text``. For running a
    lesson "with the solutions filled in" (tests, instructors' copies)."""
    import re

    from tl_lab.exercises.catalogue import lesson

    questions = {q.id: q for q in lesson(lesson_id)}
    for cell in nb.cells:
        if cell.cell_type != "code" or "answer = None" not in cell.source:
            continue
        ids = set(re.findall(r"\bex\.(q\d+)\.", cell.source))
        if len(ids) != 1:
            raise ValueError(f"an answer cell must be about one question, this one names {sorted(ids)}:\n{cell.source}")
        solution = questions[ids.pop()].solution_text.rstrip()
        cell.source = "\n".join(solution if line.startswith("answer = None") else line
                                for line in cell.source.splitlines())
    return nb
