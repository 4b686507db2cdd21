"""binder/ (repo2docker) agrees with pyproject.toml: same packages, pins inside pyproject's ranges, CPU-only torch.

Binder and course hubs build their image from binder/; a dependency added to pyproject but forgotten there (or a
pin outside pyproject's range) only shows up when a teacher's launch fails, so it is checked here, offline, by
parsing both files.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pyproject_requirements() -> dict[str, Requirement]:
    reqs = [Requirement(d) for d in pyproject()["project"]["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs}


def binder_requirements() -> tuple[dict[str, Requirement], list[str]]:
    """Package requirements and option lines (``--extra-index-url …``, ``-e .``) of binder/requirements.txt."""
    reqs: dict[str, Requirement] = {}
    options: list[str] = []
    for raw in (BINDER / "requirements.txt").read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-") or line in (".",):
            options.append(line)
            continue
        r = Requirement(line)
        assert canonicalize_name(r.name) not in reqs, f"{r.name} is listed twice in binder/requirements.txt"
        reqs[canonicalize_name(r.name)] = r
    return reqs, options


def installs_the_package() -> bool:
    """True when binder installs tl-lab itself (``.`` / ``-e .`` in requirements.txt, or pip install . in postBuild)."""
    _, options = binder_requirements()
    if any(re.fullmatch(r"(-e\s+)?\.(\[[\w,-]+\])?", o) for o in options):
        return True
    post = BINDER / "postBuild"
    return post.exists() and re.search(r"pip install\b[^\n]*\s(-e\s+)?\.(\[[\w,-]+\])?(\s|$)", post.read_text()) is not None


def pinned_version(req: Requirement) -> Version:
    pins = [s for s in req.specifier if s.operator in ("==", "===")]
    assert len(pins) == 1 and "*" not in pins[0].version, (
        f"binder pins exact versions so every launch builds the same image; {req} is not pinned with =="
    )
    return Version(pins[0].version)


def test_binder_has_the_files_repo2docker_reads():
    assert (BINDER / "requirements.txt").is_file()
    for script in ("postBuild", "start"):
        path = BINDER / script
        assert path.is_file(), f"binder/{script} is missing"
        assert os.access(path, os.X_OK), f"binder/{script} must be executable (chmod +x); repo2docker runs it"
        assert path.read_text().startswith("#!"), f"binder/{script} needs a shebang line"
    assert "exec \"$@\"" in (BINDER / "start").read_text(), "binder/start must end by running the server: exec \"$@\""


def test_every_pyproject_dependency_is_installed_by_binder():
    binder, _ = binder_requirements()
    missing = [str(r) for name, r in pyproject_requirements().items() if name not in binder]
    assert not missing, f"pyproject dependencies missing from binder/requirements.txt: {missing}"
    assert installs_the_package(), "binder must install tl-lab itself (pip install -e . in postBuild, or -e . in requirements)"


def test_binder_pins_lie_inside_pyproject_ranges():
    binder, _ = binder_requirements()
    bad = []
    for name, req in pyproject_requirements().items():
        version = pinned_version(binder[name])
        # a local label (+cpu) is ignored when the range has none (PEP 440), exactly as pip does
        if not req.specifier.contains(version, prereleases=True):
            bad.append(f"{binder[name]} is outside pyproject's {req}")
    assert not bad, "\n".join(bad)


def test_binder_installs_cpu_only_torch():
    binder, options = binder_requirements()
    assert any(o.split()[0] in ("--extra-index-url", "--index-url") and o.split()[-1].rstrip("/") == CPU_INDEX
               for o in options), f"binder/requirements.txt must use the CPU wheel index {CPU_INDEX}"
    for name in ("torch", "torchvision"):
        version = pinned_version(binder[name])
        assert version.local == "cpu", f"pin {name} to a +cpu build (the default wheels bundle CUDA: GBs)"
    # torchvision releases pair with one torch release: 0.(minor+15) goes with 2.(minor)
    torch_v, tv_v = pinned_version(binder["torch"]), pinned_version(binder["torchvision"])
    assert tv_v.minor == torch_v.minor + 15, f"torchvision {tv_v} does not pair with torch {torch_v}"


def test_binder_extra_packages_are_pinned_too():
    """Packages binder adds beyond pyproject's are fine, but pinned, so the image is reproducible."""
    binder, _ = binder_requirements()
    for req in binder.values():
        pinned_version(req)


def test_binder_python_satisfies_requires_python():
    runtime = (BINDER / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(\d+)\.(\d+)", runtime)
    assert m, f"binder/runtime.txt must read like python-3.11, got {runtime!r}"
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    assert requires.contains(Version(f"{m[1]}.{m[2]}")), f"{runtime} does not satisfy requires-python {requires}"


def test_binder_opens_the_first_lesson():
    post = (BINDER / "postBuild").read_text()
    m = re.search(r"default_url\s*=\s*[\"']/lab/tree/([^\"']+)[\"']", post)
    assert m, "postBuild should set ServerApp.default_url to the first lesson"
    target = ROOT / m[1]
    assert target.is_file() and target.suffix == ".ipynb" and target.name.startswith("00_"), (
        f"binder opens {m[1]}, which is not the first lesson notebook")


def test_binder_start_keeps_threads_friendly_on_shared_cpus():
    start = (BINDER / "start").read_text()
    assert "OMP_WAIT_POLICY" in start and "PASSIVE" in start
