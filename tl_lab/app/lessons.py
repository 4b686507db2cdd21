"""The lesson catalog behind the JupyterLab extension: which lessons tl_lab ships, where the learner's copies are,
whether each copy is untouched, edited or behind a newer packaged version, and whether it was run to the end.

Why here and not in the browser: the extension must never overwrite a learner's work and never write outside the
Jupyter server's root, and both rules are easier to keep (and to test) in one small Python module than in
TypeScript. The server routes in :mod:`tl_lab.app.jupyter_server.handlers` are thin wrappers around these functions.

Paths are *API paths*, as in Jupyter's contents API: ``/``-separated, relative to the server's root, ``""`` for the
root itself. ::

    >>> ws = Workspace("/home/learner/work")
    >>> listing = catalog(ws, lessons_source())        # doctest: +SKIP
    >>> listing["folder"], listing["lessons"][0]["title"]  # doctest: +SKIP
    (None, 'Start here')                                  # not copied into the workspace yet
    >>> copy_into(ws, lessons_source(), "tl_lab_lessons")["copied"]  # doctest: +SKIP
    ['tl_lab_lessons/00_start_here.ipynb', ...]

A copy records which packaged version it came from (``metadata["tl_lab"]["copied_from"]``, a fingerprint of the
cells' sources), so a later tl_lab with a changed lesson is recognised and offered as a *separate* file
(``03_freeze.v0.2.0.ipynb``) next to the learner's copy, which stays as it is.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from tl_lab.app.links import CourseLinks
from tl_lab.exercises.questions import NO_SOLUTIONS_MARKER

__all__ = [
    "LESSONS_FOLDER",
    "LessonInfo",
    "LessonPathError",
    "UnknownLessonError",
    "Workspace",
    "SMALL_FILE_BYTES",
    "catalog",
    "content_readme",
    "copy_content",
    "copy_into",
    "is_completed",
    "lesson_fingerprint",
    "lesson_info",
    "open_lesson",
    "packaged_lessons",
    "small_files",
    "strip_outputs",
]

LESSONS_FOLDER = "tl_lab_lessons"
"""The folder a launcher card or the Lessons panel copies the lessons into, inside the current directory."""

State = Literal["missing", "same", "edited", "update", "differs"]
"""How a workspace copy relates to the packaged lesson.

``missing``: no copy. ``same``: the cells' sources equal the packaged ones (outputs do not count: running a lesson
is not editing it). ``edited``: the learner changed it and the packaged lesson is still the one it was copied from.
``update``: the packaged lesson changed since the copy was made. ``differs``: the sources differ and the copy does
not say where it came from (copied by hand or by ``tl-lab lessons --copy``), so either may be the case.
"""

_NUMBERED = re.compile(r"^(\d+)[_\-. ]")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


FIRST_LESSON = "00_start_here.ipynb"


def lessons_source() -> Path:
    """Where the lesson notebooks are: the repository's ``notebooks/`` (editable install) or the packaged copy."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "notebooks", package / "lessons"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the lesson notebooks are missing from this installation; reinstall tl-lab")



class LessonPathError(ValueError):
    """A path the extension refuses: outside the server's root, hidden, a file where a folder is needed.

    ``status`` is the HTTP status the server answers with (400 bad path, 404 no such folder, 409 a file is in the
    way).
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class UnknownLessonError(KeyError):
    """A lesson name that tl_lab does not ship; the message lists the ones it does."""

    def __str__(self) -> str:  # KeyError quotes its argument; the message is a sentence
        return str(self.args[0])


@dataclass(frozen=True)
class LessonInfo:
    """One packaged lesson, read from its notebook.

    ``title`` and ``goal`` come from ``metadata["tl_lab"]["title"/"goal"]``; without them, the title is the first
    markdown heading (else the file name) and the goal the first line of prose under it. ``fingerprint`` hashes the
    cells' types and sources only (see :func:`lesson_fingerprint`).
    """

    name: str
    number: int | None
    title: str
    goal: str
    fingerprint: str


# ------------------------------------------------------------------------------------------------ notebooks


def read_notebook(path: Path) -> dict[str, Any] | None:
    """The notebook at ``path`` as JSON data, or None when it is missing or not a notebook (never raises)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("cells"), list) else None


