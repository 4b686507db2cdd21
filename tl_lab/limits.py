"""What this process may use (CPUs, memory), read from the places a hub or a container sets them, and what tl_lab
does with it. No torch import: the doctor and tests read the limits without loading PyTorch.

Why: PyTorch starts one thread per physical core of the *node*, not of the quota. On a hub pod limited to 1 CPU on a
16-core node that is 16 threads fighting for one CPU's time: a 3-epoch Lite0 fine-tune took 18.8 s instead of
4.1 s with 1 thread (0.5 CPU: 13.6 s against 8.3 s). Nothing reads the limit unless a program does.

The rules (README "Sizing a hub"):

- **Threads** (:func:`cpu_limit`): the smallest of the cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us``), ``CPU_LIMIT`` (JupyterHub's spawner sets it, a float such as ``"0.5"``) and the CPUs in
  the process's affinity mask, rounded up, at least 1. Applied to torch once, when tl_lab first imports torch
  (:func:`apply_torch_threads`), unless the user chose: ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` set, or
  ``torch.set_num_threads`` called before (torch's count differs from its default for this machine).
- **Memory** (:func:`cache_cap_mb`): the feature cache keeps at most a quarter of the memory limit in RAM (the
  smallest of ``MEM_LIMIT``, bytes as JupyterHub sets it, and the cgroup's memory limit), and never more than the
  caller's default (1024 MB); the rest of the cache goes to a memory-mapped file on disk.

Every reader takes ``root`` (the cgroup mount, default ``/sys/fs/cgroup``), ``environ`` and ``proc_cgroup`` (default
``/proc/self/cgroup``, which names this process's own cgroup below the mount), so tests pass fake folders.

    >>> from tl_lab.limits import cpu_limits
    >>> cpu_limits(environ={"CPU_LIMIT": "0.5"}, affinity=16, root="/nonexistent").threads
    1
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CpuLimits",
    "MemoryLimits",
    "ThreadSetting",
    "apply_torch_threads",
    "cache_cap_mb",
    "cgroup_cpu_quota",
    "cgroup_memory_limit",
    "cpu_limit",
    "cpu_limits",
    "memory_limit_bytes",
    "memory_limits",
    "thread_setting",
    "torch_default_threads",
]

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
CACHE_SHARE = 0.25  # the feature cache may hold this fraction of the memory limit in RAM
_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as 9223372036854771712 (a page-rounded 2**63 - 1)
_USER_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


# ------------------------------------------------------------------------------------------------- cgroup files


def _own_cgroups(proc_cgroup: str | os.PathLike) -> dict[str, str]:
    """Controller -> this process's cgroup path (``""`` is cgroup v2's unified hierarchy), from /proc/self/cgroup."""
    out: dict[str, str] = {}
    try:
        text = Path(proc_cgroup).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers, path = parts[1], parts[2].strip() or "/"
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def _walk_up(mount: Path, own: str) -> list[Path]:
    """``mount/own``, then each parent folder up to ``mount`` itself: the limits that apply are the smallest there."""
    parts = [p for p in own.split("/") if p]
    return [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _candidate_dirs(root: Path, controller: str, own: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
    """(v2 folders, v1 folders) where ``controller``'s files may be, deepest first."""
    v2 = []
    for mount in (root, root / "unified"):
        v2 += _walk_up(mount, own.get("", "/"))
    v1 = []
    names = {"cpu": ("cpu", "cpu,cpuacct", "cpuacct,cpu"), "memory": ("memory",)}[controller]
    for name in names:
        v1 += _walk_up(root / name, own.get(controller, "/"))
    v1 += [root]  # a container that mounts its own cgroup's files at the root
    return v2, v1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def cgroup_cpu_quota(root: str | os.PathLike = CGROUP_ROOT, *, proc_cgroup: str | os.PathLike = PROC_CGROUP,
                     ) -> tuple[float | None, str | None]:
    """The cgroup CPU quota in CPUs (``50000 100000`` -> 0.5) and the file it came from; ``(None, None)``: none.

    cgroup v2: ``cpu.max`` (``"max 100000"`` is no limit). v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
    (quota -1 is no limit). Every folder from this process's own cgroup up to the mount is read; the smallest wins.
    """
    root = Path(root)
    v2, v1 = _candidate_dirs(root, "cpu", _own_cgroups(proc_cgroup))
    found: list[tuple[float, str]] = []
    for folder in v2:
        text = _read(folder / "cpu.max")
        if text:
            quota, _, period = text.partition(" ")
            try:
                if quota != "max" and float(quota) > 0 and float(period or 100000) > 0:
                    found.append((float(quota) / float(period or 100000), str(folder / "cpu.max")))
            except ValueError:
                pass
    for folder in v1:
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        try:
            if quota is not None and period is not None and float(quota) > 0 and float(period) > 0:
                found.append((float(quota) / float(period), str(folder / "cpu.cfs_quota_us")))
        except ValueError:
            pass
    return min(found) if found else (None, None)


