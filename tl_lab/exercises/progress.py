"""A learner's progress: which questions of which lesson they have checked, kept in a local file only.

The file is ``progress.json`` in tl_lab's folder of the user's Jupyter data directory
(``jupyter --data-dir``/tl_lab), or the path in ``TL_LAB_PROGRESS_FILE``. Nothing is sent anywhere; an
instructor collects it with ``tl-lab progress --json``. A question counts as *checked* once it passed, and a
"predict, then run" question once its prediction was held against a run (a wrong prediction is feedback).

Example::

    >>> import os, tempfile
    >>> os.environ["TL_LAB_PROGRESS_FILE"] = os.path.join(tempfile.mkdtemp(), "progress.json")
    >>> mark("03", "q2", kind="code", passed=True)
    >>> summary({"03": 4})
    {'03': {'checked': 1, 'total': 4}}
    >>> del os.environ["TL_LAB_PROGRESS_FILE"]
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["progress_file", "load", "mark", "summary", "reset"]

_lock = threading.Lock()


def progress_file() -> Path:
    """Where progress is kept: ``$TL_LAB_PROGRESS_FILE``, else ``<jupyter data dir>/tl_lab/progress.json``."""
    env = os.environ.get("TL_LAB_PROGRESS_FILE")
    if env:
        return Path(env).expanduser()
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "tl_lab" / "progress.json"


def load() -> dict:
    """``{lesson: {question: {"kind", "passed", "checked_at"}}}``; an unreadable file reads as empty (and is
    left in place: nothing is lost)."""
    path = progress_file()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}
    lessons = doc.get("lessons", {}) if isinstance(doc, dict) else {}
    return lessons if isinstance(lessons, dict) else {}


def mark(lesson: str, question: str, *, kind: str, passed: bool) -> None:
    """Record that ``question`` of ``lesson`` was checked (a pass is never overwritten by a later miss)."""
    with _lock:
        lessons = load()
        entry = lessons.setdefault(lesson, {}).get(question, {})
        lessons[lesson][question] = {"kind": kind, "passed": bool(passed or entry.get("passed")),
                                     "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _write(progress_file(), {"version": 1, "lessons": lessons})


def summary(totals: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """``{lesson: {"checked": n, "total": m}}`` for the lessons in ``totals`` (``{lesson: question count}``)."""
    lessons = load()
    passed = {lesson: sum(bool(e.get("passed")) for e in qs.values()) for lesson, qs in lessons.items()
              if isinstance(qs, dict)}
    return {lesson: {"checked": min(passed.get(lesson, 0), total), "total": total}
            for lesson, total in totals.items()}


def reset(lesson: str | None = None) -> None:
    """Forget the progress of one lesson, or of all."""
    with _lock:
        lessons = {} if lesson is None else {k: v for k, v in load().items() if k != lesson}
        _write(progress_file(), {"version": 1, "lessons": lessons})


def _write(path: Path, doc: dict) -> None:
    """Write atomically (a temporary file renamed over the old one): a full disk leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".progress-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
