"""``tl-lab site``: the course site's index, pages, replays and manifest, and that only changed lessons run again.

The fast tests replace the kernel with a recording executor (it writes an "executed" notebook and says how long it
took), so what is checked is the build's bookkeeping; the slow test runs real kernels on lesson 00 (fast mode) and
on a tiny lesson that records a run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from tl_lab.app.lessons import UnknownLessonError
from tl_lab.app.pages import page_figure_count
from tl_lab.app.site import MANIFEST, build_site, select_lessons
from tl_lab.links import CourseLinks

PLOTLY = "application/vnd.plotly.v1+json"


def _lesson(path: Path, title: str, goal: str, figures: int = 1) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["tl_lab"] = {"title": title, "goal": goal}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n{goal}")]
    nb.cells += [nbformat.v4.new_code_cell(f"fig{i}") for i in range(figures)]
    nbformat.write(nb, path)
    return path


def _record(label: str) -> dict:
    return {"format": "tl_lab.run-record/1", "name": label, "label": label,
            "config": {"data": {"name": "clipart", "shots": 2, "image_size": 64}},
            "history": [{"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}, {"epoch": 2, "train_loss": 0.5,
                                                                           "val_acc": 0.7}],
            "best": {"epoch": 2, "val_acc": 0.7, "test_acc": 0.6}, "timings": {"total_s": 1.5},
            "trainable_parameters": 10, "raw_pixel_baseline": None, "figures": {}}


class FakeKernel:
    """Stands in for nbclient: each "executed" notebook gets a plotly figure per code cell; records what ran."""

    def __init__(self, seconds: float = 12.5, fail: set[str] | None = None, records: dict | None = None):
        self.ran: list[str] = []
        self.seconds, self.fail, self.records = seconds, fail or set(), records or {}
        self.fast: list[bool] = []

    def __call__(self, path: Path, *, workdir: Path, fast: bool, executed: Path) -> dict:
        self.ran.append(path.name)
        self.fast.append(fast)
        nb = nbformat.read(path, as_version=4)
        for k, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            fig = {"data": [{"type": "bar", "x": ["a", "b"], "y": [1, k + 2]}], "layout": {"title": {"text": "</b>"}}}
            cell.outputs = [nbformat.v4.new_output("display_data", data={PLOTLY: fig})]
            cell.execution_count = k + 1
        for rel, (label, with_page) in self.records.get(path.name, {}).items():
            target = workdir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(_record(label)))
            if with_page:  # True: replay's default file name; a name: a page titled as replay titles it
                page = target.with_suffix(".html") if with_page is True else target.parent / with_page
                page.write_text(f"<html><head><title>Run: {label}</title></head>"
                                f"<body>replayed by the lesson: {label}</body></html>")
        (workdir / "tl_lab_runs").mkdir(exist_ok=True)
        (workdir / "tl_lab_runs" / "run.json").write_text(json.dumps({"config": {}}))  # fit's run.json: no record
        nbformat.write(nb, executed)
        error = "ValueError: boom" if path.name in self.fail else None
        return {"seconds": self.seconds, "error": error}


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "lessons"
    src.mkdir()
    _lesson(src / "00_first.ipynb", "First steps", "Measure a frozen head.", figures=2)
    _lesson(src / "01_second.ipynb", "Second <look>", "Look inside & compare.", figures=1)
    _lesson(src / "10_tenth.ipynb", "Tenth", "Zero shot.", figures=0)
    return src


LINKS = CourseLinks(repo="https://github.com/me/course", hub="https://hub.example.edu", folder="notebooks",
                    branch="main")


@pytest.mark.slow  # about 10 s: three pages with plotly.js and a replay
def test_index_pages_and_manifest(tmp_path, source):
    out = tmp_path / "site"
    kernel = FakeKernel(seconds=75.0, records={"01_second.ipynb": {
        "tl_lab_runs/lesson01/head_record.json": ("frozen head", True),
        "tl_lab_runs/lesson01/late_record.json": ("late & stages", "late.html"),  # as lesson 07 names its page
        "deep/other.json": ("fine tune", False)}})
    report = build_site(out, source=source, executor=kernel, links=LINKS, echo=lambda s: None)
    assert kernel.ran == ["00_first.ipynb", "01_second.ipynb", "10_tenth.ipynb"] and kernel.fast == [False] * 3
    assert report.executed == kernel.ran and report.reused == [] and report.ok

    index = (out / "index.html").read_text()
    for title, goal in [("First steps", "Measure a frozen head."), ("Second &lt;look&gt;", "Look inside &amp; "
                                                                                        "compare."),
                        ("Tenth", "Zero shot.")]:
        assert title in index and goal in index
    assert index.count('data-seconds="75.0"') == 3 and index.count(">75 s<") == 3
    hub = re.findall(r'href="(https://hub\.example\.edu/hub/user-redirect/git-pull\?[^"]+)"', index)
    assert len(hub) == 3 and "urlpath=lab%2Ftree%2Fcourse%2Fnotebooks%2F00_first.ipynb" in hub[0]
    assert index.count("https://mybinder.org/v2/gh/me/course/main?labpath=notebooks%2F") == 3

    page = (out / "lessons" / "01_second.html").read_text()
    assert page.count('class="tl-plotly"') == 1 and "tl-site-nav" in page
    assert 'href="../lessons/00_first.html"' in page and 'href="../lessons/10_tenth.html"' in page  # neighbours
    # a "</" in a figure cannot close the script early: it reaches the page escaped ("<\/" or plotly's "\u003c\u002f")
    assert "<\\/b>" in page or "\\u003c\\u002fb\\u003e" in page
    assert '"text": "</b>"' not in page and '"text":"</b>"' not in page
    assert (out / "lessons" / "00_first.html").read_text().count('class="tl-plotly"') == 2
    tenth = (out / "lessons" / "10_tenth.html").read_text()
    assert 'class="tl-plotly"' not in tenth and "Plotly.newPlot" not in tenth  # no figure: no 4 MB of plotly.js
    for html_page in [index, page]:
        assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?https?:", html_page)

    # the run records became replay pages, linked from the lesson page and the index; fit's run.json did not
    runs = sorted(p.name for p in (out / "runs" / "01_second").iterdir())
    assert runs == ["head_record.html", "late.html", "other.html"]
    assert "replayed by the lesson: frozen head" in (out / "runs" / "01_second" / "head_record.html").read_text()
    assert "replayed by the lesson: late & stages" in (out / "runs" / "01_second" / "late.html").read_text()
    replayed = (out / "runs" / "01_second" / "other.html").read_text()  # replayed by the site: a real replay page
    assert "fine tune" in replayed and "tl-run-table" in replayed
    assert 'href="../runs/01_second/head_record.html">frozen head</a>' in page
    assert 'href="runs/01_second/other.html">run: fine tune</a>' in index

    manifest = json.loads((out / MANIFEST).read_text())
    entry = manifest["lessons"]["00_first.ipynb"]
    from tl_lab.app.lessons import lesson_fingerprint, read_notebook

    assert entry["source_sha256"] == lesson_fingerprint(read_notebook(source / "00_first.ipynb"))
    assert entry["seconds"] == 75.0 and entry["fast"] is False and entry["error"] is None
    assert (out / entry["executed"]).is_file() and entry["page"] == "lessons/00_first.html"


@pytest.mark.slow  # about 5 s: five builds
def test_only_changed_lessons_run_again(tmp_path, source):
    out = tmp_path / "site"
    first = FakeKernel(seconds=30.0)
    build_site(out, source=source, executor=first, echo=lambda s: None)
    page = out / "lessons" / "00_first.html"
    stamp = page.stat().st_mtime_ns

    again = FakeKernel(seconds=99.0)
    report = build_site(out, source=source, executor=again, echo=lambda s: None)
    assert again.ran == [] and report.executed == [] and len(report.reused) == 3
    assert (out / "index.html").read_text().count('data-seconds="30.0"') == 3  # the times recorded earlier
    assert page.stat().st_mtime_ns == stamp  # nothing changed: the page was not even rewritten
    saved = json.loads((source / "00_first.ipynb").read_text())  # saved again: new cell id, metadata, layout
    saved["cells"][0]["id"], saved["metadata"]["note"] = "renamed-id", "saved again"
    (source / "00_first.ipynb").write_text(json.dumps(saved))
    assert build_site(out, source=source, executor=again, echo=lambda s: None).executed == []

    nb = nbformat.read(source / "01_second.ipynb", as_version=4)
    nb.cells[0].source += "\n\nOne more sentence."
    nbformat.write(nb, source / "01_second.ipynb")
    report = build_site(out, source=source, executor=again, echo=lambda s: None)
    assert again.ran == ["01_second.ipynb"] and report.executed == ["01_second.ipynb"]
    index = (out / "index.html").read_text()
    assert index.count('data-seconds="30.0"') == 2 and index.count('data-seconds="99.0"') == 1

    # launch links added later: pages re-rendered, nothing executed
    report = build_site(out, source=source, executor=again, links=LINKS, echo=lambda s: None)
    assert again.ran == ["01_second.ipynb"] and page.stat().st_mtime_ns != stamp
    assert "hub/user-redirect/git-pull" in page.read_text()

    # the other mode (fast) is another measurement: everything runs again, under TL_LAB_FAST=1
    fast = FakeKernel(seconds=5.0)
    build_site(out, source=source, executor=fast, fast=True, echo=lambda s: None)
    assert fast.ran == ["00_first.ipynb", "01_second.ipynb", "10_tenth.ipynb"] and fast.fast == [True] * 3


def test_a_failed_lesson_is_shown_and_runs_again(tmp_path, source):
    out = tmp_path / "site"
    report = build_site(out, source=source, executor=FakeKernel(fail={"01_second.ipynb"}), echo=lambda s: None)
    assert not report.ok and [e.name for e in report.lessons if e.error] == ["01_second.ipynb"]
    assert "error: ValueError: boom" in (out / "index.html").read_text()
    assert "stopped with an error: ValueError: boom" in (out / "lessons" / "01_second.html").read_text()
    retry = FakeKernel()
    report = build_site(out, source=source, executor=retry, echo=lambda s: None)
    assert retry.ran == ["01_second.ipynb"] and report.ok


def test_a_kernel_that_does_not_start_still_gives_a_page(tmp_path, source):
    def broken(path, *, workdir, fast, executed):
        raise RuntimeError("Kernel died before replying to kernel_info")

    report = build_site(tmp_path / "site", source=source, lessons=["0"], executor=broken, echo=lambda s: None)
    assert report.lessons[0].error == "RuntimeError: Kernel died before replying to kernel_info"
    assert report.lessons[0].seconds is None and (tmp_path / "site" / "lessons" / "00_first.html").is_file()
    assert ">not run<" in (tmp_path / "site" / "index.html").read_text()


def test_the_record_format_is_the_one_runs_write():
    from tl_lab.app.site import RECORD_FORMAT
    from tl_lab.training.record import RECORD_FORMAT as WRITTEN

    assert RECORD_FORMAT == WRITTEN


def test_choosing_lessons(tmp_path, source):
    from tl_lab.app.lessons import packaged_lessons

    lessons = packaged_lessons(source)
    assert [i.name for i in select_lessons(lessons, ["10", "0"])] == ["00_first.ipynb", "10_tenth.ipynb"]
    assert [i.name for i in select_lessons(lessons, ["01_second"])] == ["01_second.ipynb"]
    with pytest.raises(UnknownLessonError, match=r"no lesson '7'; name lessons by number or file name, one of: "
                                                 r"00, 01, 10"):
        select_lessons(lessons, ["7"])
    out = tmp_path / "site"
    kernel = FakeKernel()
    build_site(out, source=source, lessons=["01"], executor=kernel, echo=lambda s: None)
    build_site(out, source=source, lessons=["10"], executor=kernel, echo=lambda s: None)
    assert kernel.ran == ["01_second.ipynb", "10_tenth.ipynb"]
    index = (out / "index.html").read_text()
    assert "Second &lt;look&gt;" in index and "Tenth" in index and "First steps" not in index  # earlier builds stay
    nb = nbformat.read(source / "01_second.ipynb", as_version=4)
    nb.cells[0].source += "\n\nchanged"
    nbformat.write(nb, source / "01_second.ipynb")
    build_site(out, source=source, lessons=["10"], executor=kernel, echo=lambda s: None)
    assert "the lesson changed since this page was built" in (out / "index.html").read_text()


def test_site_command_reports_and_exits_with_the_outcome(tmp_path, capsys, monkeypatch):
    from tl_lab.app.cli import main

    kernel = FakeKernel(seconds=3.0, fail={"10_zero_and_few_shot.ipynb"})
    monkeypatch.setattr("tl_lab.app.site._bench_executor", lambda timeout: kernel)
    out = tmp_path / "s"
    assert main(["site", str(out), "--lessons", "10", "--fast"]) == 1
    captured = capsys.readouterr()
    assert "10_zero_and_few_shot.ipynb stopped with an error: ValueError: boom" in captured.err
    assert kernel.ran == ["10_zero_and_few_shot.ipynb"] and kernel.fast == [True]
    kernel.fail = set()
    assert main(["site", str(out), "--lessons", "10", "--fast"]) == 0
    assert f"site: {out / 'index.html'} (1 lesson(s) run, 0 unchanged)" in capsys.readouterr().out
    assert main(["site", str(out), "--lessons", "10", "--fast"]) == 0
    assert "(0 lesson(s) run, 1 unchanged)" in capsys.readouterr().out


def test_site_command_options(tmp_path, capsys):
    from tl_lab.app.cli import build_parser, main

    args = build_parser().parse_args(["site", str(tmp_path), "--lessons", "00", "10", "--fast", "--hub",
                                      "https://hub.example.edu", "--repo", "https://github.com/me/tl_lab"])
    assert args.lessons == ["00", "10"] and args.fast and args.path == "notebooks" and args.branch is None
    assert main(["site", str(tmp_path / "s"), "--lessons", "77"]) == 2
    assert "no lesson '77'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["site", str(tmp_path / "s"), "--repo", "https://github.com/me/tl_lab", "--hub", "hub.example.edu"])
    assert "write it in full" in str(exit_.value.code)


# ------------------------------------------------------------------------------------------------ real kernels

RECORDING_LESSON = [
    "# md\n# Records a run\n\nA tiny lesson that records a run and replays it, as lesson 07 does.",
    "from types import SimpleNamespace\nfrom pathlib import Path\nfrom tl_lab.training.record import record\n"
    "from tl_lab.plots.embed import replay\n"
    "run = SimpleNamespace(name='tiny', label='tiny run', config={'data': {'name': 'clipart'}},\n"
    "    history=[{'epoch': 1, 'train_loss': 1.0, 'val_acc': 0.4}, {'epoch': 2, 'train_loss': 0.6, 'val_acc': 0.6},\n"
    "             {'epoch': 3, 'train_loss': 0.4, 'val_acc': 0.7}],\n"
    "    best={'epoch': 3, 'val_acc': 0.7, 'test_acc': 0.65}, timings={'total_s': 2.0}, stopped_early=False,\n"
    "    stop_reason=None, trainable_parameters=8967)\n"
    "page = replay(record(run, Path('tl_lab_runs') / 'tiny_record.json', baseline=0.3))\nprint(page)",
]


def write_recording_lesson(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["tl_lab"] = {"title": "Records a run", "goal": "Record and replay."}
    for src in RECORDING_LESSON:
        nb.cells.append(nbformat.v4.new_markdown_cell(src[5:]) if src.startswith("# md\n")
                        else nbformat.v4.new_code_cell(src))
    nbformat.write(nb, path)
    return path


def build_real_site(out: Path, source: Path) -> int:
    """``tl-lab site`` on lesson 00 and the recording lesson, fast, in a subprocess (as an instructor runs it)."""
    import os
    import subprocess
    import sys

    from tl_lab.app.lessons import lessons_source

    source.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(lessons_source() / "00_start_here.ipynb", source / "00_start_here.ipynb")
    write_recording_lesson(source / "99_records.ipynb")
    code = ("import sys; from tl_lab.app.site import build_site; from tl_lab.links import CourseLinks; "
            f"r = build_site({str(out)!r}, source={str(source)!r}, fast=True, "
            "links=CourseLinks(repo='https://github.com/me/tl_lab', hub='https://hub.example.edu', "
            "folder='notebooks')); print('EXECUTED', len(r.executed)); sys.exit(0 if r.ok else 1)")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return int(re.search(r"EXECUTED (\d+)", done.stdout).group(1))


def plotly_outputs(executed: Path) -> int:
    nb = nbformat.read(executed, as_version=4)
    return sum(PLOTLY in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def shared_real_site(tmp_path_factory) -> Path:
    """The real site (lesson 00 and the recording lesson) built once per session by :func:`build_real_site`, which
    must execute both; tests/browser/test_site.py opens the same site (tests/executed_lessons.py shares it between
    pytest-xdist workers)."""
    from executed_lessons import once_per_session

    def build(root: Path) -> dict:
        root.mkdir(parents=True, exist_ok=True)
        return {"executed": build_real_site(root / "site", root / "src")}

    root, built = once_per_session(tmp_path_factory, "real_site", build)
    assert built["executed"] == 2
    return root


@pytest.mark.slow
def test_real_build_of_lesson_00_and_a_recorded_run(tmp_path_factory, tmp_path):
    shared = shared_real_site(tmp_path_factory)
    out = shared / "site"
    manifest = json.loads((out / MANIFEST).read_text())["lessons"]
    first = manifest["00_start_here.ipynb"]
    assert first["error"] is None and first["fast"] is True and 5 < first["seconds"] < 900
    produced = page_figure_count(nbformat.read(out / first["executed"], as_version=4))
    assert produced["figures"] >= 2  # lesson 00 shows its images and its comparison
    figures = produced["figures"] + produced["widget_figures"]  # and TransferLab's snapshot may hold a chart
    assert plotly_outputs(out / first["executed"]) == produced["figures"]
    page = (out / first["page"]).read_text()
    assert page.count('class="tl-plotly"') == figures
    assert page.count("Plotly.newPlot") == figures and not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']?https?:", page)
    assert "RESULT" in page  # the lesson's measured numbers are on the page
    index = (out / "index.html").read_text()
    assert f'data-seconds="{first["seconds"]}"' in index and "Start here" in index
    records = manifest["99_records.ipynb"]
    assert records["replays"] == [{"label": "tiny run", "page": "runs/99_records/tiny_record.html",
                                   "record": "tl_lab_runs/tiny_record.json"}]
    replay_page = (out / "runs" / "99_records" / "tiny_record.html").read_text()
    assert "tiny run" in replay_page and "8,967" in replay_page
    shutil.copytree(shared / "src", tmp_path / "src")  # a copy, so the browser test may read the shared site now
    shutil.copytree(out, tmp_path / "site")
    assert build_real_site(tmp_path / "site", tmp_path / "src") == 0  # nothing changed: nothing runs
