"""``tl-lab``: open the lessons, check the environment, rerun a recorded run, benchmark.

    tl-lab lab                 # JupyterLab on the first lesson
    tl-lab doctor              # versions, device, widget front-ends, weights, caches (with fixes)
    tl-lab lessons --copy DIR  # copy the lessons somewhere writable
    tl-lab train CONFIG.json   # rerun a recorded Run.config outside Jupyter
    tl-lab bench [--quick]     # side-by-side speed ratios, peak memory, JSON
    tl-lab bench --only-lessons --fast --threads 1 2   # seconds and peak memory per lesson at 1 and 2 threads
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tl_lab.app.lessons import FIRST_LESSON, lessons_source

__all__ = ["main", "copy_lessons"]

def copy_lessons(dest: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Copy the lesson notebooks into ``dest``; an existing (possibly edited) copy is never overwritten unless asked.

    The same copy as the Lessons panel's: each notebook records the tl_lab version and fingerprint it came from
    (metadata ``tl_lab.copied_from``), so the panel can later tell the learner that a newer lesson exists.
    """
    from tl_lab.app.lessons import Workspace, copy_into, packaged_lessons

    src, dest = lessons_source(), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for info in packaged_lessons(src):
            (dest / info.name).unlink(missing_ok=True)
    result = copy_into(Workspace(dest, allow_hidden=True), src, dest="")
    return [dest / api_path for api_path in result["copied"]]


def _lab_target() -> Path:
    src = lessons_source()
    if not os.access(src, os.W_OK):  # installed read-only (site-packages): work on a copy
        dest = Path.cwd() / "tl_lab_lessons"
        copy_lessons(dest)
        src = dest
    first = src / FIRST_LESSON
    return first if first.exists() else src


def _running_as_root() -> bool:
    geteuid = getattr(os, "geteuid", None)  # absent on Windows
    return geteuid is not None and geteuid() == 0


def _cmd_lab(args: argparse.Namespace) -> int:
    target = _lab_target()
    root = target.parent if target.is_file() else target
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}"]
    if target.is_file():
        cmd.append(str(target))
    cmd += args.jupyter_args
    print("tl-lab: opening", target)
    if _running_as_root() and not any(a.startswith(("--allow-root", "--ServerApp.allow_root")) for a in cmd):
        # JupyterLab refuses to start as root without it; containers and many hubs run as root
        cmd.append("--allow-root")
        print("tl-lab: running as root (as in most containers), so --allow-root was added: JupyterLab refuses to "
              "start as root without it")
    if args.dry_run:
        print(" ".join(cmd))
        return 0
    return subprocess.call(cmd)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from tl_lab.app.doctor import doctor

    report = doctor(print_report=not args.json)
    if args.json:
        import json

        print(json.dumps(report.to_dict(), indent=1))
    return 0 if report.ok else 1


def _cmd_lessons(args: argparse.Namespace) -> int:
    if args.copy:
        copied = copy_lessons(args.copy, overwrite=args.overwrite)
        print(f"copied {len(copied)} lesson(s) to {args.copy}" + ("" if copied else " (all were already there)"))
    else:
        for nb in sorted(lessons_source().glob("*.ipynb")):
            print(nb.name)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from tl_lab.app.rerun import load_config, rerun

    try:
        load_config(args.config)  # a missing or malformed file: one line naming it, not a traceback
    except (FileNotFoundError, ValueError) as exc:
        print(f"tl-lab train: {exc}", file=sys.stderr)
        return 2
    run = rerun(args.config, nproc=args.nproc, run_dir=args.run_dir, epochs=args.epochs, progress=not args.quiet)
    if run is not None:
        print(run.summary())
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from tl_lab.app.bench import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tl-lab", description="tl_lab: transfer learning you can see and measure")
    parser.add_argument("--version", action="version", version=f"tl-lab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    lab = sub.add_parser("lab", help="open the lessons in JupyterLab")
    lab.add_argument("--dry-run", action="store_true", help="print the jupyter command instead of running it")
    lab.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="extra arguments for jupyter lab")
    lab.set_defaults(func=_cmd_lab)

    doc = sub.add_parser("doctor", help="check the environment and say how to fix problems")
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    doc.set_defaults(func=_cmd_doctor)

    les = sub.add_parser("lessons", help="list the lessons or copy them to a writable folder")
    les.add_argument("--copy", metavar="DIR", help="copy the lesson notebooks into DIR")
    les.add_argument("--overwrite", action="store_true", help="replace lessons already in DIR")
    les.set_defaults(func=_cmd_lessons)

    tr = sub.add_parser("train", help="rerun a recorded run configuration (run.json or its config)")
    tr.add_argument("config", help="a run.json written by fit, or a JSON file holding a Run.config")
    tr.add_argument("--nproc", type=int, default=1, help="processes for DistributedDataParallel (torchrun)")
    tr.add_argument("--run-dir", default=None, help="where to write the new run's files")
    tr.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    be = sub.add_parser("bench", help="measure speed ratios side by side and write JSON")
    be.add_argument("--quick", action="store_true", help="smaller workloads (about a minute)")
    be.add_argument("--json", default="bench.json", help="where to write the results")
    be.add_argument("--lessons", action="store_true", help="also run every lesson at full size")
    be.add_argument("--only-lessons", action="store_true", help="run the lessons without the speed ratios")
    be.add_argument("--fast", action="store_true", help="lessons with TL_LAB_FAST=1 (as CI runs them)")
    be.add_argument("--threads", type=int, nargs="+", metavar="N",
                    help="run each lesson at each thread count, e.g. --threads 1 2 (a 1-CPU and a 2-CPU pod)")
    be.set_defaults(func=_cmd_bench)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tl-lab")
    except PackageNotFoundError:  # imported from a checkout that pip never installed
        return "unknown (not pip-installed)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # `tl-lab` alone: the commands, not argparse's "the following arguments are required"
        parser.print_help()
        return 0
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "lab":  # `tl-lab lab --allow-root --port 9999`: jupyter's options pass through
        args.jupyter_args = extra + args.jupyter_args
    elif extra:
        parser.error("unrecognized arguments: " + " ".join(extra))
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
