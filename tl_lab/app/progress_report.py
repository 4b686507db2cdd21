"""``tl-lab progress``: how many checked questions of each lesson this learner has passed (local file only).

An instructor collects ``tl-lab progress --json`` from each learner (on a hub, e.g. by asking them to run it, or
reading each home's progress file with their consent): nothing is ever sent anywhere by tl_lab.

Example::

    >>> import os, tempfile
    >>> os.environ["TL_LAB_PROGRESS_FILE"] = os.path.join(tempfile.mkdtemp(), "progress.json")
    >>> print(render().splitlines()[0])
    lesson  checked  questions
    >>> del os.environ["TL_LAB_PROGRESS_FILE"]
"""

from __future__ import annotations

import json

from tl_lab.exercises import progress, totals

__all__ = ["report", "render"]


def report() -> dict:
    """``{"file": path, "lessons": {lesson: {"checked": n, "total": m, "questions": {id: {...}}}}}``."""
    counts = progress.summary(totals())
    detail = progress.load()
    return {"file": str(progress.progress_file()),
            "lessons": {k: {**v, "questions": detail.get(k, {})} for k, v in counts.items()}}


def render(as_json: bool = False) -> str:
    doc = report()
    if as_json:
        return json.dumps(doc, indent=1, sort_keys=True)
    lines = ["lesson  checked  questions"]
    for lesson, row in doc["lessons"].items():
        lines.append(f"{lesson:<8}{row['checked']:>7}  {row['total']:>9}")
    done = sum(r["checked"] for r in doc["lessons"].values())
    total = sum(r["total"] for r in doc["lessons"].values())
    lines.append(f"{'all':<8}{done:>7}  {total:>9}")
    lines.append(f"(kept in {doc['file']}; nothing is sent anywhere)")
    return "\n".join(lines)