def _source(cell: Any) -> str:
    source = cell.get("source", "") if isinstance(cell, dict) else ""
    return "".join(source) if isinstance(source, list) else str(source)


def lesson_fingerprint(nb: dict[str, Any]) -> str:
    """sha256 of the cells' types and sources: outputs, execution counts, ids and metadata do not count.

        >>> a = {"cells": [{"cell_type": "code", "source": "1 + 1", "outputs": []}]}
        >>> b = {"cells": [{"cell_type": "code", "source": ["1 + 1"], "outputs": [{"text": "2"}],
        ...                 "execution_count": 3}]}
        >>> lesson_fingerprint(a) == lesson_fingerprint(b)
        True
    """
    cells = [[c.get("cell_type", ""), _source(c)] for c in nb.get("cells", []) if isinstance(c, dict)]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()


def _tl_lab_metadata(nb: dict[str, Any]) -> dict[str, Any]:
    meta = nb.get("metadata")
    meta = meta.get("tl_lab") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def _title_and_goal_from_markdown(nb: dict[str, Any]) -> tuple[str | None, str | None]:
    for cell in nb.get("cells", []):
        if not isinstance(cell, dict) or cell.get("cell_type") != "markdown":
            continue
        title, goal = None, None
        for line in _source(cell).splitlines():
            heading = _HEADING.match(line)
            if heading and title is None:
                title = heading.group(1)
            elif title is not None and line.strip() and not heading:
                goal = line.strip()
                break
        if title is not None:
            return title, goal
    return None, None


def _clean(text: str, limit: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"[*_`]", "", text)  # a one-line label, not markdown
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def lesson_info(path: Path) -> LessonInfo:
    """Title, goal, number and fingerprint of the lesson notebook at ``path`` (an unreadable one keeps its name)."""
    nb = read_notebook(path) or {"cells": []}
    meta = _tl_lab_metadata(nb)
    md_title, md_goal = _title_and_goal_from_markdown(nb)
    title = meta.get("title") if isinstance(meta.get("title"), str) else md_title
    goal = meta.get("goal") if isinstance(meta.get("goal"), str) else md_goal
    number = _NUMBERED.match(path.name)
    fallback = _NUMBERED.sub("", path.stem).replace("_", " ").strip().capitalize() or path.stem
    return LessonInfo(name=path.name, number=int(number.group(1)) if number else None,
                      title=_clean(title or fallback, 120), goal=_clean(goal or "", 240),
                      fingerprint=lesson_fingerprint(nb))


def is_completed(nb: dict[str, Any] | None) -> bool:
    """True when the saved notebook was run to the end: its last code cell ran and no saved output is an error.

        >>> cell = {"cell_type": "code", "source": "x = 1", "outputs": [], "execution_count": 4}
        >>> is_completed({"cells": [cell]}), is_completed({"cells": [dict(cell, execution_count=None)]})
        (True, False)
    """
    if nb is None:
        return False
    code = [c for c in nb.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"
            and _source(c).strip()]
    if not code or code[-1].get("execution_count") is None:
        return False
    return not any(isinstance(o, dict) and o.get("output_type") == "error"
                   for c in code for o in (c.get("outputs") or []))


_INFO_CACHE: dict[tuple[str, int, int], LessonInfo] = {}


def packaged_lessons(source: Path | None = None) -> list[LessonInfo]:
    """The lessons tl_lab ships (every ``*.ipynb`` in ``source``, default :func:`tl_lab.app.cli.lessons_source`), in
    lesson order: numbered ones by number, then the rest by name."""
    source = lessons_source() if source is None else Path(source)
    infos = []
    for path in source.glob("*.ipynb"):
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _INFO_CACHE:
            _INFO_CACHE[key] = lesson_info(path)
        infos.append(_INFO_CACHE[key])
    return sorted(infos, key=lambda i: (i.number is None, i.number if i.number is not None else 0, i.name))


