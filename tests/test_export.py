"""run.export: ONNX checked with onnxruntime, torch.export's .pt2, the JSON beside them, and the README's script.

One real run (Lite0's frozen head on 3-shot digits at 32 px) is trained and exported once per module; the checks
hold its files against ``run.predict`` with independent code (onnxruntime, ``torch.export.load``, the README's
standalone script in a fresh interpreter that cannot import tl_lab or torch). Refusals, the missing extra and the
parity check's wrong answers use a tiny network on the same data, which exports in about a second.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from tl_lab.backbones.registry import load_backbone
from tl_lab.data.datasets import DatasetSplits, ImageSplit, load_dataset
from tl_lab.training.export import (
    DEFAULT_TOLERANCE,
    EXPORT_MISSING,
    ExportParityError,
    export_run,
    exportable_model,
)
from tl_lab.training.freeze import FreezePlan
from tl_lab.training.loop import fit
from tl_lab.training.run import Run

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", shots=3, seed=0, image_size=32)


@pytest.fixture(scope="module")
def trained(digits):
    return fit("efficientnet_lite0", digits, plan=FreezePlan.frozen_head(), epochs=30, progress=False,
               save_checkpoints=False)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("export")
    return export_run(trained, folder / "digits")


def _tiny_run(lite0) -> Run:
    """A Run whose network is a pooled linear classifier (exports in about a second) on 40 random test images."""
    torch.manual_seed(0)
    classes = tuple("abc")
    model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(3 * 16, len(classes)))
    backbone = dataclasses.replace(lite0, name="tiny", model=model)  # Lite0's normalisation, a tiny network

    def split(n: int) -> ImageSplit:
        return ImageSplit(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8), torch.arange(n) % 3, classes)

    data = DatasetSplits("random", split(6), split(6), split(40), classes, image_size=32)
    return Run(name="tiny", backbone=backbone, data=data,
               config={"backbone": "tiny", "plan_label": "all trainable", "data": {"shots": 2}})


@pytest.fixture(scope="module")
def tiny(lite0):
    return _tiny_run(lite0)


def _normalised(run: Run, images: torch.Tensor) -> np.ndarray:
    return run.backbone.normalize(images).numpy()


# ---- the real run: files, parity against run.predict, the JSON ------------------------------------------------------


@pytest.mark.slow
def test_export_writes_three_files_whose_sizes_and_parity_it_reports(exported, trained, digits):
    paths = exported.paths
    assert list(paths) == ["onnx", "pt2", "json", "script"]
    assert [p.name for p in paths.values()] == ["digits.onnx", "digits.pt2", "digits.json", "predict.py"]
    assert sorted(p.name for p in paths["onnx"].parent.iterdir()) == ["digits.json", "digits.onnx", "digits.pt2",
                                                                      "predict.py"]
    for kind, path in paths.items():  # nothing else left in the folder (no temporary folder)
        assert path.stat().st_size == exported.sizes[kind] > 0
    assert exported.sizes["onnx"] > 10e6 and exported.sizes["pt2"] > 10e6  # Lite0's 3.4 M float32 weights: 13.6 MB
    n = len(digits.test)
    for kind in ("onnx", "pt2"):
        p = exported.parity[kind]
        assert (p.split, p.n_images, p.top1_agreement, p.tolerance) == ("test", n, n, DEFAULT_TOLERANCE)
        assert 0 <= p.max_abs_diff <= DEFAULT_TOLERANCE and p.ok
    text = str(exported)
    assert text.startswith("exported lite0, frozen to head, 3-shot (10 classes, 32 px) to ")
    assert f"top-1 agreement {n}/{n}" in text and "digits.onnx 13." in text


@pytest.mark.slow
def test_the_json_says_how_to_feed_the_model_and_where_it_came_from(exported, trained, digits):
    info = json.loads(exported.paths["json"].read_text())
    assert info == exported.info
    spec = trained.backbone.spec
    pre = info["preprocessing"]
    assert (pre["size"], pre["mean"], pre["std"], pre["channel_order"]) == (32, list(spec.mean), list(spec.std), "RGB")
    assert (pre["crop"], pre["resample"], pre["scale"]) == ("center", "bicubic", 1 / 255)
    assert info["input"] == {"name": "image", "shape": ["batch", 3, 32, 32], "dtype": "float32", "layout": "NCHW",
                             "batch": "dynamic"}
    assert info["output"]["name"] == "probabilities" and info["output"]["shape"] == ["batch", 10]
    assert info["classes"] == list(digits.classes)
    assert info["files"] == {"onnx": "digits.onnx", "pt2": "digits.pt2"}
    assert info["source"]["run_label"] == trained.label and info["source"]["backbone"] == "efficientnet_lite0"
    assert info["source"]["best"]["test_acc"] == trained.best["test_acc"] and not info["source"]["lora_merged"]
    assert info["parity"]["onnx"]["max_abs_diff"] == exported.parity["onnx"].max_abs_diff
    assert info["parity"]["onnx"]["ok"] and info["opset"] == 18 and info["checked"]
    assert set(info["versions"]) == {"tl_lab", "torch", "onnx", "onnxscript", "onnxruntime"}


@pytest.mark.slow
def test_onnxruntime_reproduces_run_predict_on_every_test_image_at_any_batch_size(exported, trained, digits):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported.paths["onnx"]), providers=["CPUExecutionProvider"])
    x = _normalised(trained, digits.test.images)
    probs = np.concatenate([session.run(None, {"image": x[lo : lo + 100]})[0] for lo in range(0, len(x), 100)])
    reference = trained.predict(digits.test.images).numpy()
    assert probs.shape == reference.shape == (len(digits.test), 10)
    assert np.abs(probs - reference).max() < 1e-5
    assert (probs.argmax(1) == reference.argmax(1)).all()
    assert session.run(None, {"image": x[:1]})[0].shape == (1, 10)  # the batch dimension is dynamic
    # the run learned something (chance is 0.1), and its top two classes lie far apart compared with the exporter's
    # differences, so agreeing on top-1 is not luck between near-equal probabilities
    top2 = np.sort(reference, 1)[:, -2:]
    assert trained.best["test_acc"] > 0.3 and np.median(top2[:, 1] - top2[:, 0]) > 1e-3


@pytest.mark.slow
def test_the_pt2_program_loads_with_torch_export_alone_and_gives_the_same_probabilities(exported, trained, digits):
    program = torch.export.load(exported.paths["pt2"])
    x = trained.backbone.normalize(digits.test.images[:7])
    with torch.no_grad():
        probs = program.module()(x)
    assert probs.shape == (7, 10)
    torch.testing.assert_close(probs, trained.predict(digits.test.images[:7]), atol=1e-6, rtol=0)


def _readme_script() -> str:
    """The python block under the README's "Predicting outside the kit" heading (the text learners copy)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Predicting outside the kit", 1)[1].split("\n#", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the section should hold exactly one python block: the script"
    return blocks[0]


