"""What lesson notebooks share: the fast switch and the measured numbers a lesson reports.

Why: every claim a lesson makes is a number the learner's own run produced. A lesson reports it with
:func:`result`, which prints one plain line (``RESULT clipart_frozen_head = 0.671``) that a learner reads and that
the lesson tests parse, so a test can check that each number exists and points the right way (the checks live in
the notebook's metadata, ``metadata["tl_lab"]["checks"]``, next to the claim they guard).

In a Jupyter kernel the RESULT lines of one cell are one output (:class:`ResultGroup`), updated as each number
arrives: its ``text/plain`` form keeps one ``RESULT name = value`` line per number (what the tests and ``tl-lab
bench`` parse, :func:`parse_results`), its ``text/html`` form is one compact line, or for more than a few numbers a
collapsed ``<details>`` with a one-line headline, so thirty numbers no longer push a cell's figure a screen down.
Outside a kernel (scripts, doctests) each is printed as a line.

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

import html
import math
import os
import re
import threading

from tl_lab.exercises import measured

__all__ = ["FAST", "pick", "result", "results", "parse_results", "RESULT_LINE", "ResultGroup", "use_page_forms"]

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
    line = f"RESULT {name} = {value:.{digits}f}"
    if not _show_in_cell(line):
        print(line)
    return value


class ResultGroup:
    """The RESULT lines one notebook cell reported, shown as one output.

    ``text/plain``: one ``RESULT name = value`` line each, in order (machine-readable, :data:`RESULT_LINE`);
    ``text/html``: up to :attr:`INLINE` numbers on one line, more in a collapsed ``<details>`` whose summary names
    how many and the first few.

    Example::

        >>> g = ResultGroup()
        >>> g.add("RESULT a = 0.100"); g.add("RESULT b = 0.250")
        >>> g.bundle()["text/plain"]
        'RESULT a = 0.100\\nRESULT b = 0.250'
        >>> parse_results(g.bundle()["text/plain"])
        {'a': 0.1, 'b': 0.25}
    """

    INLINE = 3  # numbers shown on one line; more go into a collapsed list
    HEADLINE = 3  # numbers named in the collapsed list's summary

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def pairs(self) -> list[tuple[str, str]]:
        return [(m["name"], m["value"]) for line in self.lines for m in [RESULT_LINE.match(line)] if m]

    def html(self) -> str:
        pairs = self.pairs()
        items = [f"<code>{html.escape(n)}</code> = {html.escape(v)}" for n, v in pairs]
        style = "font-size:0.9em;color:#333;margin:2px 0"
        if len(pairs) <= self.INLINE:
            return f'<div class="tl-lab-results" style="{style}"><b>RESULT</b> ' + " · ".join(items) + "</div>"
        head = ", ".join(f"{html.escape(n)} = {html.escape(v)}" for n, v in pairs[:self.HEADLINE])
        grid = ("display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:0 16px;"
                "margin:4px 0 0 1.2em")
        cells = "".join(f'<div style="white-space:nowrap">{item}</div>' for item in items)
        return (f'<details class="tl-lab-results" style="{style}"><summary><b>RESULT</b> {len(pairs)} numbers '
                f"measured ({head}, …): click to show all</summary>"
                f'<div style="{grid}">{cells}</div></details>')

    def bundle(self) -> dict[str, str]:
        return {"text/plain": "\n".join(self.lines), "text/html": self.html()}


_group_lock = threading.Lock()
_group: dict = {"cell": None, "group": None, "display_id": None}


def _current_cell() -> object | None:
    """An identity of the notebook cell running now (its execute request), or None outside a Jupyter kernel."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with Jupyter
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None or threading.current_thread() is not threading.main_thread():
        return None  # a terminal, a script, or a background thread (its output would land in another cell)
    parent = kernel.get_parent() if hasattr(kernel, "get_parent") else getattr(kernel, "_parent_header", {})
    msg_id = (parent or {}).get("header", {}).get("msg_id")
    return msg_id or getattr(shell, "execution_count", None)


def _show_in_cell(line: str) -> bool:
    """Add ``line`` to this cell's :class:`ResultGroup` output (shown at the first, updated at each later); False
    outside a kernel, where the caller prints it."""
    cell = _current_cell()
    if cell is None:
        return False
    from IPython.display import display, update_display

    with _group_lock:
        if _group["cell"] != cell:
            group, display_id = ResultGroup(), f"tl-lab-results-{id(cell)}-{len(measured.order())}"
            _group.update(cell=cell, group=group, display_id=display_id)
            group.add(line)
            display(group.bundle(), raw=True, display_id=display_id)
        else:
            _group["group"].add(line)
            update_display(_group["group"].bundle(), raw=True, display_id=_group["display_id"])
    return True


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
