"""``tl-lab bench --lessons`` measures real wall time and peak memory of a lesson run in a fresh kernel.

Cheap by construction: the notebooks are tiny ones written here (one sleeps, one allocates a known amount of
memory), so the test checks the measurements against numbers it controls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tl_lab.app.lessons_bench import bench_lessons, evaluate_checks, lesson_paths, main
from tl_lab.app.memory import PeakMemory, rss_mb

ALLOC_MB = 300


def write_notebook(path, cells, checks):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["tl_lab"] = {"title": "tiny", "goal": "test the lessons bench", "checks": checks}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def tiny_lesson(tmp_path):
    return write_notebook(tmp_path / "00_tiny.ipynb", [
        new_markdown_cell("# A tiny lesson"),
        new_code_cell("import time\nfrom tl_lab import lesson\ntime.sleep(0.5)\n"
                      f"block = bytearray({ALLOC_MB} * 2**20)  # touched below, so it is resident\n"
                      "block[::4096] = b'x' * len(block[::4096])\n"
                      "lesson.result('answer', 42)\nlesson.result('fast_flag', float(lesson.FAST))"),
    ], [["answer", ">", 41], ["answer", "==", "answer"], ["fast_flag", "==", 1]])


@pytest.mark.slow  # starts a kernel (a few seconds)
def test_bench_reports_real_time_memory_and_results(tiny_lesson, tmp_path):
    out = tmp_path / "bench_lessons.json"
    report = bench_lessons([tiny_lesson], out=out, fast=True, echo=lambda s: None)
    assert json.loads(out.read_text()) == report
    [rec] = report["lessons"]
    assert rec["lesson"] == "00_tiny.ipynb" and rec["error"] is None and rec["fast"] is True
    assert 0 < rec["cpu_seconds"] <= rec["seconds"] * (os.cpu_count() or 1)  # a kernel cannot use more CPU
    assert rec["seconds"] >= rec["cells_seconds"] >= 0.5          # the cell sleeps half a second
    assert list(rec["cell_seconds"]) == ["1"] and rec["cell_seconds"]["1"] >= 0.5   # per code cell, by index
    assert ALLOC_MB < rec["peak_rss_mb"] < ALLOC_MB + 1500        # the kernel held the block, plus Python + torch
    assert rec["peak_tree_rss_mb"] > ALLOC_MB * 0.5               # the sampled view saw it too
    assert rec["fits_memory_limit"] == (rec["peak_rss_mb"] <= report["memory_limit_mb"])
    assert rec["results"] == {"answer": 42.0, "fast_flag": 1.0}   # TL_LAB_FAST=1 reached the kernel
    assert rec["checks_ok"] and [c["ok"] for c in rec["checks"]] == [True, True, True]
    assert report["max_peak_rss_mb"] == rec["peak_rss_mb"]


@pytest.mark.slow
def test_a_failing_cell_is_reported_with_what_was_measured(tmp_path):
    nb = write_notebook(tmp_path / "01_broken.ipynb", [
        new_code_cell("from tl_lab import lesson\nlesson.result('before', 1)"),
        new_code_cell("raise ValueError('this lesson is broken')"),
        new_code_cell("lesson.result('after', 2)"),
    ], [["after", ">", 1]])
    out = tmp_path / "report.json"
    assert main([str(nb), "--json", str(out)]) == 1             # the command line says it failed
    [rec] = json.loads(out.read_text())["lessons"]
    assert "this lesson is broken" in rec["error"] and rec["error_cell"] == 1
    assert rec["results"] == {"before": 1.0}                      # later cells did not run
    assert rec["checks"] == [{"check": "after > 1", "ok": False, "why": "no RESULT line for after"}]
    assert rec["peak_rss_mb"] > 10 and rec["seconds"] > 0


def test_checks_compare_names_and_numbers():
    got = evaluate_checks([["a", ">", "b"], ["a", "<=", 0.5], ["c", ">", 0], ["a", "~", 1]], {"a": 0.7, "b": 0.2})
    assert [g["ok"] for g in got] == [True, False, False, False]
    assert "no RESULT line for c" in got[2]["why"] and "unknown operator" in got[3]["why"]


def test_lesson_paths_finds_numbered_notebooks_in_order(tmp_path):
    for name in ("10_b.ipynb", "02_a.ipynb", "README.md", "notes.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in lesson_paths(tmp_path)] == ["02_a.ipynb", "10_b.ipynb"]


def test_the_one_memory_sampler_sees_this_process_and_its_children():
    """bench and the lessons bench share PeakMemory: here against allocations of known size.

    The own-process case runs in a fresh interpreter: inside the test process, other tests' leftover threads and
    freed memory moved its RSS by more than the block (one fast-tier run measured the same peak with and without it).
    """
    own = subprocess.run([sys.executable, "-c", (
        "import time\nfrom tl_lab.app.memory import PeakMemory\n"
        "with PeakMemory() as quiet:\n    pass\n"
        "with PeakMemory() as mine:\n"
        "    block = bytearray(120 * 2**20)\n"
        "    block[::4096] = b'x' * len(block[::4096])  # touched: resident\n"
        "    time.sleep(0.3)  # held long enough for the sampling thread to see it\n"
        "    del block\n"
        "print(mine.peak_mb - quiet.peak_mb, mine.samples)")], capture_output=True, text=True, timeout=60)
    assert own.returncode == 0, own.stderr
    grew, samples = own.stdout.split()
    assert 100 < float(grew) < 160 and int(samples) >= 2
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nb = bytearray(150 * 2**20)\nb[::4096] = b'x' * len(b[::4096])\n"
        "print('ready', flush=True)\ntime.sleep(30)")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with PeakMemory(children=False, interval=0.01) as alone, PeakMemory(children=True, interval=0.01) as tree:
            time.sleep(0.1)
        assert rss_mb(child.pid) > 150
        assert tree.peak_mb - alone.peak_mb > 140  # the child's block counts only in the tree's sum
        with PeakMemory(child.pid, interval=0.01) as other:  # another process by pid
            time.sleep(0.05)
        assert other.peak_mb == pytest.approx(rss_mb(child.pid), rel=0.05) and other.cuda_peak_mb is None
    finally:
        child.kill()
        child.wait()
    assert rss_mb(child.pid) == 0.0  # gone: nothing to read
    with pytest.raises(ValueError, match="interval must be > 0"):
        PeakMemory(interval=0)


@pytest.mark.slow  # two kernels that import torch
def test_each_thread_count_runs_in_its_own_kernel_with_that_count(tmp_path):
    nb = write_notebook(tmp_path / "03_threads.ipynb", [
        new_code_cell("import torch, tl_lab.backbones\nfrom tl_lab import lesson\n"
                      "lesson.result('threads_seen', torch.get_num_threads())"),
    ], [["threads_seen", ">=", 1]])
    report = bench_lessons([nb], out=None, fast=True, echo=lambda s: None, threads=[1, 2])
    assert [(r["threads"], r["torch_threads"], r["results"]["threads_seen"]) for r in report["lessons"]] == \
        [(1, 1, 1.0), (2, 2, 2.0)]                                  # the count reached torch, and tl_lab left it
    [row] = report["table"]
    assert row["lesson"] == "03_threads.ipynb" and row["ok"]
    assert row["seconds"] == {"1": report["lessons"][0]["seconds"], "2": report["lessons"][1]["seconds"]}
    assert row["peak_rss_mb"] == {"1": report["lessons"][0]["peak_rss_mb"], "2": report["lessons"][1]["peak_rss_mb"]}
    assert report["threads"] == [1, 2]


def test_threads_table_and_its_markdown():
    from tl_lab.app.lessons_bench import format_table, threads_table

    records = [
        {"lesson": "01_a.ipynb", "threads": 1, "seconds": 30.4, "peak_rss_mb": 900.2, "error": None, "checks_ok": True},
        {"lesson": "01_a.ipynb", "threads": 2, "seconds": 20.6, "peak_rss_mb": 950.0, "error": None, "checks_ok": True},
        {"lesson": "02_b.ipynb", "threads": 1, "seconds": 5.0, "peak_rss_mb": 700.0, "error": "boom", "checks_ok": True},
    ]
    table = threads_table(records)
    assert table == [
        {"lesson": "01_a.ipynb", "seconds": {"1": 30.4, "2": 20.6}, "peak_rss_mb": {"1": 900.2, "2": 950.0}, "ok": True},
        {"lesson": "02_b.ipynb", "seconds": {"1": 5.0}, "peak_rss_mb": {"1": 700.0}, "ok": False},
    ]
    assert format_table(table).splitlines() == [
        "| lesson | s, 1 thread | s, 2 threads | peak MB, 1 thread | peak MB, 2 threads |",
        "|---|---|---|---|---|",
        "| 01_a.ipynb | 30 | 21 | 900 | 950 |",
        "| 02_b.ipynb (failed) | 5 | - | 700 | - |",
    ]


def test_a_bad_thread_count_is_refused(tiny_lesson):
    from tl_lab.app.lessons_bench import bench_notebook

    with pytest.raises(ValueError, match="threads must be a positive int or None"):
        bench_notebook(tiny_lesson, threads=0)
