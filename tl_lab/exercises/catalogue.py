"""Every lesson's checked questions: ``lesson("03")`` for a learner, ``catalogue()`` for tools and instructors."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from functools import wraps

from tl_lab.exercises import progress
from tl_lab.exercises.questions import CheckResult, Question

__all__ = ["LESSONS", "lesson", "catalogue", "LessonExercises", "totals"]

# lesson id -> module defining TITLE and questions(); lessons without checked questions yet are absent
LESSONS: dict[str, str] = {key: f"tl_lab.exercises.lesson{key}" for key in (
    "00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13")}


class LessonExercises:
    """One lesson's questions as attributes (``ex.q1``); each check is recorded in the learner's progress."""

    def __init__(self, lesson_id: str, title: str, questions: list[Question]) -> None:
        self.lesson, self.title = lesson_id, title
        self.questions = tuple(questions)
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError(f"lesson {lesson_id}: question ids repeat: {ids}")
        for q in self.questions:
            q.check = _recorded(lesson_id, q)  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Question:
        for q in self.__dict__.get("questions", ()):
            if q.id == name:
                return q
        raise AttributeError(f"lesson {self.__dict__.get('lesson')} has no question {name!r}; it has "
                             f"{[q.id for q in self.__dict__.get('questions', ())]}")

    def __iter__(self) -> Iterator[Question]:
        return iter(self.questions)

    def __repr__(self) -> str:
        done = progress.summary({self.lesson: len(self.questions)})[self.lesson]
        lines = [f"Lesson {self.lesson}, {self.title}: {done['checked']} of {done['total']} checked"]
        lines += [f"  {q.id} ({q.kind}): {q.prompt}" for q in self.questions]
        return "\n".join(lines)


def _recorded(lesson_id: str, q: Question):
    check = q.check

    @wraps(check)
    def recorded(*args, **kwargs) -> CheckResult:
        result = check(*args, **kwargs)
        if result.correct is not None:  # attempted: a pass, a miss, or a prediction held against a run
            progress.mark(lesson_id, q.id, kind=q.kind, passed=result.correct or q.kind == "predict")
        return result

    return recorded


def lesson(lesson_id: str | int) -> LessonExercises:
    """The checked questions of lesson ``lesson_id`` (``"03"``, ``3`` or ``"03_fine_tuning_and_freezing"``)."""
    key = f"{int(str(lesson_id)[:2]):02d}" if str(lesson_id)[:2].isdigit() else str(lesson_id)
    if key not in LESSONS:
        raise ValueError(f"no checked questions for lesson {lesson_id!r} yet; lessons with them: "
                         f"{', '.join(LESSONS)}")
    module = importlib.import_module(LESSONS[key])
    return LessonExercises(key, module.TITLE, module.questions())


def totals() -> dict[str, int]:
    """``{lesson: number of questions}``."""
    return {key: len(lesson(key).questions) for key in LESSONS}


def catalogue() -> list[dict]:
    """Every question of every lesson: ``lesson``, ``id``, ``kind``, ``prompt``, ``options`` (choices)."""
    rows = []
    for key in LESSONS:
        for q in lesson(key):
            rows.append({"lesson": key, "id": q.id, "kind": q.kind, "prompt": q.prompt, "options": list(q.options)})
    return rows
