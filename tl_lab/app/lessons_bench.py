"""``tl-lab bench --lessons``: run every lesson notebook top to bottom and report its wall time and peak memory.

Why: a teacher choosing a hub (Binder gives 1-2 GB and a couple of CPU cores) needs to know that each lesson fits
and how long it takes there, measured on that machine. Each notebook runs in a fresh kernel (nbclient), in a
temporary working folder so the files lessons write never land next to the notebooks. Reported per lesson:

- ``seconds``: wall time from kernel start to the last cell (``cells_seconds``: the cells alone;
  ``cell_seconds``: per code cell, keyed by the cell's index, to find the slow ones);
- ``peak_rss_mb``: the kernel process's peak resident memory (Linux ``VmHWM``; elsewhere sampled with psutil, or
  ``getrusage(RUSAGE_CHILDREN)`` after the kernel exits);
- ``peak_tree_rss_mb``: the largest sampled sum over the kernel and its child processes (a lesson that starts
  ``tl-lab train`` in a subprocess), sampled every ``interval`` seconds;
- ``cpu_seconds``: CPU time the kernel (and its finished child processes) used: on a shared, busy machine wall
  time stretches but CPU time barely does, so it tells what an idle machine would take (between
  ``cpu_seconds / cores`` and ``cpu_seconds``);
- ``results``: the ``RESULT name = value`` lines the lesson printed, and ``checks``: its metadata checks
  (``metadata["tl_lab"]["checks"]``) evaluated on them;
- ``threads``: the thread count the kernel was given (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``; None: tl_lab's own
  rule, :mod:`tl_lab.limits`) and ``torch_threads``: the count torch used, asked from the kernel after the lesson.

``threads=[1, 2]`` runs each lesson once per count, each in its own fresh kernel: a hub's pod of 1 CPU and one of 2.
``report["table"]`` then holds, per lesson, seconds and peak memory at each count (:func:`format_table` prints it).

Example::

    >>> from tl_lab.app.lessons_bench import bench_lessons
    >>> report = bench_lessons(["notebooks/05_attributions.ipynb"], out="bench_lessons.json")   # doctest: +SKIP
    >>> report["lessons"][0]["seconds"], report["lessons"][0]["peak_rss_mb"]                    # doctest: +SKIP
    (141.2, 1130.5)
"""

from __future__ import annotations

import json
import operator
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tl_lab.app.memory import PeakMemory

__all__ = ["bench_lessons", "bench_notebook", "evaluate_checks", "format_table", "lesson_paths", "main",
           "threads_table"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colours in tracebacks
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}


def lesson_paths(folder: str | os.PathLike | None = None) -> list[Path]:
    """The numbered lesson notebooks (``NN_*.ipynb``), in order; default: tl_lab's own lessons folder."""
    if folder is None:
        from tl_lab.app.lessons import lessons_source

        folder = lessons_source()
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def evaluate_checks(checks: Iterable[Sequence[Any]], results: dict[str, float]) -> list[dict]:
    """Each ``[left, op, right]`` check (names of results or numbers) as ``{"check", "ok", "why"}``."""
    out = []
    for left, op, right in checks:
        text = f"{left} {op} {right}"
        if op not in _OPS:
            out.append({"check": text, "ok": False, "why": f"unknown operator {op!r}; use one of {', '.join(_OPS)}"})
            continue
        values = []
        for side in (left, right):
            values.append(side if isinstance(side, (int, float)) else results.get(side))
        missing = [s for s, v in zip((left, right), values) if v is None]
        if missing:
            out.append({"check": text, "ok": False, "why": f"no RESULT line for {', '.join(map(str, missing))}"})
            continue
        ok = bool(_OPS[op](float(values[0]), float(values[1])))
        out.append({"check": text, "ok": ok, "why": f"{values[0]:.4g} {op} {values[1]:.4g}"})
    return out