# Runs a script with tl_lab, torch and torchvision unimportable, then checks none of them was loaded.
_RUNNER = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"tl_lab", "torch", "torchvision"}:
            raise ImportError(f"blocked in this test: {name}")
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
assert not {"tl_lab", "torch"} & set(sys.modules), sorted(sys.modules)
"""


def test_readme_script_is_about_twenty_lines_and_imports_only_onnxruntime_numpy_pillow():
    script = _readme_script()
    lines = [line for line in script.splitlines() if line.strip()]
    assert 15 <= len(lines) <= 22
    imported = {m.split(".")[0] for m in re.findall(r"^(?:import|from) ([\w.]+(?:, [\w.]+)*)", script, flags=re.MULTILINE)
                for m in m.split(", ")}
    assert imported == {"json", "sys", "numpy", "onnxruntime", "PIL"}


@pytest.mark.slow
def test_readme_script_predicts_what_run_predict_does_without_tl_lab(exported, trained, digits, tmp_path):
    script = exported.paths["script"]  # the export writes the README's script beside the model
    assert script.read_text() == _readme_script()
    pictures = {}
    for i in range(3):  # test images as the learner would save them
        pictures[f"test{i}.png"] = Image.fromarray(digits.test.images[i].permute(1, 2, 0).numpy())
    # a larger, non-square picture: resized on its short side and centre-cropped
    pictures["wide.png"] = pictures["test0.png"].resize((61, 40), Image.Resampling.BICUBIC)
    # transparency: composited on white, as tl_lab's loader does
    rgba = pictures["test1.png"].convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    pictures["alpha.png"] = rgba
    for name, picture in pictures.items():
        picture.save(tmp_path / name)
    out = subprocess.run([sys.executable, "-I", "-c", _RUNNER, str(script), str(exported.paths["onnx"]),
                          *(str(tmp_path / name) for name in pictures)],
                         capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path,
                         check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == len(pictures)
    for line, (name, picture) in zip(lines, pictures.items()):
        m = re.fullmatch(r"(.+): (\S+) (\d\.\d{4})", line)
        assert m and Path(m[1]).name == name, line
        probs = trained.predict(Image.open(tmp_path / name))[0]
        assert m[2] == digits.classes[int(probs.argmax())], (line, probs)
        assert abs(float(m[3]) - float(probs.max())) < 1e-3, (line, probs)


# ---- LoRA, multi-task, arguments --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_lora_run_is_exported_with_its_factors_merged(tiny):
    pytest.importorskip("peft")
    from tl_lab.training.peft_params import add_lora, is_lora_layer

    backbone = load_backbone("efficientnet_lite0", num_classes=3)
    add_lora(backbone.model, ("stage7", "conv_head"), rank=2)
    torch.manual_seed(1)
    for name, p in backbone.model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (no change); give the factors something to merge
            p.data.normal_(0, 0.05)
    run = dataclasses.replace(tiny, backbone=backbone)
    model = exportable_model(run)
    assert not any(is_lora_layer(m) for m in model.modules())
    assert any(is_lora_layer(m) for m in run.model.modules())  # the run keeps its own model
    images = tiny.data.test.images[:16]
    with torch.no_grad():
        probs = model(backbone.normalize(images))
    lora_off = exportable_model(dataclasses.replace(run, backbone=load_backbone("efficientnet_lite0", num_classes=3)))
    with torch.no_grad():
        assert (lora_off(backbone.normalize(images)) - probs).abs().max() > 1e-3  # the factors matter ...
    torch.testing.assert_close(probs, run.predict(images), atol=1e-5, rtol=0)  # ... and are merged in


def test_a_multi_task_run_is_refused_by_name(tiny):
    from tl_lab.training.multitask import Tasks

    tasks = Tasks(("shape", "position"), {"shape": ("a", "b"), "position": ("l", "r")}, {"shape": 1.0, "position": 1.0})
    with pytest.raises(ValueError, match=r"cannot export a multi-task run yet \(tasks shape, position\)"):
        dataclasses.replace(tiny, tasks=tasks).export("x")


def test_the_path_names_the_files(tiny, tmp_path):
    from tl_lab.training.export import _stem

    assert _stem(tmp_path / "digits") == _stem(tmp_path / "digits.onnx") == _stem(tmp_path / "digits.pt2") == (
        tmp_path / "digits")
    assert _stem(tmp_path) == tmp_path / "model"  # an existing folder: model.onnx, model.pt2, model.json inside
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(ValueError, match=r"would overwrite the run's own run.json; choose another name, e\.g\. "):
        dataclasses.replace(tiny, run_dir=tmp_path).export(tmp_path / "run.onnx")
    assert (tmp_path / "run.json").read_text() == "{}"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"formats": ("tflite",)}, r"formats must name one or both of 'onnx', 'pt2', each once; got \('tflite',\)"),
    ({"formats": ()}, "formats must name one or both"),
    ({"formats": ("pt2", "pt2")}, "each once"),
    ({"tolerance": -1e-4}, r"tolerance must be a number >= 0 \(an absolute probability difference\); got -0.0001"),
    ({"tolerance": float("nan")}, "tolerance must be a number >= 0"),
])
def test_bad_arguments_name_the_allowed_values(tiny, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export_run(tiny, tmp_path / "m", **kwargs)
    assert list(tmp_path.iterdir()) == []


# ---- the optional extra ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_without_the_extra_onnx_export_names_the_install_and_writes_nothing(tiny, tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError, as when it is not installed
    with pytest.raises(ImportError) as caught:
        tiny.export(tmp_path / "m")
    assert str(caught.value) == EXPORT_MISSING.format(missing=missing)
    assert 'pip install "tl-lab[export]"' in str(caught.value) and f"needs {missing}:" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_an_old_torch_is_named_before_onnx_export(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "__version__", torch.torch_version.TorchVersion("2.4.1"))
    with pytest.raises(ImportError, match=r"needs torch 2.6 or later \(this is 2.4.1\): pip install -U"):
        tiny.export(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_without_the_extra_a_pt2_export_still_works(tiny, tmp_path, monkeypatch):
    for name in ("onnx", "onnxscript", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)
    result = tiny.export(tmp_path / "m.onnx", formats=("pt2",))  # a suffix is dropped: m.pt2, m.json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt2"]
    assert list(result.parity) == ["pt2"] and result.parity["pt2"].ok and result.parity["pt2"].n_images == 40
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["opset"] is None and set(info["versions"]) == {"tl_lab", "torch"}


def test_doctor_reports_the_export_extra(monkeypatch):
    import importlib.metadata

    from tl_lab.app.doctor_hub import export_checks

    [present] = export_checks()
    assert present.ok and present.name == "export (ONNX)"
    assert present.data["versions"]["onnxruntime"] == importlib.metadata.version("onnxruntime")
    real = importlib.metadata.version

    def without_onnxscript(name):
        if name == "onnxscript":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", without_onnxscript)
    [missing] = export_checks()
    assert not missing.ok and not missing.critical and missing.fix == 'pip install "tl-lab[export]"'
    assert missing.detail.startswith("onnxscript not installed: run.export writes only .pt2 files")


# ---- the parity check, fed wrong answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("wrong", "message"), [
    (lambda p: p + 2e-4, "5 test images, max |p - p_torch| 2.0e-04 (tolerance 1e-04), top-1 agreement 5/5"),
    (lambda p: p.roll(1, dims=1), "5 test images, max |p - p_torch| 8.5e-01 (tolerance 1e-04), top-1 agreement 0/5"),
    (lambda p: p[:, [1, 0, 2]], "top-1 agreement 3/5"),  # two rows' top classes swapped
    (lambda p: p[:-1], "5 test images, max |p - p_torch| inf (tolerance 1e-04), top-1 agreement 0/5"),
])
def test_the_check_fails_wrong_probabilities(wrong, message):
    from tl_lab.training.export import compare_probabilities

    reference = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4], [0.05, 0.05, 0.9]])
    right = compare_probabilities("onnx", "test", reference + 5e-5, reference, 1e-4)
    assert right.ok and right.top1_agreement == 5
    parity = compare_probabilities("onnx", "test", wrong(reference), reference, 1e-4)
    assert not parity.ok and message in parity.describe()


@pytest.mark.slow
def test_a_failed_check_raises_and_leaves_no_file_behind(tiny, tmp_path, monkeypatch):
    from tl_lab.training import export

    real = export._onnx_probabilities
    monkeypatch.setattr(export, "_onnx_probabilities", lambda *args: real(*args).roll(1, dims=1))
    (tmp_path / "m.json").write_text("an earlier export")
    with pytest.raises(ExportParityError, match=r"onnx: 40 test images, .* top-1 agreement 0/40") as caught:
        export_run(tiny, tmp_path / "m")
    assert "nothing was written" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no .onnx, no .pt2, no temporary folder
    assert (tmp_path / "m.json").read_text() == "an earlier export"
