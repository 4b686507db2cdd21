"""Rerunning a recorded run from its run.json, in one process and under torchrun with two gloo workers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tl_lab.app.cli import main as cli_main
from tl_lab.app.rerun import load_config, rerun
from tl_lab.data.datasets import load_dataset
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("recorded")
    data = load_dataset("digits", shots=10, seed=1, image_size=64)
    run = fit("efficientnet_lite0", data, plan=FreezePlan(trainable_from="conv_head"), epochs=12, progress=False,
              run_dir=root / "original")
    return run


def _strip(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in history]


@pytest.mark.slow
def test_rerun_reproduces_the_recorded_run(recorded, tmp_path):
    again = rerun(recorded.run_dir / "run.json", run_dir=tmp_path / "again", progress=False)
    assert again.config["data"] == recorded.config["data"]
    assert _strip(again.history) == _strip(recorded.history)
    assert again.best["test_acc"] == recorded.best["test_acc"]


def test_cli_train_with_an_epoch_override(recorded, tmp_path, capsys):
    assert cli_main(["train", str(recorded.run_dir / "run.json"), "--run-dir", str(tmp_path / "cli"),
                     "--epochs", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 epochs" in out and "test acc" in out
    saved = json.loads((tmp_path / "cli" / "run.json").read_text())
    assert len(saved["history"]) == 2


def test_bad_configs_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass the run.json that fit wrote"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(bad)
    bad.write_text(json.dumps({"config": {"backbone": "resnet18"}}))
    with pytest.raises(ValueError, match="missing plan, data, num_classes"):
        load_config(bad)


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(recorded, tmp_path):
    """torchrun with 2 gloo workers: both finish, rank 0 alone writes one checkpoint set, accuracy within 2 points."""
    out_dir = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "tl_lab.app.cli", "train", str(recorded.run_dir / "run.json"), "--nproc", "2",
           "--run-dir", str(out_dir), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ranks: 2" in proc.stdout
    assert proc.stdout.count("Run ") == 1  # rank 0 alone reports
    assert sorted(p.name for p in out_dir.iterdir()) == ["best.safetensors", "last.safetensors", "run.json"]
    saved = json.loads((out_dir / "run.json").read_text())
    assert len(saved["history"]) == recorded.config["epochs"]
    assert abs(saved["best"]["test_acc"] - recorded.best["test_acc"]) <= 0.02