def cgroup_memory_limit(root: str | os.PathLike = CGROUP_ROOT, *, proc_cgroup: str | os.PathLike = PROC_CGROUP,
                        ) -> tuple[int | None, str | None]:
    """The cgroup memory limit in bytes and the file it came from (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``); ``(None, None)``: no limit ("max", or v1's huge "unlimited" number)."""
    root = Path(root)
    v2, v1 = _candidate_dirs(root, "memory", _own_cgroups(proc_cgroup))
    found: list[tuple[int, str]] = []
    for folder, name in [(f, "memory.max") for f in v2] + [(f, "memory.limit_in_bytes") for f in v1]:
        text = _read(folder / name)
        if text and text != "max":
            try:
                value = int(text)
            except ValueError:
                continue
            if 0 < value < _UNLIMITED:
                found.append((value, str(folder / name)))
    return min(found) if found else (None, None)


def _env_number(environ: Mapping[str, str], name: str) -> float | None:
    """A positive number from ``environ[name]``; None when unset, empty or not a positive number."""
    text = environ.get(name, "").strip()
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 and math.isfinite(value) else None


def _affinity() -> int | None:
    getter = getattr(os, "sched_getaffinity", None)  # Linux only
    try:
        return len(getter(0)) if getter is not None else None
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------------------- CPU


@dataclass(frozen=True)
class CpuLimits:
    """The CPU limits found, and the thread count they give (``threads``).

    ``quota``: the cgroup quota in CPUs (``quota_file``: where); ``cpu_limit_env``: ``CPU_LIMIT``;
    ``affinity``: CPUs in this process's affinity mask; ``cpu_count``: ``os.cpu_count()`` (the node's CPUs).
    """

    quota: float | None
    quota_file: str | None
    cpu_limit_env: float | None
    affinity: int | None
    cpu_count: int

    @property
    def limit(self) -> float:
        """The smallest of the limits found (the node's CPU count when none is set)."""
        found = [v for v in (self.quota, self.cpu_limit_env, self.affinity) if v is not None]
        return min(found) if found else float(self.cpu_count)

    @property
    def threads(self) -> int:
        """The thread count the limits give: :attr:`limit` rounded up, at least 1."""
        return max(1, math.ceil(self.limit - 1e-9))

    @property
    def source(self) -> str:
        """Which limit decided (``"cgroup quota"``, ``"CPU_LIMIT"``, ``"affinity"`` or ``"cpu count"``)."""
        for name, value in (("cgroup quota", self.quota), ("CPU_LIMIT", self.cpu_limit_env),
                            ("affinity", self.affinity)):
            if value is not None and value == self.limit:
                return name
        return "cpu count"

    def to_dict(self) -> dict[str, Any]:
        return {"quota": self.quota, "quota_file": self.quota_file, "cpu_limit_env": self.cpu_limit_env,
                "affinity": self.affinity, "cpu_count": self.cpu_count, "limit": self.limit,
                "threads": self.threads, "source": self.source}


def cpu_limits(*, root: str | os.PathLike = CGROUP_ROOT, environ: Mapping[str, str] | None = None,
               affinity: int | None | str = "auto", proc_cgroup: str | os.PathLike = PROC_CGROUP) -> CpuLimits:
    """Read every CPU limit (see :class:`CpuLimits`). ``affinity="auto"`` asks ``os.sched_getaffinity``."""
    environ = os.environ if environ is None else environ
    quota, where = cgroup_cpu_quota(root, proc_cgroup=proc_cgroup)
    return CpuLimits(quota=quota, quota_file=where, cpu_limit_env=_env_number(environ, "CPU_LIMIT"),
                     affinity=_affinity() if affinity == "auto" else affinity, cpu_count=os.cpu_count() or 1)


def cpu_limit(*, root: str | os.PathLike = CGROUP_ROOT, environ: Mapping[str, str] | None = None,
              affinity: int | None | str = "auto", proc_cgroup: str | os.PathLike = PROC_CGROUP) -> int:
    """The number of threads this process should use: the smallest CPU limit, rounded up, at least 1.

    >>> cpu_limit(environ={"CPU_LIMIT": "2.0"}, affinity=16, root="/nonexistent")
    2
    """
    return cpu_limits(root=root, environ=environ, affinity=affinity, proc_cgroup=proc_cgroup).threads


# ------------------------------------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryLimits:
    """``mem_limit_env``: ``MEM_LIMIT`` in bytes; ``cgroup``: the cgroup's limit in bytes (``cgroup_file``: where)."""

    mem_limit_env: int | None
    cgroup: int | None
    cgroup_file: str | None

    @property
    def limit(self) -> int | None:
        """The smallest memory limit in bytes, None when there is none."""
        found = [v for v in (self.mem_limit_env, self.cgroup) if v is not None]
        return min(found) if found else None

    def to_dict(self) -> dict[str, Any]:
        return {"mem_limit_env": self.mem_limit_env, "cgroup": self.cgroup, "cgroup_file": self.cgroup_file,
                "limit": self.limit}


