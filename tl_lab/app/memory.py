"""Peak resident memory while a block of code runs: the one sampler behind ``tl-lab bench`` and ``--lessons``.

Why sample: a process's peak RSS over its whole life (``ru_maxrss``, ``VmHWM``) cannot be reset, so a benchmark that
runs several cases in one process, or watches a notebook kernel together with the processes it starts, needs
the peak of *this* block. :class:`PeakMemory` reads the resident set size every ``interval`` seconds in a daemon
thread (psutil where installed, else Linux ``/proc``) and keeps the largest value, including the values at entry
and exit. A spike shorter than the interval can be missed; ``samples`` says how many readings were taken.

Example::

    >>> import numpy as np
    >>> with PeakMemory() as mem:                           # this process
    ...     block = np.ones(50 * 2**20 // 8); del block     # 50 MB, touched
    >>> mem.peak_mb > 50                                    # doctest: +SKIP
    True
    >>> with PeakMemory(kernel_pid, children=True) as tree: # a kernel and every process it started
    ...     run_the_notebook()                              # doctest: +SKIP
"""

from __future__ import annotations

import gc
import os
import platform
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["PeakMemory", "rss_mb"]


class PeakMemory:
    """Peak RSS (MB) of process ``pid`` (default: this one), summed over its descendants when ``children``.

    After the block: ``peak_mb`` (largest sample), ``samples`` (how many), and for this process on a CUDA machine
    ``cuda_peak_mb`` (torch's ``max_memory_allocated`` over the block; None elsewhere). Entering this process's
    sampler runs the garbage collector first, so garbage from an earlier case does not count.
    """

    def __init__(self, pid: int | None = None, *, children: bool = False, interval: float = 0.005) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds (e.g. 0.005); got {interval!r}")
        self.pid = os.getpid() if pid is None else int(pid)
        self.children = children
        self.interval = interval
        self.peak_mb = 0.0
        self.samples = 0
        self.cuda_peak_mb: float | None = None
        self._own = self.pid == os.getpid()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read_mb(self) -> float:
        """The RSS now, in MB (0.0 when the process is gone)."""
        if not self.children:
            return rss_mb(self.pid)
        return sum(rss_mb(p) for p in {self.pid} | _descendants(self.pid))

    def _sample(self) -> None:
        self.peak_mb = max(self.peak_mb, self.read_mb())
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _cuda(self) -> Any:
        torch = sys.modules.get("torch")  # only if the caller uses torch: never imported for a kernel's pid
        return torch.cuda if self._own and torch is not None and torch.cuda.is_available() else None

    def __enter__(self) -> PeakMemory:  # noqa: PYI034 - Self needs Python 3.11
        if self._own:
            gc.collect()
        if (cuda := self._cuda()) is not None:
            cuda.reset_peak_memory_stats()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True, name="tl_lab-peak-memory")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if (cuda := self._cuda()) is not None:
            self.cuda_peak_mb = cuda.max_memory_allocated() / 2**20


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of ``pid`` (default: this process) in MB; 0.0 when it cannot be read (process gone).

    Linux ``/proc/<pid>/statm``, else psutil; for this process without either, the lifetime peak from
    ``getrusage`` (an upper bound, the best a portable Python offers).
    """
    pid = os.getpid() if pid is None else pid
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - psutil.Error: the process is gone
        return 0.0
    if pid != os.getpid():
        return 0.0
    import resource  # Unix only

    scale = 1 if platform.system() == "Darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (psutil, else Linux /proc)."""
    try:
        import psutil

        try:
            return {p.pid for p in psutil.Process(pid).children(recursive=True)}
        except psutil.Error:
            return set()
    except ImportError:
        pass
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found
