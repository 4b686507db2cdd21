"""What lesson notebooks share: the fast switch and the measured numbers a lesson reports.

Why: every claim a lesson makes is a number the learner's own run produced. A lesson reports it with
:func:`result`, which prints one plain line (``RESULT clipart_frozen_head = 0.671``) that a learner reads and that
the lesson tests parse, so a test can check that each number exists and points the right way (the checks live in
the notebook's metadata, ``metadata["tl_lab"]["checks"]``, next to the claim they guard).

Importing it in a Jupyter kernel also turns on the page forms of a lesson's outputs (:func:`use_page_forms`): every
plotly figure carries a static-page representation and a text alternative, every tl_lab widget a static snapshot,
so an executed lesson exports to an offline page (``tl_lab.app.pages``).

``TL_LAB_FAST=1`` (CI, a quick look) shrinks a lesson without changing its code path: lessons pass
``fast=lesson.FAST`` to the experiments and choose sizes with :func:`pick`.

Example::

    >>> from tl_lab import lesson
    >>> epochs = lesson.pick(full=100, fast=20)
    >>> lesson.result("digits_raw_pixels", 0.872)
    RESULT digits_raw_pixels = 0.872
    0.872
"""

from __future__ import annotations

import math
import os
import re

from tl_lab.exercises import measured

__all__ = ["FAST", "pick", "result", "results", "parse_results", "RESULT_LINE", "use_page_forms"]

FAST: bool = os.environ.get("TL_LAB_FAST", "").strip().lower() in ("1", "true", "yes", "on")
"""True under ``TL_LAB_FAST=1``: fewer epochs and images, the same code path."""

RESULT_LINE = re.compile(r"^RESULT (?P<name>[A-Za-z_][A-Za-z0-9_]*) = (?P<value>\S+)", re.MULTILINE)



def pick(full, fast):
    """``fast`` under ``TL_LAB_FAST=1``, else ``full`` (epochs, image counts, shots …)."""
    return fast if FAST else full


def result(name: str, value: float, *, digits: int = 3) -> float:
    """Print a measured number as ``RESULT name = value`` and return it (the tests read these lines)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"result names are identifiers like 'clipart_frozen_head', got {name!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"result {name!r} is NaN: the measurement failed; rerun the cell above it")
    measured.record(name, value)
    print(f"RESULT {name} = {value:.{digits}f}")
    return value


def results() -> dict[str, float]:
    """The numbers reported so far in this kernel (the checked exercises read the same store)."""
    return measured.results()


def parse_results(text: str) -> dict[str, float]:
    """The ``RESULT`` lines in ``text`` (a notebook's outputs) as ``{name: value}``; the last one of a name wins."""
    return {m["name"]: float(m["value"]) for m in RESULT_LINE.finditer(text)}


def use_page_forms() -> bool:
    """Turn on the static-page forms of figures and widgets in this kernel; returns whether a kernel was found.

    The same happens when ``tl_lab.plots`` or ``tl_lab.widgets`` is imported; a lesson that shows only its own
    plotly figures gets it from this module.
    """
    from tl_lab.plots.static import use_page_renderer
    from tl_lab.widgets.snapshot import install_snapshots

    use_page_renderer()
    return install_snapshots()


try:
    import IPython as _ipython

    if _ipython.get_ipython() is not None:
        use_page_forms()
except ImportError:  # pragma: no cover - IPython comes with Jupyter
    pass