def _kernel_peak_mb(pid: int) -> float | None:
    """The kernel's own peak RSS so far: ``VmHWM`` from /proc (Linux), else None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of the kernel and its waited-for children (Linux /proc), else psutil, else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system + t.children_user + t.children_system
    except Exception:  # noqa: BLE001 - psutil missing or the process is gone
        return None


def _outputs_text(nb: Any) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def bench_notebook(path: str | os.PathLike, *, fast: bool = False, timeout: int = 900, interval: float = 0.1,
                   workdir: str | os.PathLike | None = None, kernel_name: str = "python3",
                   executed: str | os.PathLike | None = None, threads: int | None = None,
                   trace: bool = False) -> dict:
    """Run one notebook in a fresh kernel; return its timings, peak memory, results and checks.

    ``fast`` sets ``TL_LAB_FAST=1`` for the kernel. A cell that raises ends the run: the record then holds
    ``error`` (the exception's first line) and the cell index, with the time and memory up to that point.
    ``executed``: also write the notebook with its outputs there, to look at what the lesson showed.
    ``threads``: the kernel's thread count (``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``, which tl_lab leaves alone
    and torch reads when it loads); None leaves the environment's (normally unset: tl_lab's CPU-limit rule).
    ``trace``: record the tl_lab functions the lesson calls (``record["calls"]``, :mod:`tl_lab.app.references`).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    from tl_lab.app.lesson import parse_results

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env.pop("TL_LAB_FAST", None)
    if fast:
        env["TL_LAB_FAST"] = "1"
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int or None (tl_lab's own rule); got {threads!r}")
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    record: dict[str, Any] = {"lesson": path.name, "fast": fast, "threads": threads, "error": None}
    with tempfile.TemporaryDirectory(prefix="tl_lab_lesson_") as tmp:
        cwd = Path(workdir) if workdir is not None else Path(tmp)
        cwd.mkdir(parents=True, exist_ok=True)
        client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, resources={"metadata": {"path": str(cwd)}})
        start = time.perf_counter()
        peak = None
        pid = None
        with client.setup_kernel(env=env, cwd=str(cwd)):
            pid = client.km.provisioner.pid if client.km.provisioner is not None else None
            cells_start = time.perf_counter()
            sampler = PeakMemory(pid, children=True, interval=interval) if pid else None
            try:
                if sampler:
                    sampler.__enter__()
                cell_times = record["cell_seconds"] = {}
                if trace:
                    from tl_lab.app.references import TRACE_START

                    _run_probe(client, TRACE_START)
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    t_cell = time.perf_counter()
                    try:
                        client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
                    except CellExecutionError as exc:
                        cell_times[str(index)] = round(time.perf_counter() - t_cell, 2)
                        text = _ANSI.sub("", str(exc)).strip()
                        record["error"] = text.splitlines()[-1][:500] if text else repr(exc)
                        record["error_cell"] = index
                        break
                    cell_times[str(index)] = round(time.perf_counter() - t_cell, 2)
                if trace:
                    from tl_lab.app.references import TRACE_END, calls_from_output

                    record["calls"] = calls_from_output(_run_probe(client, TRACE_END))
                record["torch_threads"] = _kernel_torch_threads(client)
            finally:
                if sampler:
                    sampler.__exit__(None, None, None)
                    record["peak_tree_rss_mb"] = round(sampler.peak_mb, 1)
            record["cells_seconds"] = round(time.perf_counter() - cells_start, 2)
            peak = _kernel_peak_mb(pid) if pid else None
            cpu = _cpu_seconds(pid) if pid else None
            if cpu is not None:
                record["cpu_seconds"] = round(cpu, 1)
        record["seconds"] = round(time.perf_counter() - start, 2)
    if peak is None:  # not Linux: the sampled tree peak, else the largest waited-for child's lifetime peak
        sampled = record.get("peak_tree_rss_mb")
        if sampled:
            peak, how = sampled, "sampled RSS (psutil or /proc)"
        else:
            import resource  # Unix only; reached only where /proc and psutil both failed

            scale = 1 if sys.platform == "darwin" else 1024
            peak, how = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale / 2**20, "getrusage(RUSAGE_CHILDREN)"
    else:
        how = "kernel VmHWM"
    record["peak_rss_mb"] = round(float(peak), 1)
    record["peak_rss_source"] = how
    if executed is not None:
        nbformat.write(nb, executed)
    results = parse_results(_outputs_text(nb))
    record["results"] = results
    checks = nb.metadata.get("tl_lab", {}).get("checks", [])
    record["checks"] = evaluate_checks(checks, results)
    record["checks_ok"] = all(c["ok"] for c in record["checks"])
    return record


