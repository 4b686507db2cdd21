"""Building blocks the lessons' questions share: "which of these measured accuracies is highest", and plans."""

from __future__ import annotations

from collections.abc import Mapping

from tl_lab.exercises.questions import Outcome, Results, beyond_noise

__all__ = ["best_of", "CLIPART_TEST_IMAGES"]

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
