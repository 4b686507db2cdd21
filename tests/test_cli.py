"""The tl-lab command line and the benchmark's memory probe."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tl_lab.app.bench import bench_throughput, throughput_line
from tl_lab.app.cli import build_parser, copy_lessons, lessons_source, main


def test_lab_dry_run_opens_the_lessons(capsys):
    assert main(["lab", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "jupyter lab" in out.replace("-m jupyter lab", "jupyter lab")
    assert str(lessons_source()) in out


@pytest.mark.parametrize("euid", [0, 1000])
def test_lab_as_root_adds_allow_root_and_says_why(capsys, monkeypatch, euid):
    # JupyterLab refuses to run as root without --allow-root: the README's first command must still open the lessons
    monkeypatch.setattr("os.geteuid", lambda: euid, raising=False)
    assert main(["lab", "--dry-run"]) == 0
    out = capsys.readouterr().out
    command = out.strip().splitlines()[-1]
    if euid == 0:
        assert command.split().count("--allow-root") == 1
        assert "root" in out.replace(command, "") and "--allow-root" in out.replace(command, "")
    else:
        assert "--allow-root" not in out
    # asked for explicitly: not added twice
    main(["lab", "--dry-run", "--allow-root"])
    assert capsys.readouterr().out.strip().splitlines()[-1].split().count("--allow-root") == 1
    # JupyterLab's own options pass through, in order (the README says so)
    main(["lab", "--dry-run", "--port", "8890", "--no-browser"])
    assert " --port 8890 --no-browser" in capsys.readouterr().out.strip().splitlines()[-1]


def test_lessons_copy_never_overwrites_an_edited_copy(tmp_path):
    src = lessons_source()
    names = sorted(p.name for p in src.glob("*.ipynb"))
    copied = copy_lessons(tmp_path)
    assert sorted(p.name for p in copied) == names and all(p.parent == tmp_path for p in copied)
    # each copy records where it came from, as the Lessons panel's copies do (how it offers updates later)
    origin = json.loads(copied[0].read_text())["metadata"]["tl_lab"]["copied_from"]
    assert set(origin) == {"version", "fingerprint"} and origin["fingerprint"]
    edited = tmp_path / names[0]
    edited.write_text("my edits")
    assert copy_lessons(tmp_path) == []
    assert edited.read_text() == "my edits"
    assert [p.name for p in copy_lessons(tmp_path, overwrite=True)] == names  # asked to: replaced
    assert "copied_from" in json.loads(edited.read_text())["metadata"]["tl_lab"]


def test_doctor_json(capsys):
    code = main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert "checks" in report
    assert code in (0, 1)


def test_unknown_command_is_refused():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fly"])


def test_throughput_rows_are_measured(tmp_path):
    import torch

    rows = bench_throughput(["mobilenet_v3_small"], batch=4, size=64, iters=1, device=torch.device("cpu"))
    assert len(rows) == 1
    row = rows[0]
    assert row["forward_img_s"] > 0 and row["train_img_s"] > 0 and row["peak_rss_mb"] > 0
    assert row["weights"] == "random init"
    assert "amp_gain" not in row and "channels_last_gain" not in row  # nothing to compare with on one variant


def test_throughput_reports_amp_and_channels_last_gains(tmp_path):
    # the CUDA variants, run on the CPU (bf16 autocast): each gain is the ratio of the rows' training rates
    import torch

    rows = bench_throughput(["mobilenet_v3_small"], batch=4, size=64, iters=1, device=torch.device("cpu"),
                            variants=[(False, False), (True, False), (True, True)])
    fp32, amp, amp_cl = rows
    assert (amp["amp"], amp["channels_last"], amp_cl["channels_last"]) == (True, False, True)
    assert amp["amp_gain"] == pytest.approx(amp["train_img_s"] / fp32["train_img_s"], abs=0.006)
    assert amp_cl["channels_last_gain"] == pytest.approx(amp_cl["train_img_s"] / amp["train_img_s"], abs=0.006)
    assert "channels_last_gain" not in amp and "amp_gain" not in fp32
    line = throughput_line(amp_cl)
    assert "amp=True" in line and "cl=True" in line and f"channels_last_gain {amp_cl['channels_last_gain']}x" in line
    # a GPU too small for a case: the row says so instead of numbers, and no gain is computed from it
    oom = {**amp_cl, "forward_img_s": None, "train_img_s": None, "error": "out of GPU memory at batch 64"}
    oom.pop("channels_last_gain")
    assert throughput_line(oom).endswith("out of GPU memory at batch 64")
    rows = [fp32, amp, oom]
    from tl_lab.app.bench import _gains

    _gains(rows)
    assert "channels_last_gain" not in oom and "amp_gain" in amp


@pytest.mark.slow
def test_panel_bench_case_measures_both_sides(tmp_path):
    from tl_lab.app.bench import bench_panel
    from tl_lab.data.datasets import load_dataset

    data = load_dataset("digits", shots=10, seed=0, image_size=64)
    result = bench_panel(data, tmp_path, epochs=2, repeats=1)
    cases = {c["case"]: c for c in result["cases"]}
    assert set(cases) == {"bare fit 0", "live chart 0"}
    for c in cases.values():
        assert c["seconds"] > 0 and c["peak_rss_mb"] > 0 and c["epochs"] == 2
    chart = cases["live chart 0"]
    assert chart["points_drawn"] == 2  # the chart holds both epochs (the last one drawn by the final flush)
    assert chart["test_acc"] == cases["bare fit 0"]["test_acc"]  # same work: a listener never changes training
    assert result["noise_pct"] == 0.0  # one bare run: no spread
    median = result["median_s"]
    assert result["overhead_pct"] == pytest.approx(100 * (median["other"] - median["bare"]) / median["bare"], abs=0.01)
    # the chart's own work is timed directly inside its callback: positive, far below the whole run
    assert 0 < chart["callbacks_s"] < chart["seconds"] and result["panel_work_s"] == chart["callbacks_s"]


def test_live_chart_draws_throttled_epochs_like_the_panel():
    from tl_lab.app.bench import LiveChart
    from tl_lab.training.events import EpochEnd, FitEnd

    chart = LiveChart("x", epochs=3, interval=3600)  # one redraw an hour: only the first epoch and the end draw
    for epoch in range(3):
        metrics = {"epoch": epoch + 1, "train_loss": 1.0, "val_loss": 1.0, "train_acc": 0.5, "val_acc": 0.1 * epoch}
        chart(EpochEnd(epoch=epoch, epochs=3, metrics=metrics, is_best=False))
        assert len(chart.figure.data[-1].y or ()) == 1 and len(chart.pending) == epoch
    chart(FitEnd(run=None))
    assert chart.figure.data[-1].y == (0.0, 0.1, 0.2) and chart.pending == [] and chart.seconds > 0


def test_ci_runs_exactly_the_readme_test_command():
    # CI must not hide an install step the README lacks: its last command is the README's test command, verbatim
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    blocks = re.findall(r"```bash\n\s*(.+?)\n\s*```", readme)
    test_command = next(b for b in blocks if "pytest" in b)
    ci_lines = [line.strip() for line in (root / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci_lines[-1] == test_command.strip()
    assert 'pip install -e ".[test]"' in test_command  # installs the test extras from the project's own files


@pytest.mark.slow
def test_cache_bench_case_compares_the_same_training(tmp_path):
    from tl_lab.app.bench import bench_cache
    from tl_lab.data.datasets import load_dataset

    result = bench_cache(load_dataset("digits", shots=10, seed=0, image_size=64), tmp_path, epochs=2)
    cached, naive = result["cases"]
    assert (cached["case"], naive["case"]) == ("cached prefix", "naive loop")
    assert cached["epochs"] == naive["epochs"] == 2
    assert result["accuracy_gap"] == 0.0 and cached["test_acc"] == naive["test_acc"]  # the same training
    assert cached["cache_build_s"] > 0 and naive["cache_build_s"] == 0 and naive["cache"] == "off: cache=False"
    assert 0 < cached["epochs_s"] < cached["seconds"]
    assert result["speedup"] == pytest.approx(naive["seconds"] / cached["seconds"], abs=0.06)
    assert result["upper_bound"] == pytest.approx(naive["seconds"] / cached["cache_build_s"], abs=0.06)
    # the cached run costs more than its cache build alone (both ratios are rounded to 0.1, so they may tie)
    assert cached["cache_build_s"] < cached["seconds"] and result["upper_bound"] >= result["speedup"]


def test_train_with_a_missing_or_broken_config_prints_one_line_and_exits_2(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "missing.json"
    assert main(["train", str(missing)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and "Traceback" not in out.err
    assert out.err.startswith(f"tl-lab train: no run configuration at {missing}: it does not exist")
    # a relative path is also shown absolute, with the working folder it was looked up from
    monkeypatch.chdir(tmp_path)
    assert main(["train", "nope/run.json"]) == 2
    err = capsys.readouterr().err
    assert f"(looked for {tmp_path / 'nope' / 'run.json'}, from {tmp_path})" in err and err.count("\n") == 1
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert main(["train", "bad.json"]) == 2
    assert capsys.readouterr().err == "tl-lab train: bad.json is not a tl_lab run configuration: it holds a JSON " \
                                       "list, not an object\n"


def test_bare_command_prints_the_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tl-lab") and "error" not in out
    for command in ("lab", "doctor", "lessons", "train", "bench"):
        assert command in out


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"tl-lab {version('tl-lab')}"


def test_bench_lessons_options_reach_the_lessons_bench(monkeypatch, tmp_path):
    import tl_lab.app.bench
    import tl_lab.app.lessons_bench

    calls = {}

    def fake_bench_lessons(paths, **kw):
        calls.update(kw, lessons=[p.name[:2] for p in paths])
        return {"lessons": [{"error": None, "checks_ok": True}]}

    monkeypatch.setattr(tl_lab.app.lessons_bench, "bench_lessons", fake_bench_lessons)
    monkeypatch.setattr(tl_lab.app.bench, "run_bench", lambda **kw: pytest.fail("--only-lessons ran the speed bench"))
    out = tmp_path / "b.json"
    assert main(["bench", "--only-lessons", "--fast", "--threads", "1", "2", "--json", str(out)]) == 0
    assert calls == {"out": tmp_path / "bench_lessons.json", "fast": True, "threads": [1, 2], "references": False,
                     "lessons": [p.name[:2] for p in tl_lab.app.lessons_bench.lesson_paths()]}
    calls.clear()
    assert main(["bench", "--only-lessons", "--references", "--lesson", "12", "09", "--json", str(out)]) == 0
    assert calls == {"out": tmp_path / "bench_lessons.json", "fast": False, "threads": None, "references": True,
                     "lessons": ["09", "12"]}