def _run_probe(client: Any, code: str) -> str:
    """Run ``code`` in the lesson's kernel outside the notebook (no history) and return what it printed."""
    from nbformat.v4 import new_code_cell

    probe = new_code_cell(code)
    cells = client.nb.cells
    cells.append(probe)  # at its own index (nbclient looks cells up by index), removed again below
    try:
        client.execute_cell(probe, len(cells) - 1, store_history=False)
    except Exception:  # noqa: BLE001 - a probe is a report, never a reason to fail the lesson
        return ""
    finally:
        cells.remove(probe)
    return "".join(out.get("text", "") for out in probe.get("outputs", []))


def _kernel_torch_threads(client: Any) -> int | None:
    """The kernel's ``torch.get_num_threads()`` after the lesson (None if the lesson never imported torch)."""
    text = _run_probe(client, "import sys as _s\nprint('TORCH_THREADS', _s.modules['torch'].get_num_threads() "
                              "if 'torch' in _s.modules else -1)")
    match = re.search(r"TORCH_THREADS (-?\d+)", text)
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


def threads_table(records: Sequence[dict]) -> list[dict]:
    """Per lesson, in order: ``{"lesson", "seconds": {threads: s}, "peak_rss_mb": {threads: MB}, "ok": bool}``;
    the thread key is the count as a string (``"default"`` for tl_lab's own rule), as JSON keys are."""
    rows: dict[str, dict] = {}
    for rec in records:
        key = "default" if rec.get("threads") is None else str(rec["threads"])
        row = rows.setdefault(rec["lesson"], {"lesson": rec["lesson"], "seconds": {}, "peak_rss_mb": {}, "ok": True})
        row["seconds"][key] = rec["seconds"]
        row["peak_rss_mb"][key] = rec["peak_rss_mb"]
        row["ok"] = row["ok"] and not rec.get("error") and rec.get("checks_ok", True)
    return list(rows.values())