def memory_limits(*, root: str | os.PathLike = CGROUP_ROOT, environ: Mapping[str, str] | None = None,
                  proc_cgroup: str | os.PathLike = PROC_CGROUP) -> MemoryLimits:
    """Read ``MEM_LIMIT`` and the cgroup memory limit (see :class:`MemoryLimits`)."""
    environ = os.environ if environ is None else environ
    env = _env_number(environ, "MEM_LIMIT")
    cgroup, where = cgroup_memory_limit(root, proc_cgroup=proc_cgroup)
    return MemoryLimits(int(env) if env is not None else None, cgroup, where)


def memory_limit_bytes(*, root: str | os.PathLike = CGROUP_ROOT, environ: Mapping[str, str] | None = None,
                       proc_cgroup: str | os.PathLike = PROC_CGROUP) -> int | None:
    """The smallest of ``MEM_LIMIT`` and the cgroup memory limit, in bytes; None when neither is set."""
    return memory_limits(root=root, environ=environ, proc_cgroup=proc_cgroup).limit


def cache_cap_mb(default: float = 1024.0, *, root: str | os.PathLike = CGROUP_ROOT,
                 environ: Mapping[str, str] | None = None, proc_cgroup: str | os.PathLike = PROC_CGROUP) -> float:
    """How many MB of cached features may stay in RAM: ``min(default, limit / 4)``, ``default`` without a limit.

    The limit is the smallest of ``MEM_LIMIT`` and the cgroup memory limit. A quarter leaves the rest for the
    model, its gradients, the data and the kernel itself (lessons peak at 0.6-1.2 GB).

    >>> cache_cap_mb(environ={"MEM_LIMIT": str(2 * 2**30)}, root="/nonexistent")    # a 2 GiB pod
    512.0
    >>> cache_cap_mb(environ={}, root="/nonexistent")
    1024.0
    """
    limit = memory_limit_bytes(root=root, environ=environ, proc_cgroup=proc_cgroup)
    if limit is None:
        return float(default)
    return float(min(default, CACHE_SHARE * limit / 2**20))


# ------------------------------------------------------------------------------------------------- torch threads


def torch_default_threads() -> int:
    """The intra-op thread count torch picks on this machine when nobody chose: its physical cores.

    torch asks cpuinfo for the node's cores (ignoring quota and affinity); the same count is read here from
    ``/sys/devices/system/cpu/cpu*/topology`` (distinct package and core ids), else ``os.cpu_count()``.
    """
    cores = set()
    for topo in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology"):
        package, core = _read(topo / "physical_package_id"), _read(topo / "core_id")
        if package is not None and core is not None:
            cores.add((package, core))
    return len(cores) or (os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadSetting:
    """What :func:`apply_torch_threads` decided: ``threads`` torch uses now, ``changed`` whether tl_lab set it,
    ``reason`` in words, ``limits`` the CPU limits read."""

    threads: int
    changed: bool
    reason: str
    limits: CpuLimits | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "changed": self.changed, "reason": self.reason,
                "limits": self.limits.to_dict() if self.limits else None}


_APPLIED: ThreadSetting | None = None


def thread_setting() -> ThreadSetting | None:
    """The decision :func:`apply_torch_threads` made in this process (None: tl_lab has not imported torch yet)."""
    return _APPLIED


def apply_torch_threads(torch: Any, *, environ: Mapping[str, str] | None = None, default: int | None = None,
                        force: bool = False, **where: Any) -> ThreadSetting:
    """Set ``torch``'s intra-op threads to :func:`cpu_limit`, once per process, unless the user chose a count.

    The user chose when ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set, or when torch's count differs from its
    default for this machine (``default``: :func:`torch_default_threads`), i.e. ``torch.set_num_threads`` was called
    before. ``torch`` is the module, passed in so that this file imports no torch. ``where``: ``root``,
    ``affinity``, ``proc_cgroup`` for :func:`cpu_limits`. ``force`` decides again (tests).
    """
    global _APPLIED
    if _APPLIED is not None and not force:
        return _APPLIED
    environ = os.environ if environ is None else environ
    current = int(torch.get_num_threads())
    chosen = [v for v in _USER_THREAD_VARIABLES if environ.get(v, "").strip()]
    limits = None
    if chosen:
        setting = ThreadSetting(current, False, f"left at {current}: {chosen[0]}={environ[chosen[0]]} was set")
    else:
        default = torch_default_threads() if default is None else default
        if current != default:
            setting = ThreadSetting(current, False, f"left at {current}: torch.set_num_threads({current}) was called "
                                                    f"before (torch's default here is {default})")
        else:
            limits = cpu_limits(environ=environ, **where)
            threads = limits.threads
            if threads != current:
                torch.set_num_threads(threads)
            setting = ThreadSetting(threads, threads != current,
                                    f"{threads} from the {limits.source} ({limits.limit:g} CPUs)"
                                    + (f"; torch's default was {current}" if threads != current else ""), limits)
    _APPLIED = setting
    return setting
