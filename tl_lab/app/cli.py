"""``tl-lab``: open the lessons, check the environment, rerun a recorded run, benchmark.

    tl-lab lab                 # JupyterLab on the first lesson
    tl-lab doctor              # versions, device, widget front-ends, weights, caches (with fixes)
    tl-lab lessons --copy DIR  # copy the lessons somewhere writable
    tl-lab train CONFIG.json   # rerun a recorded Run.config outside Jupyter
    tl-lab bench [--quick]     # side-by-side speed ratios, peak memory, JSON
    tl-lab bench --only-lessons --fast --threads 1 2   # seconds and peak memory per lesson at 1 and 2 threads
    tl-lab bench --only-lessons --references [--lesson 09 12]   # record the numbers the lessons' text quotes
    tl-lab progress [--json]   # checked questions passed per lesson (local file, never sent)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tl_lab.app.lessons import FIRST_LESSON, lessons_source
from tl_lab.app.links import CourseLinks

__all__ = ["main", "copy_lessons"]

def copy_lessons(dest: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Copy the lesson notebooks into ``dest``; an existing (possibly edited) copy is never overwritten unless asked.

    The same copy as the Lessons panel's: each notebook records the tl_lab version and fingerprint it came from
    (metadata ``tl_lab.copied_from``), so the panel can later tell the learner that a newer lesson exists. The
    lessons are saved without outputs and the small files beside them come along (a content folder nbgitpuller can
    serve, :func:`tl_lab.app.lessons.copy_content`). Returns the notebooks written.
    """
    from tl_lab.app.lessons import copy_content

    return copy_content(dest, overwrite=overwrite)["lessons"]


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


def _course_links(args: argparse.Namespace, *, command: str) -> CourseLinks | None:
    """The --repo/--hub/--branch/--path options as CourseLinks (None without --repo); a bad value exits with its fix."""
    if args.repo is None:
        if args.hub is not None:
            sys.exit(f"tl-lab {command}: --hub needs --repo, the git repository the hub pulls the lessons from "
                     "(e.g. --repo https://github.com/OWNER/REPO)")
        return None
    try:
        return CourseLinks(repo=args.repo, hub=args.hub, branch=args.branch, folder=args.path)
    except ValueError as exc:
        sys.exit(f"tl-lab {command}: {exc}")


def _add_link_options(parser: argparse.ArgumentParser, *, path_default: str, path_help: str) -> None:
    parser.add_argument("--hub", metavar="URL", help="JupyterHub with nbgitpuller, e.g. https://hub.example.edu")
    parser.add_argument("--repo", metavar="URL", help="git repository holding the lessons, e.g. "
                        "https://github.com/OWNER/REPO (Binder links too when it is on GitHub)")
    parser.add_argument("--branch", default=None, help="branch of --repo (default: the repository's default branch)")
    parser.add_argument("--path", default=path_default, help=path_help)


def _cmd_lessons(args: argparse.Namespace) -> int:
    if args.copy:
        from tl_lab.app.lessons import copy_content

        links = _course_links(args, command="lessons")
        if links is not None and links.hub is None:
            sys.exit("tl-lab lessons: the README of links needs --hub too (the JupyterHub the links open)")
        done = copy_content(args.copy, overwrite=args.overwrite, links=links, solutions=not args.no_solutions)
        copied = done["lessons"]
        print(f"copied {len(copied)} lesson(s) to {args.copy}" + ("" if copied else " (all were already there)")
              + " without outputs" * bool(copied))
        for path in done["files"]:
            print(f"  wrote {path}")
        for path in done["kept"]:
            print(f"  kept {path} (already there; --overwrite replaces it)")
        for path in done["large"]:
            print(f"  left out {path} ({path.stat().st_size / 1e6:.1f} MB: too large for a content repository)")
    else:
        for nb in sorted(lessons_source().glob("*.ipynb")):
            print(nb.name)
    return 0


def _cmd_site(args: argparse.Namespace) -> int:
    from tl_lab.app.lessons import UnknownLessonError
    from tl_lab.app.site import build_site

    links = _course_links(args, command="site")
    try:
        report = build_site(args.outdir, lessons=args.lessons, fast=args.fast, links=links, timeout=args.timeout)
    except (UnknownLessonError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"tl-lab site: {exc}", file=sys.stderr)
        return 2
    print(f"site: {report.index} ({len(report.executed)} lesson(s) run, {len(report.reused)} unchanged)")
    failed = [e for e in report.lessons if e.error]
    for e in failed:
        print(f"  {e.name} stopped with an error: {e.error}", file=sys.stderr)
    return 0 if not failed else 1


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


def _cmd_progress(args: argparse.Namespace) -> int:
    from tl_lab.app.progress_report import render

    print(render(as_json=args.json))
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
    les.add_argument("--no-solutions", action="store_true",
                     help="a learner copy: leave out solution cells and the checked questions' solutions")
    _add_link_options(les, path_default="", path_help="where DIR sits inside --repo (default: DIR is the repository)")
    les.set_defaults(func=_cmd_lessons)

    site = sub.add_parser("site", help="run the lessons and write an offline static course site")
    site.add_argument("outdir", metavar="OUTDIR", help="folder for the site (reused: only changed lessons run again)")
    site.add_argument("--lessons", nargs="+", metavar="NN", help="lessons to build, by number or name (default: all)")
    site.add_argument("--fast", action="store_true", help="run the lessons with TL_LAB_FAST=1 (smaller, same code)")
    site.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    _add_link_options(site, path_default="notebooks",
                      path_help="the lessons' folder inside --repo (default: notebooks)")
    site.set_defaults(func=_cmd_site)

    tr = sub.add_parser("train", help="rerun a recorded run configuration (run.json or its config)")
    tr.add_argument("config", help="a run.json written by fit, or a JSON file holding a Run.config")
    tr.add_argument("--nproc", type=int, default=1, help="processes for DistributedDataParallel (torchrun)")
    tr.add_argument("--run-dir", default=None, help="where to write the new run's files")
    tr.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    pr = sub.add_parser("progress", help="checked questions passed per lesson (kept locally, never sent)")
    pr.add_argument("--json", action="store_true", help="print every lesson's questions as JSON")
    pr.set_defaults(func=_cmd_progress)

    be = sub.add_parser("bench", help="measure speed ratios side by side and write JSON")
    be.add_argument("--quick", action="store_true", help="smaller workloads (about a minute)")
    be.add_argument("--json", default="bench.json", help="where to write the results")
    be.add_argument("--lessons", action="store_true", help="also run every lesson at full size")
    be.add_argument("--only-lessons", action="store_true", help="run the lessons without the speed ratios")
    be.add_argument("--fast", action="store_true", help="lessons with TL_LAB_FAST=1 (as CI runs them)")
    be.add_argument("--threads", type=int, nargs="+", metavar="N",
                    help="run each lesson at each thread count, e.g. --threads 1 2 (a 1-CPU and a 2-CPU pod)")
    be.add_argument("--references", action="store_true",
                    help="record what each lesson measures at full size as the numbers its text quotes "
                         "(notebooks/references/lesson_results.json)")
    be.add_argument("--lesson", dest="lesson_numbers", nargs="+", metavar="NN",
                    help="only these lessons, by number (e.g. --lesson 09 12)")
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