def _find(lessons: list[LessonInfo], name: str) -> LessonInfo:
    for info in lessons:
        if info.name == name:
            return info
    known = ", ".join(i.name for i in lessons) or "none (the lesson notebooks are missing: reinstall tl-lab)"
    raise UnknownLessonError(f"unknown lesson {name!r}; the lessons are: {known}")


def _version() -> str:
    try:
        return importlib.metadata.version("tl-lab")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


# ------------------------------------------------------------------------------------------------ workspace


class Workspace:
    """The Jupyter server's root folder, and the only place the extension reads lessons from or writes them to.

    ``resolve(api_path)`` turns an API path into a real path and refuses absolute paths, ``..`` escapes, symbolic
    links that lead outside the root and (unless ``allow_hidden``) hidden folders.

        >>> ws = Workspace("/srv/work")
        >>> ws.resolve("../etc")
        Traceback (most recent call last):
        ...
        tl_lab.app.lessons.LessonPathError: '../etc' is outside the Jupyter server's root folder
    """

    def __init__(self, root: str | os.PathLike[str], *, allow_hidden: bool = False) -> None:
        self.root = Path(root).resolve()
        self.allow_hidden = allow_hidden

    def resolve(self, api_path: str) -> Path:
        if not isinstance(api_path, str):
            raise LessonPathError(f"a path must be a string, got {type(api_path).__name__}")
        if "\0" in api_path:
            raise LessonPathError("a path cannot contain a NUL character")
        text = api_path.strip().replace("\\", "/")
        if text.startswith("/") or re.match(r"^[A-Za-z]:", text) or text.startswith("~"):
            raise LessonPathError(f"{api_path!r} is not a path relative to the Jupyter server's root folder "
                                  "(write it as the file browser shows it, e.g. 'course/week1')")
        parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
        if ".." in parts:
            raise LessonPathError(f"{api_path!r} is outside the Jupyter server's root folder")
        if not self.allow_hidden and any(p.startswith(".") for p in parts):
            raise LessonPathError(f"{api_path!r} is in a hidden folder; choose a visible one")
        path = self.root.joinpath(*parts).resolve()
        if path != self.root and self.root not in path.parents:
            raise LessonPathError(f"{api_path!r} is outside the Jupyter server's root folder "
                                  "(a symbolic link leads out of it)")
        return path

    def api_path(self, path: Path) -> str:
        """The API path of ``path``, a path under the root (as :meth:`resolve` returns, plus a file name)."""
        relative = Path(os.path.normpath(path)).relative_to(self.root).as_posix()
        return "" if relative == "." else relative

    def folder(self, api_path: str) -> Path:
        """The existing folder at ``api_path`` (404 when missing, 409 when it is a file)."""
        path = self.resolve(api_path)
        if not path.exists():
            raise LessonPathError(f"there is no folder {api_path!r} in the Jupyter server's root folder", status=404)
        if not path.is_dir():
            raise LessonPathError(f"{api_path!r} is a file, not a folder", status=409)
        return path


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _candidates(hint: str) -> Iterator[str]:
    """Where lessons may be, nearest first: the hint folder and each of its parents up to the root, each itself
    and with ``tl_lab_lessons/`` or ``notebooks/`` (a clone of the tl_lab repository) inside."""
    parts = [p for p in hint.split("/") if p]
    for depth in range(len(parts), -1, -1):
        base = "/".join(parts[:depth])
        yield base
        yield _join(base, LESSONS_FOLDER)
        yield _join(base, "notebooks")


def find_folder(ws: Workspace, lessons: Iterable[LessonInfo], hint: str = "") -> str | None:
    """The API path of the nearest folder (see :func:`_candidates`) holding any packaged lesson, or None."""
    names = [i.name for i in lessons]
    ws.folder(hint)  # a bad or missing hint is an error, not "no lessons"
    for candidate in _candidates(hint):
        try:
            folder = ws.resolve(candidate)
        except LessonPathError:
            continue
        if folder.is_dir() and any((folder / n).is_file() for n in names):
            return candidate
    return None


