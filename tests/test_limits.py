"""tl_lab sizes itself to the machine it is given: threads from the CPU limits, the feature cache from the memory
limit, and a class's read-only shared folder read before the learner's own caches (tl_lab.limits,
tl_lab.shared_cache). The cgroup folders here are fakes written by the tests, with the values a hub writes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tl_lab.limits import (
    apply_torch_threads,
    cache_cap_mb,
    cgroup_cpu_quota,
    cgroup_memory_limit,
    cpu_limit,
    cpu_limits,
    memory_limit_bytes,
    torch_default_threads,
)
from tl_lab.shared_cache import shared_file, shared_path

ROOT = Path(__file__).resolve().parents[1]
NO_PROC = "/nonexistent/proc/self/cgroup"  # a fake root alone, no own-cgroup path below it


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def limit(root, **kw):
    return cpu_limit(root=root, proc_cgroup=kw.pop("proc", NO_PROC), environ=kw.pop("environ", {}),
                     affinity=kw.pop("affinity", None))


# ------------------------------------------------------------------------------------------------------- CPU


def test_cgroup_v2_cpu_max(tmp_path):
    write(tmp_path / "cpu.max", "50000 100000")
    assert cgroup_cpu_quota(tmp_path, proc_cgroup=NO_PROC) == (0.5, str(tmp_path / "cpu.max"))
    assert limit(tmp_path, affinity=16) == 1                       # half a CPU: one thread
    write(tmp_path / "cpu.max", "250000 100000")
    assert limit(tmp_path, affinity=16) == 3                       # 2.5 CPUs rounded up
    write(tmp_path / "cpu.max", "max 100000")                      # no quota: the affinity decides
    assert cgroup_cpu_quota(tmp_path, proc_cgroup=NO_PROC) == (None, None)
    assert limit(tmp_path, affinity=16) == 16


def test_cgroup_v2_reads_the_process_own_cgroup_and_its_parents(tmp_path):
    proc = write(tmp_path / "proc_cgroup", "0::/kubepods/pod7/jupyter")
    cg = tmp_path / "cg"
    write(cg / "kubepods" / "pod7" / "jupyter" / "cpu.max", "max 100000")
    write(cg / "kubepods" / "pod7" / "cpu.max", "100000 100000")   # the pod's 1 CPU, one level up
    write(cg / "kubepods" / "cpu.max", "800000 100000")
    assert cgroup_cpu_quota(cg, proc_cgroup=proc) == (1.0, str(cg / "kubepods" / "pod7" / "cpu.max"))
    assert limit(cg, proc=proc, affinity=16) == 1


def test_cgroup_v1_cfs_quota(tmp_path):
    write(tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us", "150000")
    write(tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    assert cgroup_cpu_quota(tmp_path, proc_cgroup=NO_PROC)[0] == 1.5
    assert limit(tmp_path, affinity=16) == 2
    write(tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1")      # v1's "no quota"
    assert cgroup_cpu_quota(tmp_path, proc_cgroup=NO_PROC) == (None, None)
    # a v1 hierarchy with the process in a sub-group (as systemd-run --property=CPUQuota=50% makes)
    proc = write(tmp_path / "proc_cgroup", "4:memory:/x\n3:cpu,cpuacct:/user.slice/run-1.scope\n0::/")
    write(tmp_path / "cpu,cpuacct" / "user.slice" / "run-1.scope" / "cpu.cfs_quota_us", "50000")
    write(tmp_path / "cpu,cpuacct" / "user.slice" / "run-1.scope" / "cpu.cfs_period_us", "100000")
    assert cgroup_cpu_quota(tmp_path, proc_cgroup=proc)[0] == 0.5


@pytest.mark.parametrize("value, affinity, expected", [
    ("0.5", 16, 1), ("2.0", 16, 2), ("1.2", 16, 2), ("4", 3, 3), ("", 3, 3), ("lots", 3, 3), ("-1", 3, 3),
])
def test_cpu_limit_env_and_affinity(tmp_path, value, affinity, expected):
    assert limit(tmp_path, environ={"CPU_LIMIT": value}, affinity=affinity) == expected


def test_smallest_limit_wins_and_says_which(tmp_path):
    write(tmp_path / "cpu.max", "300000 100000")
    found = cpu_limits(root=tmp_path, proc_cgroup=NO_PROC, environ={"CPU_LIMIT": "2.0"}, affinity=4)
    assert (found.quota, found.cpu_limit_env, found.affinity, found.limit, found.threads) == (3.0, 2.0, 4, 2.0, 2)
    assert found.source == "CPU_LIMIT"
    nothing = cpu_limits(root=tmp_path / "none", proc_cgroup=NO_PROC, environ={}, affinity=None)
    assert nothing.threads == (os.cpu_count() or 1) and nothing.source == "cpu count"


# ---------------------------------------------------------------------------------------------------- memory


def test_memory_limits_v1_v2_and_mem_limit(tmp_path):
    v2 = tmp_path / "v2"
    write(v2 / "memory.max", "max")
    assert cgroup_memory_limit(v2, proc_cgroup=NO_PROC) == (None, None)
    write(v2 / "memory.max", str(3 * 2**30))
    assert memory_limit_bytes(root=v2, proc_cgroup=NO_PROC, environ={}) == 3 * 2**30
    assert memory_limit_bytes(root=v2, proc_cgroup=NO_PROC, environ={"MEM_LIMIT": str(2**30)}) == 2**30
    v1 = tmp_path / "v1"
    write(v1 / "memory" / "memory.limit_in_bytes", "9223372036854771712")   # v1's "unlimited"
    assert memory_limit_bytes(root=v1, proc_cgroup=NO_PROC, environ={}) is None
    write(v1 / "memory" / "memory.limit_in_bytes", str(2**31))
    assert cgroup_memory_limit(v1, proc_cgroup=NO_PROC) == (2**31, str(v1 / "memory" / "memory.limit_in_bytes"))


@pytest.mark.parametrize("mem_limit, default, expected", [
    (None, 1024.0, 1024.0),                 # no limit: the caller's default
    (str(2 * 2**30), 1024.0, 512.0),        # a 2 GiB pod (Binder's largest): a quarter
    (str(8 * 2**30), 1024.0, 1024.0),       # plenty: never above the default
    (str(2**30), 100.0, 100.0),
    ("2147483648.0", 1024.0, 512.0),        # written as a float
    ("nonsense", 1024.0, 1024.0),
])
def test_cache_cap_follows_mem_limit(tmp_path, mem_limit, default, expected):
    environ = {} if mem_limit is None else {"MEM_LIMIT": mem_limit}
    assert cache_cap_mb(default, root=tmp_path, proc_cgroup=NO_PROC, environ=environ) == expected


def test_cache_cap_also_follows_the_cgroup_memory_limit(tmp_path):
    write(tmp_path / "memory.max", str(1 * 2**30))
    assert cache_cap_mb(root=tmp_path, proc_cgroup=NO_PROC, environ={"MEM_LIMIT": str(4 * 2**30)}) == 256.0


# --------------------------------------------------------------------------------------------- torch threads


class FakeTorch:
    def __init__(self, threads):
        self.threads, self.calls = threads, []

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, n):
        self.calls.append(n)
        self.threads = n


def test_apply_sets_the_limit_unless_the_user_chose(tmp_path):
    write(tmp_path / "cpu.max", "100000 100000")
    where = {"root": tmp_path, "proc_cgroup": NO_PROC, "affinity": 16}
    fake = FakeTorch(16)
    got = apply_torch_threads(fake, environ={}, default=16, force=True, **where)
    assert fake.calls == [1] and (got.threads, got.changed) == (1, True) and "cgroup quota" in got.reason
    for env in ({"OMP_NUM_THREADS": "4"}, {"MKL_NUM_THREADS": "4"}):     # chosen by environment
        fake = FakeTorch(4)
        got = apply_torch_threads(fake, environ=env, default=16, force=True, **where)
        assert fake.calls == [] and not got.changed and "was set" in got.reason
    fake = FakeTorch(6)                                                # torch.set_num_threads(6) called before
    got = apply_torch_threads(fake, environ={}, default=16, force=True, **where)
    assert fake.calls == [] and got.threads == 6 and "set_num_threads(6)" in got.reason
    fake = FakeTorch(1)                                                # already right: nothing to call
    got = apply_torch_threads(fake, environ={}, default=1, force=True, **where)
    assert fake.calls == [] and (got.threads, got.changed) == (1, False)


def test_the_default_matches_what_torch_picks_here():
    code = "import torch; print(torch.get_num_threads())"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert int(out.stdout) == torch_default_threads()


FIRST_IMPORT = """
import sys, torch
before = torch.get_num_threads()
{pre}
import tl_lab
assert 'tl_lab.backbones' not in sys.modules
from tl_lab.{module} import {name}
from tl_lab.limits import thread_setting
print(before, torch.get_num_threads(), thread_setting().changed)
"""


@pytest.mark.slow  # a fresh interpreter that imports torch (a few seconds)
@pytest.mark.parametrize("module, name", [("backbones", "load_backbone"), ("data.sources", "clipart_pool")])
@pytest.mark.parametrize("case", ["cpu_limit", "omp", "set_before"])
def test_first_import_sets_threads_in_a_fresh_process(module, name, case):
    default = torch_default_threads()
    if default < 2:
        pytest.skip("needs a machine where torch picks 2 or more threads")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CPU_LIMIT")}
    env["PYTHONPATH"] = str(ROOT)
    env["CPU_LIMIT"] = "1"
    pre = ""
    if case == "omp":
        env["OMP_NUM_THREADS"] = "2"
    elif case == "set_before":
        pre = f"torch.set_num_threads({default + 1})"
    code = FIRST_IMPORT.format(pre=pre, module=module, name=name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    before, after, changed = out.stdout.split()
    expected = {"cpu_limit": (str(default), "1", "True"), "omp": ("2", "2", "False"),
                "set_before": (str(default), str(default + 1), "False")}[case]
    assert (before, after, changed) == expected


# ---------------------------------------------------------------------------------------------- shared folder


def listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size, int(p.stat().st_mtime_ns)) for p in folder.rglob("*"))


def make_read_only(folder: Path) -> None:
    for p in [*folder.rglob("*"), folder]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


@pytest.fixture
def shared(tmp_path, monkeypatch):
    root = tmp_path / "srv_data"
    for kind in ("datasets", "checkpoints", "features"):
        (root / kind).mkdir(parents=True)
    monkeypatch.setenv("TL_LAB_SHARED_DIR", str(root))
    yield root
    make_writable(root)


def test_shared_paths(tmp_path, shared):
    assert shared_path("datasets") == shared / "datasets"
    assert shared_file("checkpoints", "x.pth") is None
    assert shared_path("features", environ={"TL_LAB_SHARED_DIR": str(tmp_path / "missing")}) is None
    with pytest.raises(ValueError, match="choose one of: datasets, checkpoints, features"):
        shared_path("weights")


def test_a_shared_dataset_is_read_and_never_written(tmp_path, shared):
    from PIL import Image

    from tl_lab.data import load_dataset

    rng = np.random.default_rng(0)
    for c in ("Forest", "River"):
        folder = shared / "datasets" / "eurosat" / "2750" / c
        folder.mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{c}_{i}.png")
    make_read_only(shared)
    before = listing(shared)
    own = tmp_path / "own"   # the learner's own (empty) download folder
    data = load_dataset("eurosat", root=own, image_size=16, max_per_class=3, test_per_class=2, download=True)
    assert data.classes == ("Forest", "River") and len(data.test) == 4
    assert data.meta["root"] == str(shared / "datasets")
    assert listing(shared) == before and not own.exists()          # nothing written, nothing downloaded


@pytest.mark.slow  # writes and loads a 45 MB resnet18 state dict
def test_shared_torchvision_weights_are_used_not_downloaded(tmp_path, shared, monkeypatch, no_network):
    import torchvision

    from tl_lab.backbones import available_offline, load_backbone

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, shared / "checkpoints" / os.path.basename(url))
    make_read_only(shared)
    before = listing(shared)
    assert available_offline("resnet18")                            # the shared copy counts as on this machine
    backbone = load_backbone("resnet18")                            # no network: it must come from the share
    assert torch.equal(backbone.model.get_submodule("stem")[0].weight, state["conv1.weight"])
    assert listing(shared) == before


def test_shared_features_are_read_and_never_written(tmp_path, shared, monkeypatch):
    from tl_lab.backbones import load_backbone
    from tl_lab.data import load_dataset
    from tl_lab.training.feature_cache import build_prefix_cache

    backbone = load_backbone("efficientnet_lite0", num_classes=3)
    data = load_dataset("shapes", shots=2, image_size=32, per_class=12)
    splits = {"train": data.train, "val": data.val}
    cpu = torch.device("cpu")
    # the instructor fills the shared folder once: cap 0 puts the features on disk, in cache_dir
    monkeypatch.delenv("TL_LAB_SHARED_DIR")
    made = build_prefix_cache(backbone, splits, "stage4", device=cpu, memory_cap_mb=0, cache_dir=shared / "features")
    assert made.where == f"disk: {shared / 'features'}" and len(list((shared / "features").glob("*.npy"))) == 2
    reference = {k: v.clone() for k, v in made.features.items()}
    del made
    monkeypatch.setenv("TL_LAB_SHARED_DIR", str(shared))
    make_read_only(shared)
    before = listing(shared)
    got = build_prefix_cache(backbone, splits, "stage4", device=cpu)          # a learner's identical run
    assert got.where == f"shared: {shared / 'features'}"
    assert all(torch.equal(got.features[k], reference[k]) for k in splits)
    other = build_prefix_cache(backbone, {"train": data.test}, "stage4", device=cpu)   # other images: computed
    assert other.where == "memory"
    assert listing(shared) == before


def test_a_none_cap_follows_mem_limit(tmp_path, monkeypatch):
    from tl_lab.backbones import load_backbone
    from tl_lab.data import load_dataset
    from tl_lab.training.feature_cache import build_prefix_cache

    backbone = load_backbone("efficientnet_lite0", num_classes=3)
    data = load_dataset("shapes", shots=2, image_size=32, per_class=12)
    splits = {"train": data.train}
    cpu = torch.device("cpu")
    monkeypatch.delenv("TL_LAB_SHARED_DIR", raising=False)
    monkeypatch.delenv("MEM_LIMIT", raising=False)
    assert build_prefix_cache(backbone, splits, "stage2", device=cpu).where == "memory"
    nbytes = build_prefix_cache(backbone, splits, "stage2", device=cpu).nbytes
    monkeypatch.setenv("MEM_LIMIT", str(int(nbytes * 4 * 0.9)))   # a quarter of it is just below the features
    got = build_prefix_cache(backbone, splits, "stage2", device=cpu, cache_dir=tmp_path)
    assert got.where == f"disk: {tmp_path}"
    assert build_prefix_cache(backbone, splits, "stage2", device=cpu, memory_cap_mb=1024.0).where == "memory"


@pytest.mark.parametrize("env, expected", [({"CPU_LIMIT": "1"}, "1"), ({"CPU_LIMIT": "1", "OMP_NUM_THREADS": "3"}, "3")])
def test_binder_start_sets_omp_threads_from_the_limit(env, expected):
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "CPU_LIMIT")}
    base.update(env, PYTHONPATH=str(ROOT), PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    out = subprocess.run(["bash", str(ROOT / "binder" / "start"), "bash", "-c", "echo $OMP_NUM_THREADS"],
                         capture_output=True, text=True, env=base, check=True)
    assert out.stdout.strip() == expected


def test_fit_caps_the_feature_cache_by_mem_limit_when_the_caller_did_not_choose(monkeypatch):
    """fit(memory_cap_mb=None) hands Feed a quarter of MEM_LIMIT; an explicit cap is used as given."""
    import tl_lab
    import tl_lab.training.loop as loop

    seen = []
    real = loop.Feed

    def spy(*args, **kwargs):
        seen.append(kwargs["memory_cap_mb"])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "Feed", spy)
    monkeypatch.setattr(loop, "cache_cap_mb", lambda: cache_cap_mb(
        environ={"MEM_LIMIT": str(2 * 2**30)}, root="/nonexistent"))  # a 2 GiB pod, whatever this machine has
    data = tl_lab.load_dataset("digits", shots=2, image_size=32)
    tl_lab.fit("efficientnet_lite0", data, epochs=1, progress=False, save_checkpoints=False)
    tl_lab.fit("efficientnet_lite0", data, epochs=1, progress=False, save_checkpoints=False, memory_cap_mb=64)
    assert seen == [512.0, 64]