def format_table(table: Sequence[dict]) -> str:
    """A Markdown table: one row per lesson, seconds and peak MB at each thread count (the README's table)."""
    keys = list(dict.fromkeys(k for row in table for k in row["seconds"]))
    label = {k: ("tl_lab's threads" if k == "default" else f"{k} thread{'s' if k != '1' else ''}") for k in keys}
    head = ["lesson", *(f"s, {label[k]}" for k in keys), *(f"peak MB, {label[k]}" for k in keys)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        cells = [row["lesson"] + ("" if row["ok"] else " (failed)")]
        cells += [f"{row['seconds'][k]:.0f}" if k in row["seconds"] else "-" for k in keys]
        cells += [f"{row['peak_rss_mb'][k]:.0f}" if k in row["peak_rss_mb"] else "-" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_lessons(notebooks: Sequence[str | os.PathLike] | None = None, *, out: str | os.PathLike | None =
                  "bench_lessons.json", fast: bool = False, timeout: int = 900, memory_limit_mb: float = 2048.0,
                  echo: Callable[[str], None] = print, threads: Sequence[int] | None = None,
                  references: bool = False) -> dict:
    """Run each lesson (default: all of them, at full size) and write a JSON report to ``out``.

    ``memory_limit_mb`` (Binder's 2 GB by default) marks each lesson ``fits_memory_limit``. ``threads``: run each
    lesson once per thread count (each in a fresh kernel given that count); None: once, with tl_lab's own rule.
    ``references``: also record what each lesson measured, and the code it ran, in the lessons' reference file
    (:mod:`tl_lab.app.references`; full size only, and only lessons that ran without an error).
    """
    counts: list[int | None] = list(threads) if threads else [None]
    if references and fast:
        raise ValueError("references are what a lesson measures at full size: drop --fast (or --references)")
    paths = [Path(p) for p in notebooks] if notebooks is not None else lesson_paths()
    if not paths:
        raise FileNotFoundError("no lesson notebooks found (NN_name.ipynb); pass their paths")
    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "fast": fast, "memory_limit_mb": memory_limit_mb, "threads": counts, "lessons": [],
    }
    try:
        import torch

        report["machine"].update(torch=torch.__version__, cuda=torch.cuda.is_available())
    except ImportError:  # pragma: no cover - tl_lab needs torch
        pass
    for path in paths:
        for n in counts:
            how = ("fast" if fast else "full size") + ("" if n is None else f", {n} thread{'s' if n != 1 else ''}")
            echo(f"lesson {path.name} ({how}) …")
            rec = bench_notebook(path, fast=fast, timeout=timeout, threads=n, trace=references and n == counts[0])
            rec["fits_memory_limit"] = rec["peak_rss_mb"] <= memory_limit_mb
            report["lessons"].append(rec)
            failed = [c["check"] for c in rec["checks"] if not c["ok"]]
            status = f"ERROR in cell {rec['error_cell']}: {rec['error']}" if rec["error"] else \
                ("checks ok" if not failed else f"checks failed: {'; '.join(failed)}")
            echo(f"  {rec['seconds']:8.1f} s   peak {rec['peak_rss_mb']:7.1f} MB   {status}")
    if references:
        import nbformat

        from tl_lab.app.references import record_references

        traced = [r for r in report["lessons"] if "calls" in r and not r["error"]]
        if traced:
            where = record_references(traced, {Path(r["lesson"]).stem: nbformat.read(p, as_version=4)
                                               for r in traced for p in paths if p.name == r["lesson"]},
                                      path=paths[0].parent / "references" / "lesson_results.json")
            echo(f"recorded {len(traced)} lesson(s)' results in {where}")
        report["references"] = [Path(r["lesson"]).stem for r in traced]
        for rec in report["lessons"]:
            rec.pop("calls", None)
    report["total_seconds"] = round(sum(r["seconds"] for r in report["lessons"]), 1)
    report["max_peak_rss_mb"] = max(r["peak_rss_mb"] for r in report["lessons"])
    report["table"] = threads_table(report["lessons"])
    if len(counts) > 1 or counts != [None]:
        echo(format_table(report["table"]))
    if out:
        Path(out).write_text(json.dumps(report, indent=1))
        echo(f"wrote {out}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tl_lab.app.lessons_bench [NOTEBOOK ...] [--fast] [--json PATH]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tl_lab.app.lessons_bench", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="lesson notebooks (default: every lesson)")
    parser.add_argument("--fast", action="store_true", help="run with TL_LAB_FAST=1")
    parser.add_argument("--json", default="bench_lessons.json", help="where to write the report")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    parser.add_argument("--threads", type=int, nargs="+", metavar="N",
                        help="run each lesson at each thread count (e.g. --threads 1 2)")
    parser.add_argument("--references", action="store_true",
                        help="record each lesson's results and the code it ran as the numbers its text may quote")
    args = parser.parse_args(argv)
    report = bench_lessons(args.notebooks or None, out=args.json, fast=args.fast, timeout=args.timeout,
                           threads=args.threads, references=args.references)
    ok = all(not r["error"] and r["checks_ok"] for r in report["lessons"])
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