def _state(info: LessonInfo, copy: dict[str, Any] | None) -> State:
    if copy is None:
        return "missing"
    fingerprint = lesson_fingerprint(copy)
    if fingerprint == info.fingerprint:
        return "same"
    origin = _tl_lab_metadata(copy).get("copied_from")
    origin = origin.get("fingerprint") if isinstance(origin, dict) else None
    if origin is None:
        return "differs"
    return "edited" if origin == info.fingerprint else "update"


def _update_name(info: LessonInfo, folder: Path) -> str:
    """The separate file a newer packaged version goes to: ``NN_name.vX.Y.Z.ipynb``, or with a short fingerprint
    when that name already holds something else."""
    stem = Path(info.name).stem
    plain = f"{stem}.v{_version()}.ipynb"
    existing = read_notebook(folder / plain)
    if not (folder / plain).exists() or (existing is not None and lesson_fingerprint(existing) == info.fingerprint):
        return plain
    return f"{stem}.v{_version()}-{info.fingerprint[:8]}.ipynb"


def _entry(ws: Workspace, info: LessonInfo, folder: Path | None) -> dict[str, Any]:
    copy = read_notebook(folder / info.name) if folder is not None else None
    state = _state(info, copy) if folder is None or (folder / info.name).exists() else "missing"
    update_path = None
    if folder is not None and state in ("update", "differs"):
        candidate = folder / _update_name(info, folder)
        if candidate.exists():
            update_path = ws.api_path(candidate)
    return {"name": info.name, "number": info.number, "title": info.title, "goal": info.goal,
            "path": ws.api_path(folder / info.name) if state != "missing" and folder is not None else None,
            "state": state, "completed": is_completed(copy), "update_path": update_path}


def catalog(ws: Workspace, source: Path | None = None, hint: str = "") -> dict[str, Any]:
    """Every packaged lesson with where the learner's copy is, its state and whether it was run to the end.

    ``{"folder": "tl_lab_lessons" | None, "first": "00_start_here.ipynb", "version": "0.1.0", "lessons": [{"name",
    "number", "title", "goal", "path", "state", "completed", "update_path"}, ...]}``; ``folder`` is None when no
    lesson is in the workspace yet (see :func:`find_folder` for where it looks, starting from ``hint``).
    """
    lessons = packaged_lessons(source)
    folder_api = find_folder(ws, lessons, hint)
    folder = ws.resolve(folder_api) if folder_api is not None else None
    return {"folder": folder_api, "first": _first(lessons), "version": _version(),
            "lessons": [_entry(ws, info, folder) for info in lessons]}


def _first(lessons: list[LessonInfo]) -> str | None:
    names = [i.name for i in lessons]
    return FIRST_LESSON if FIRST_LESSON in names else (names[0] if names else None)


def _write_new(path: Path, nb: dict[str, Any]) -> None:
    """Write ``nb`` to ``path`` atomically, failing with FileExistsError rather than replacing anything."""
    text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".tl_lab_", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.link(tmp, path)  # atomic, and refuses an existing target (a learner's file)
    finally:
        os.unlink(tmp)


def strip_outputs(nb: dict[str, Any]) -> dict[str, Any]:
    """``nb`` with every code cell's outputs and execution count removed (in place; returned for chaining).

    A lesson handed out must start clean: saved outputs would show results the learner did not produce, and (with
    widget state) can weigh megabytes.

        >>> nb = {"cells": [{"cell_type": "code", "source": "1", "outputs": [{"text": "1"}], "execution_count": 3}],
        ...       "metadata": {"widgets": {}}}
        >>> strip_outputs(nb)["cells"][0], "widgets" in nb["metadata"]
        ({'cell_type': 'code', 'source': '1', 'outputs': [], 'execution_count': None}, False)
    """
    for cell in nb.get("cells", []):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    meta = nb.get("metadata")
    if isinstance(meta, dict):
        meta.pop("widgets", None)  # saved widget state belongs to outputs
    return nb


