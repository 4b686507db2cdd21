"""Shared fixtures. Tests never touch the network: torch's hub cache points at a fresh folder per session."""

from __future__ import annotations

import os
import socket

# OpenMP threads that busy-wait slow small forward passes 8-30x when the CPU is shared (CI runners, the DDP test's
# two workers); passive waiting costs nothing measurable on an idle machine. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist (pyproject's addopts run two workers on the 2-core CI machine) each worker, and every kernel or
# subprocess it starts, computes on one thread: two workers with two threads each would fight over two cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    from tl_lab.limits import cpu_limit  # imports no torch

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cpu_limit() // _WORKERS)))

import pytest
import torch

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]) if _WORKERS > 1 else max(1, min(2, os.cpu_count() or 1)))


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's addopts): one worker per CPU this process may use (the cgroup quota, CPU_LIMIT and
    affinity, as tl_lab.limits reads them), at most 4; each worker computes on one thread (above)."""
    from tl_lab.limits import cpu_limit

    return max(1, min(4, int(cpu_limit())))


@pytest.fixture(autouse=True, scope="session")
def _isolated_hub_cache(tmp_path_factory):
    """Point TORCH_HOME at an empty folder so no test can see (or fill) the user's weight cache."""
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch_home"))
    yield
    if old is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = old


@pytest.fixture(autouse=True)
def _private_progress_file(tmp_path, monkeypatch):
    """Checked exercises record progress in a file of the test's own (kernels a test starts inherit it): no test
    reads or changes the developer's real progress (tl_lab.exercises.progress)."""
    monkeypatch.setenv("TL_LAB_PROGRESS_FILE", str(tmp_path / "progress.json"))


@pytest.fixture
def no_network(monkeypatch):
    """Make any socket connection fail at once, as on a machine with no network."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return refuse


@pytest.fixture(scope="session")
def lite0():
    from tl_lab.backbones.registry import load_backbone

    return load_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests: on a shared 2-core machine, two OpenMP threads spin-waiting against
    other processes made Lite0 4-20x slower in our measurements. Use with ``pytestmark = pytest.mark.usefixtures``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

