"""Checked exercises: every lesson's questions, held against the learner's own run (see :mod:`.questions`).

Example::

    >>> from tl_lab import exercises
    >>> ex = exercises.lesson("03")
    >>> ex.q2.kind, ex.q2.check().correct          # a code question, not attempted yet
    ('code', None)
"""

from __future__ import annotations

from tl_lab.exercises.catalogue import LessonExercises, catalogue, lesson, totals
from tl_lab.exercises.questions import CheckResult, Choice, Code, Number, Predict, Question

__all__ = ["lesson", "catalogue", "totals", "LessonExercises", "CheckResult", "Question", "Predict", "Number",
           "Choice", "Code"]
