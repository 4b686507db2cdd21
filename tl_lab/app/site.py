"""``tl-lab site OUTDIR``: the lessons, executed, as an offline static course site.

Why: an instructor wants the lessons readable before class (on a course site, an LMS, a USB stick) with every
figure visible and nothing loaded from the network, and wants to know how long each lesson takes. The build runs
each lesson in a fresh kernel (nbclient, through :func:`tl_lab.app.lessons_bench.bench_notebook`, in a temporary
working folder) and writes:

- ``index.html``: every lesson's title, goal and measured time, with launch links;
- ``lessons/NN_name.html``: one page per lesson with all its outputs (:func:`tl_lab.app.pages.export_page`), a bar
  on top linking the index, the neighbours, the launch links and the lesson's recorded runs;
- ``runs/NN_name/*.html``: the replay page of each run record the lesson wrote (``run.record`` +
  ``tl_lab.embed.replay``; a record the lesson did not replay itself is replayed here);
- ``executed/NN_name.ipynb``: the executed notebooks the pages come from;
- ``manifest.json``: per lesson, the sha256 of its cells' sources and what the build measured. A later build executes
  again only the lessons whose source changed (or that failed, or that ran in the other mode, fast or full), and
  re-renders the pages from the executed notebooks, so new launch links cost no execution.

Example::

    >>> from tl_lab.links import CourseLinks
    >>> report = build_site("course_site", lessons=["00"], fast=True,                       # doctest: +SKIP
    ...                     links=CourseLinks(repo="https://github.com/me/tl_lab", hub="https://hub.example.edu",
    ...                                       folder="notebooks"))
    >>> report.executed, report.lessons[0].seconds                                          # doctest: +SKIP
    (['00_start_here.ipynb'], 57.1)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tl_lab.app.lessons import (
    LessonInfo,
    UnknownLessonError,
    lesson_fingerprint,
    lessons_source,
    packaged_lessons,
    read_notebook,
    small_files,
)
from tl_lab.app.links import CourseLinks

__all__ = ["MANIFEST", "LessonEntry", "SiteReport", "build_site", "collect_replays", "select_lessons"]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "tl_lab.site/1"
RECORD_FORMAT = "tl_lab.run-record/1"  # tl_lab.training.record.RECORD_FORMAT (a test keeps them equal): importing
# it would import tl_lab.training, hence torch, into a command that needs none of it
_RECORD_MAX_BYTES = 20_000_000


class Executor(Protocol):
    """Runs one lesson: ``(notebook, *, workdir, fast, executed) -> {"seconds": float, "error": str | None, ...}``,
    writing the executed notebook to ``executed`` (as :func:`tl_lab.app.lessons_bench.bench_notebook` does)."""

    def __call__(self, path: Path, *, workdir: Path, fast: bool, executed: Path) -> dict[str, Any]: ...


@dataclass
class LessonEntry:
    """One lesson in the manifest: where its files are (relative to OUTDIR) and what its last execution measured."""

    name: str
    number: int | None
    title: str
    goal: str
    source_sha256: str
    fast: bool
    seconds: float | None
    error: str | None
    executed: str
    page: str
    replays: list[dict[str, str]] = field(default_factory=list)
    built_at: str = ""
    peak_rss_mb: float | None = None
    page_key: str = ""
    stale: bool = False  # the source changed since, and this build was not asked to run it


@dataclass
class SiteReport:
    outdir: Path
    lessons: list[LessonEntry]
    executed: list[str]
    reused: list[str]

    @property
    def ok(self) -> bool:
        return all(e.error is None for e in self.lessons)

    @property
    def index(self) -> Path:
        return self.outdir / "index.html"


# ------------------------------------------------------------------------------------------------ choosing lessons


def select_lessons(lessons: Sequence[LessonInfo], wanted: Sequence[str] | None) -> list[LessonInfo]:
    """The lessons named in ``wanted`` (``"00"``, ``"7"``, ``"07_your_own_data"`` or the file name), in lesson order;
    all of them for None. An unknown name raises :class:`UnknownLessonError` listing the lessons."""
    if not wanted:
        return list(lessons)
    chosen = []
    for text in wanted:
        key = str(text).strip()
        hits = [i for i in lessons if key in (i.name, Path(i.name).stem)
                or (key.isdigit() and i.number is not None and int(key) == i.number)]
        if not hits:
            known = ", ".join(f"{i.number:02d}" if i.number is not None else Path(i.name).stem for i in lessons)
            raise UnknownLessonError(f"no lesson {key!r}; name lessons by number or file name, one of: {known}")
        chosen.extend(h for h in hits if h not in chosen)
    return [i for i in lessons if i in chosen]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source_hash(path: Path) -> str:
    """What decides a lesson's run: its cells' types and sources (:func:`lesson_fingerprint`); cell ids, outputs and
    metadata do not count, so re-saving a notebook unchanged does not make it run again."""
    return lesson_fingerprint(read_notebook(path) or {"cells": []})


# ------------------------------------------------------------------------------------------------ run records


def _title(page: Path) -> str | None:
    """The ``<title>`` of an HTML file (read from its first 4 kB, where save_html and replay write it)."""
    try:
        with page.open(encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    match = re.search(r"<title>(.*?)</title>", head, re.S)
    return html.unescape(match.group(1)).strip() if match else None


def collect_replays(workdir: Path, dest: Path, *, prefix: str) -> list[dict[str, str]]:
    """Replay pages for every run record (``format: tl_lab.run-record/1``) under ``workdir``, copied into ``dest``.

    A record's page is the one the lesson made with ``embed.replay``: the ``.html`` of the same name beside the
    record (replay's default), else an ``.html`` under ``workdir`` titled ``Run: <label>`` (replay's default title,
    as lesson 07's ``frozen_head.html``). A record the lesson did not replay is replayed here. Returns
    ``[{"label", "page", "record"}]``, ``page`` being ``prefix/<file>``.
    """
    found = []
    used: set[str] = set()
    titled = {}
    for page in sorted(workdir.rglob("*.html")):
        title = _title(page)
        if title and title.startswith("Run: "):
            titled.setdefault(title[len("Run: "):], page)
    for path in sorted(workdir.rglob("*.json")):
        try:
            if path.stat().st_size > _RECORD_MAX_BYTES:
                continue
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or doc.get("format") != RECORD_FORMAT:
            continue
        if not isinstance(doc.get("label"), str):
            continue  # not a record embed.replay can show (it needs at least the run's label)
        made = path.with_suffix(".html") if path.with_suffix(".html").is_file() else titled.get(doc["label"])
        name = made.stem if made is not None else path.stem
        while f"{name}.html" in used:
            name = f"{path.parent.name}-{name}" if not name.startswith(path.parent.name) else f"{name}-2"
        used.add(f"{name}.html")
        dest.mkdir(parents=True, exist_ok=True)
        page = dest / f"{name}.html"
        if made is not None:
            shutil.copyfile(made, page)
        else:
            from tl_lab.plots.embed import replay

            replay(path, page)
        found.append({"label": doc["label"], "page": f"{prefix}/{page.name}",
                      "record": path.relative_to(workdir).as_posix()})
    return found


# ------------------------------------------------------------------------------------------------ executing


def _bench_executor(timeout: int) -> Executor:
    def run(path: Path, *, workdir: Path, fast: bool, executed: Path) -> dict[str, Any]:
        from tl_lab.app.lessons_bench import bench_notebook

        return bench_notebook(path, fast=fast, timeout=timeout, workdir=workdir, executed=executed)

    return run


def _execute(info: LessonInfo, source: Path, outdir: Path, fast: bool, executor: Executor) -> dict[str, Any]:
    stem = Path(info.name).stem
    executed = outdir / "executed" / info.name
    executed.parent.mkdir(parents=True, exist_ok=True)
    executed.unlink(missing_ok=True)  # an earlier run's outputs must not stand in for this one's
    with tempfile.TemporaryDirectory(prefix=f"tl_lab_site_{stem}_") as tmp:
        workdir = Path(tmp)
        for rel in small_files(source)[0]:  # whatever the lesson reads beside it
            (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, workdir / rel)
        try:
            record = executor(source / info.name, workdir=workdir, fast=fast, executed=executed)
        except Exception as exc:  # noqa: BLE001 - a kernel that would not start: the site says so and goes on
            record = {"seconds": None, "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500]}
        if not executed.is_file():  # nothing ran: the page shows the lesson without outputs
            shutil.copyfile(source / info.name, executed)
        runs = outdir / "runs" / stem
        shutil.rmtree(runs, ignore_errors=True)  # replays of an earlier run of this lesson
        record["replays"] = collect_replays(workdir, runs, prefix=f"runs/{stem}")
    return record


# ------------------------------------------------------------------------------------------------ pages

_CSS = """body{font-family:Arial,Helvetica,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:26px} table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:8px;text-align:left;vertical-align:top} th{background:#f3f5f7}
td.num{text-align:right;white-space:nowrap} .goal{color:#555;font-size:14px} .err{color:#b00020}
.stale{color:#8a6d00} .note{color:#555;font-size:13px}
a.launch{display:inline-block;margin:2px 6px 2px 0;padding:2px 8px;border:1px solid #888;border-radius:4px;
text-decoration:none;color:#222;font-size:13px}"""

_NAV_CSS = """.tl-site-nav{font-family:Arial,Helvetica,sans-serif;font-size:14px;background:#f3f5f7;
border-bottom:1px solid #ccd;padding:8px 16px;margin:0 0 12px 0} .tl-site-nav a{margin-right:12px}
.tl-site-nav a.launch{display:inline-block;padding:1px 8px;border:1px solid #888;border-radius:4px;
text-decoration:none;color:#222} .tl-site-nav ul{margin:4px 0 0 0} .tl-site-nav .tl-err{color:#b00020}"""


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "not run"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _launch_html(links: CourseLinks | None, name: str, rel: str) -> str:
    if links is None:
        return ""
    found = links.for_lesson(name)
    parts = [f'<a class="launch" href="{html.escape(found["hub"])}" rel="{rel}">Open on the hub</a>' if found["hub"]
             else "",
             f'<a class="launch" href="{html.escape(found["binder"])}" rel="{rel}">Open on Binder</a>'
             if found["binder"] else ""]
    return "".join(parts)


def _nav(entry: LessonEntry, prev: LessonEntry | None, nxt: LessonEntry | None, links: CourseLinks | None) -> str:
    items = ['<a href="../index.html">All lessons</a>']
    if prev is not None:
        items.append(f'<a href="../{html.escape(prev.page)}">&larr; {html.escape(prev.title)}</a>')
    if nxt is not None:
        items.append(f'<a href="../{html.escape(nxt.page)}">{html.escape(nxt.title)} &rarr;</a>')
    items.append(f'<a href="../{html.escape(entry.executed)}" download>executed notebook (.ipynb)</a>')
    mode = "TL_LAB_FAST=1" if entry.fast else "full size"
    lines = [" ".join(items),
             f'<div>Measured time: <b>{_time(entry.seconds)}</b> ({mode}) '
             f'<span class="tl-launch">{_launch_html(links, entry.name, "noopener")}'
             "</span></div>"]
    if entry.error:
        lines.append(f'<div class="tl-err">This lesson stopped with an error: {html.escape(entry.error)}</div>')
    if entry.replays:
        runs = "".join(f'<li><a href="../{html.escape(r["page"])}">{html.escape(r["label"])}</a> '
                       f'<span>(replay of {html.escape(r["record"])})</span></li>' for r in entry.replays)
        lines.append(f'<div>Recorded runs of this lesson:<ul class="tl-replays">{runs}</ul></div>')
    return f'<style>{_NAV_CSS}</style><nav class="tl-site-nav">' + "".join(lines) + "</nav>"


def _decorate(page: str, nav: str) -> str:
    match = re.search(r"<body[^>]*>", page)
    if match is None:
        return nav + page
    return page[: match.end()] + "\n" + nav + page[match.end():]


def _index(entries: list[LessonEntry], links: CourseLinks | None) -> str:
    rows = []
    for e in entries:
        status = ""
        if e.error:
            status = f'<div class="err">error: {html.escape(e.error)}</div>'
        elif e.stale:
            status = '<div class="stale">the lesson changed since this page was built</div>'
        runs = "".join(f'<div><a href="{html.escape(r["page"])}">run: {html.escape(r["label"])}</a></div>'
                       for r in e.replays)
        rows.append(
            f'<tr class="lesson"><td class="num">{"" if e.number is None else f"{e.number:02d}"}</td>'
            f'<td><a class="title" href="{html.escape(e.page)}">{html.escape(e.title)}</a>'
            f'<div class="goal">{html.escape(e.goal)}</div>{status}{runs}</td>'
            f'<td class="num time" data-seconds="{"" if e.seconds is None else e.seconds}">{_time(e.seconds)}'
            f'{"" if not e.fast else "<div class=note>fast</div>"}</td>'
            f"<td>{_launch_html(links, e.name, 'noopener')}</td></tr>")
    note = ("Times are the wall time of each lesson, run top to bottom in a fresh kernel on the machine that built "
            "this site" + ("; those marked fast ran with TL_LAB_FAST=1 (smaller runs, the same code)."
                           if any(e.fast for e in entries) else "."))
    launch = "" if links is not None else ('<p class="note">Launch links appear when the site is built with '
                                           "<code>--repo</code> (and <code>--hub</code> for a JupyterHub).</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>tl_lab lessons</title>\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>tl_lab lessons</h1>\n<p class=\"note\">{note}</p>{launch}\n"
            "<table>\n<tr><th>#</th><th>lesson</th><th>time</th><th>open</th></tr>\n" + "\n".join(rows)
            + "\n</table>\n</body>\n</html>\n")


# ------------------------------------------------------------------------------------------------ the build


def _load_manifest(outdir: Path) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads((outdir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("lessons"), dict):
        return {}
    return doc["lessons"]


def _entry(doc: dict[str, Any]) -> LessonEntry | None:
    try:
        return LessonEntry(**{k: v for k, v in doc.items() if k in LessonEntry.__dataclass_fields__})
    except TypeError:
        return None


def _needs_run(old: LessonEntry | None, sha: str, fast: bool, outdir: Path) -> bool:
    return (old is None or old.source_sha256 != sha or old.fast != fast or old.error is not None
            or not (outdir / old.executed).is_file())


def build_site(outdir: str | os.PathLike[str], *, lessons: Sequence[str] | None = None, fast: bool = False,
               source: str | os.PathLike[str] | None = None, links: CourseLinks | None = None,
               executor: Executor | None = None,
               timeout: int = 900, echo: Callable[[str], None] = print) -> SiteReport:
    """Build (or update) the course site in ``outdir``; returns what was executed and what each lesson measured.

    ``lessons``: numbers or names (default: all); lessons built earlier and not named stay on the site. ``fast``:
    run under ``TL_LAB_FAST=1``. ``links``: a :class:`tl_lab.links.CourseLinks` for the launch links.
    ``executor`` replaces the kernel run (tests); ``timeout``: seconds allowed per cell.
    """
    from tl_lab.app import pages

    outdir = Path(outdir)
    source = lessons_source() if source is None else Path(source)
    available = packaged_lessons(source)
    if not available:
        raise FileNotFoundError(f"no lesson notebooks in {source}; pass the folder that holds them")
    chosen = select_lessons(available, lessons)
    if outdir.exists() and not outdir.is_dir():
        raise NotADirectoryError(f"{outdir} is a file; pass a folder for the site")
    outdir.mkdir(parents=True, exist_ok=True)
    run = executor if executor is not None else _bench_executor(timeout)
    manifest = _load_manifest(outdir)
    entries: dict[str, LessonEntry] = {}
    executed, reused = [], []
    for info in available:
        old = _entry(manifest[info.name]) if info.name in manifest else None
        sha = _source_hash(source / info.name)
        if info not in chosen:
            if old is not None and (outdir / old.executed).is_file():
                old.stale = old.source_sha256 != sha
                old.title, old.goal, old.number = info.title, info.goal, info.number
                entries[info.name] = old
            continue
        stem = Path(info.name).stem
        if not _needs_run(old, sha, fast, outdir):
            assert old is not None
            old.title, old.goal, old.number, old.stale = info.title, info.goal, info.number, False
            entries[info.name] = old
            reused.append(info.name)
            echo(f"{info.name}: unchanged, measured {_time(old.seconds)} earlier")
            continue
        echo(f"{info.name}: running ({'fast' if fast else 'full size'}) …")
        record = _execute(info, source, outdir, fast, run)
        entry = LessonEntry(name=info.name, number=info.number, title=info.title, goal=info.goal, source_sha256=sha,
                            fast=fast, seconds=record.get("seconds"), error=record.get("error"),
                            executed=f"executed/{info.name}", page=f"lessons/{stem}.html",
                            replays=record.get("replays", []), peak_rss_mb=record.get("peak_rss_mb"),
                            built_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        entries[info.name] = entry
        executed.append(info.name)
        echo(f"  {_time(entry.seconds)}" + (f", ERROR: {entry.error}" if entry.error else "")
             + (f", {len(entry.replays)} recorded run(s)" if entry.replays else ""))
    ordered = [entries[i.name] for i in available if i.name in entries]
    exporter = hashlib.sha256(Path(pages.__file__).read_bytes()).hexdigest()  # a new exporter renders anew
    for k, entry in enumerate(ordered):
        prev = ordered[k - 1] if k > 0 else None
        nxt = ordered[k + 1] if k + 1 < len(ordered) else None
        executed_nb = outdir / entry.executed
        nav = _nav(entry, prev, nxt, links)  # holds the time, the links, the neighbours and the replays
        key = hashlib.sha256("\n".join([exporter, _sha256(executed_nb), nav]).encode()).hexdigest()
        page = outdir / entry.page
        if entry.page_key == key and page.is_file():
            continue
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(_decorate(pages.export_page(executed_nb), nav), encoding="utf-8")
        entry.page_key = key
    (outdir / "index.html").write_text(_index(ordered, links), encoding="utf-8")
    (outdir / MANIFEST).write_text(json.dumps({"format": MANIFEST_FORMAT, "lessons": {e.name: asdict(e)
                                                                                     for e in ordered}}, indent=1),
                                   encoding="utf-8")
    return SiteReport(outdir=outdir, lessons=ordered, executed=executed, reused=reused)