def _copy_one(info: LessonInfo, source: Path, target: Path) -> None:
    nb = read_notebook(source / info.name)
    if nb is None:
        raise LessonPathError(f"the packaged lesson {info.name} is not a readable notebook; reinstall tl-lab",
                              status=500)
    strip_outputs(nb)
    meta = nb.setdefault("metadata", {})
    meta.setdefault("tl_lab", {})["copied_from"] = {"version": _version(), "fingerprint": info.fingerprint}
    _write_new(target, nb)


def copy_into(ws: Workspace, source: Path | None = None, dest: str = LESSONS_FOLDER, *,
              names: Iterable[str] | None = None, updates: bool = False) -> dict[str, Any]:
    """Copy packaged lessons into the folder ``dest`` (an API path, created if needed), never replacing a file.

    Lessons already there are kept as they are. With ``updates=True``, a lesson whose packaged version differs from
    the learner's copy (state ``update`` or ``differs``) is copied next to it as ``NN_name.vX.Y.Z.ipynb``.
    ``names`` limits the copy to some lessons (an unknown name raises :class:`UnknownLessonError`).
    Returns ``{"folder", "copied": [api paths], "updates": [api paths], "kept": [api paths]}``.
    """
    source = lessons_source() if source is None else Path(source)
    lessons = packaged_lessons(source)
    chosen = lessons if names is None else [_find(lessons, n) for n in names]
    folder = ws.resolve(dest)
    if folder.exists() and not folder.is_dir():
        raise LessonPathError(f"{dest!r} is a file, not a folder", status=409)
    folder.mkdir(parents=True, exist_ok=True)
    copied, update_copies, kept = [], [], []
    for info in chosen:
        target = folder / info.name
        if not target.exists():
            try:
                _copy_one(info, source, target)
                copied.append(ws.api_path(target))
                continue
            except FileExistsError:  # appeared meanwhile: it is the learner's now
                pass
        kept.append(ws.api_path(target))
        if updates and _state(info, read_notebook(target)) in ("update", "differs"):
            separate = folder / _update_name(info, folder)
            if not separate.exists():
                try:
                    _copy_one(info, source, separate)
                except FileExistsError:
                    continue
            update_copies.append(ws.api_path(separate))
    return {"folder": ws.api_path(folder), "copied": copied, "updates": update_copies, "kept": kept}


def open_lesson(ws: Workspace, source: Path | None = None, name: str | None = None,
                hint: str = "") -> dict[str, Any]:
    """Make sure lesson ``name`` (default: the first) is in the workspace and say where.

    It uses the nearest folder that already holds lessons (from ``hint``, see :func:`find_folder`) and copies only
    the lessons missing there; with none anywhere, it copies them all into ``<hint>/tl_lab_lessons``.
    Returns :func:`copy_into`'s dict plus ``"path"``, the API path of the lesson to open.
    """
    source = lessons_source() if source is None else Path(source)
    lessons = packaged_lessons(source)
    if not lessons:
        raise UnknownLessonError("tl_lab's lesson notebooks are missing from this installation; reinstall tl-lab")
    info = _find(lessons, name if name is not None else _first(lessons) or "")
    folder = find_folder(ws, lessons, hint)
    result = copy_into(ws, source, folder if folder is not None else _join(hint, LESSONS_FOLDER))
    result["path"] = _join(result["folder"], info.name)
    return result


# ------------------------------------------------------------------------------------------------ content folder

SMALL_FILE_BYTES = 1_000_000
"""Files beside the lessons up to this size travel with a content copy; larger ones are named, not copied (a git
repository that nbgitpuller clones for every learner should stay small)."""


def small_files(source: Path | None = None, *, limit: int = SMALL_FILE_BYTES) -> tuple[list[Path], list[Path]]:
    """``(small, large)``: the files beside the lessons in ``source`` (not notebooks, not hidden, not caches), split
    at ``limit`` bytes. The lessons build what they use from tl_lab's embedded data, so today this is their README."""
    source = lessons_source() if source is None else Path(source)
    small, large = [], []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if not path.is_file() or path.suffix == ".ipynb" or any(p.startswith(".") or p == "__pycache__"
                                                                 for p in rel.parts):
            continue
        (small if path.stat().st_size <= limit else large).append(rel)
    return small, large


