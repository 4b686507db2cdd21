"""Each lesson executed once per test session, as CI runs it: ``TL_LAB_FAST=1``, the checked questions' solutions
filled in, nbclient on the ``python3`` kernel, in a fresh folder holding a copy of the notebook.

tests/test_lessons.py checks the claims of the executed notebook and tests/browser/test_pages.py makes pages of the
same notebook: a lesson is executed once, not once per test file. Under pytest-xdist the workers share one folder
(the parent of their base temporary folders); a file lock makes the second worker that asks for a lesson wait for
the first one's execution and read its notebook.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CELL_TIMEOUT_S = 900
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class ExecutedLesson:
    name: str
    nb: nbformat.NotebookNode
    folder: Path  # where it ran: its runs, records and checkpoints are here
    seconds: float
    error: str | None  # the first failing cell, its source and traceback; None when every cell ran


def failing_cell(nb) -> tuple[int, str, str]:
    """(index, source, traceback) of the first code cell with an error output."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                tb = ANSI.sub("", "\n".join(out.get("traceback", [])))
                return i, cell.source, tb
    return -1, "", ""


def once_per_session(tmp_path_factory, name: str, make) -> tuple[Path, dict]:
    """Run ``make(folder) -> dict`` once per test session for ``name`` and return ``(folder, what it returned)``.

    Under pytest-xdist the workers share the folder (the parent of their base temporary folders): a file lock makes
    a second worker wait for the first one's work and read its record instead of repeating it."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "once_per_session"
    root.mkdir(parents=True, exist_ok=True)
    folder, done = root / name, root / f"{name}.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            done.write_text(json.dumps(make(folder)))
        return folder, json.loads(done.read_text())


def executed_lesson(name: str, tmp_path_factory) -> ExecutedLesson:
    """Lesson ``name`` (e.g. ``"00_start_here"``) executed in fast mode with its solutions, once per session."""

    def run(folder: Path) -> dict:
        seconds, error = _execute(name, folder)
        return {"seconds": seconds, "error": error}

    folder, info = once_per_session(tmp_path_factory, name, run)
    nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    return ExecutedLesson(name, nb, folder, info["seconds"], info["error"])


def _execute(name: str, folder: Path) -> tuple[float, str | None]:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from tl_lab import exercises
    from tl_lab.exercises.common import fill_solutions

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    copy = folder / f"{name}.ipynb"
    shutil.copy(ROOT / "notebooks" / copy.name, copy)
    nb = nbformat.read(copy, as_version=4)
    if name[:2] in exercises.totals():  # the checked questions' answer cells, with the solutions filled in
        fill_solutions(nb, name[:2])
    keys = ("TL_LAB_FAST", "PYTHONPATH")
    old = {k: os.environ.get(k) for k in keys}
    os.environ["TL_LAB_FAST"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), old["PYTHONPATH"]) if p)
    cwd = os.getcwd()
    os.chdir(folder)
    error = None
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
    except CellExecutionError as exc:
        index, source, tb = failing_cell(nb)
        error = (f"{name}: cell {index} raised an error\n--- cell source ---\n{source}\n"
                 f"--- traceback ---\n{tb or ANSI.sub('', str(exc))}")
    finally:
        seconds = time.perf_counter() - start
        os.chdir(cwd)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    nbformat.write(nb, copy)
    return seconds, error