def content_readme(lessons: Iterable[LessonInfo], links: CourseLinks) -> str:
    """A README (markdown) for a content folder: one row per lesson with its hub (nbgitpuller) link.

    ``links`` is a :class:`tl_lab.links.CourseLinks` with a hub, whose ``folder`` is where the content folder sits in
    the repository (``""``: it is the repository). No Binder links: a content repository carries no environment,
    so Binder would start one without tl-lab; Binder links point at the tl_lab repository itself.
    """
    if links.hub is None:
        raise ValueError("a README of links needs the hub's URL (CourseLinks(hub=...))")
    rows = []
    for info in lessons:
        title = info.title.replace("|", "\\|")
        rows.append(f"| {'' if info.number is None else f'{info.number:02d}'} | {title} | "
                    f"[open on the hub]({links.for_lesson(info.name)['hub']}) |")
    where = f"the folder `{links.folder}` of " if links.folder else ""
    branch = f" (branch `{links.branch}`)" if links.branch else ""
    return "\n".join([
        "# tl_lab lessons", "",
        f"These lessons are {where}the repository `{links.repo}`{branch}. A link below makes the hub pull the "
        "repository with nbgitpuller (it never overwrites a learner's edits) and opens the lesson. The hub needs "
        "nbgitpuller and tl-lab installed.", "",
        "| # | lesson | JupyterHub |", "|---|---|---|", *rows, "",
        "Made by `tl-lab lessons --copy`; the lessons are saved without outputs.", ""])


def copy_content(dest: str | os.PathLike[str], *, source: Path | None = None, names: Iterable[str] | None = None,
                 overwrite: bool = False, links: CourseLinks | None = None,
                 solutions: bool = True) -> dict[str, list[Path]]:
    """Write a content folder that nbgitpuller can serve: the lessons without outputs, the small files beside them
    (:func:`small_files`) and, given ``links`` (a :class:`tl_lab.links.CourseLinks` with a hub), a README listing
    each lesson's links. Nothing already in ``dest`` is replaced unless ``overwrite``.

    ``solutions=False`` writes a learner copy without solutions: cells tagged ``solution`` are left out of the
    lessons written, and a marker file (:data:`NO_SOLUTIONS_MARKER`) makes ``q.solution()`` of the checked questions
    say so in kernels started there; the checks themselves still work (they run inside tl_lab).

    Returns ``{"lessons": [...], "files": [...], "kept": [...], "large": [...]}`` (paths written, paths left as they
    were, files beside the lessons too large to copy).
    """
    import shutil

    source = lessons_source() if source is None else Path(source)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    lessons = packaged_lessons(source)
    chosen = lessons if names is None else [_find(lessons, n) for n in names]
    small, large = small_files(source)
    readme = dest / "README.md" if links is not None else None
    if overwrite:
        for info in chosen:
            (dest / info.name).unlink(missing_ok=True)
        for rel in small:
            (dest / rel).unlink(missing_ok=True)
        if readme is not None:
            readme.unlink(missing_ok=True)
    result = copy_into(Workspace(dest, allow_hidden=True), source, dest="", names=[i.name for i in chosen])
    written = [dest / p for p in result["copied"]]
    kept = [dest / p for p in result["kept"]]
    files = []
    if readme is not None:
        if readme.exists():
            kept.append(readme)
        else:
            readme.write_text(content_readme(chosen, links), encoding="utf-8")
            files.append(readme)
    for rel in small:
        target = dest / rel
        if target == readme:
            continue  # the links README takes the place of the lessons' own
        if target.exists():
            kept.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)
        files.append(target)
    if not solutions:
        for path in written:
            nb = json.loads(path.read_text(encoding="utf-8"))
            nb["cells"] = [c for c in nb.get("cells", []) if "solution" not in c.get("metadata", {}).get("tags", [])]
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        marker = dest / NO_SOLUTIONS_MARKER
        marker.write_text("tl_lab: the solutions of the checked questions are left out of this copy.\n",
                          encoding="utf-8")
        files.append(marker)
    return {"lessons": written, "files": files, "kept": kept, "large": [source / rel for rel in large]}
