"""The public API named in the design document resolves from ``import tl_lab``."""

import sys
from pathlib import Path

import tl_lab

ROOT = Path(__file__).resolve().parents[1]


def test_every_exported_name_is_the_object_its_table_row_names():
    import importlib

    for name, (module, attr) in tl_lab._LAZY.items():
        target = importlib.import_module(module)
        assert getattr(tl_lab, name) is (target if attr is None else getattr(target, attr)), name
    assert tl_lab.__all__ == sorted(set(tl_lab._LAZY) - {"widgets", "lesson"})


def test_the_typed_imports_for_readers_match_the_lazy_table():
    """The TYPE_CHECKING block (what readers and type checkers see) names exactly the lazy table's objects."""
    import ast
    import importlib

    tree = ast.parse((ROOT / "tl_lab" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING")
    typed = {}
    for node in block.body:
        for alias in node.names:
            module = importlib.import_module(node.module)
            typed[alias.asname or alias.name] = getattr(module, alias.name, None) or importlib.import_module(
                f"{node.module}.{alias.name}")
    assert sorted(typed) == sorted(tl_lab._LAZY)
    for name, value in typed.items():
        assert getattr(tl_lab, name) is value, name


def test_design_api_is_there():
    expected = {"list_backbones": "tl_lab.backbones.registry", "load_backbone": "tl_lab.backbones.registry",
                "load_dataset": "tl_lab.data.datasets", "FreezePlan": "tl_lab.training.freeze",
                "fit": "tl_lab.training.loop", "probe_stages": "tl_lab.inside.probes", "cka": "tl_lab.inside.cka",
                "compare_stages": "tl_lab.inside.cka", "explain": "tl_lab.inside.attribution",
                "baseline": "tl_lab.data.baseline", "doctor": "tl_lab.app.doctor"}
    assert {name: getattr(tl_lab, name).__module__ for name in expected} == expected
    assert tl_lab.list_backbones()[0] == "efficientnet_lite0"
    assert [m.name for m in tl_lab.list_methods()] == ["saliency", "integrated_gradients", "grad_cam", "occlusion",
                                                       "guided_backprop"]


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tl_lab.nope  # noqa: B018


def test_import_is_light_for_the_jupyter_server():
    """JupyterLab imports the server extension (and so this package) at every start: no PyTorch there."""
    import subprocess
    import sys

    code = ("import sys, tl_lab, tl_lab.app.jupyter_server.handlers; "
            "print(sorted(m for m in ('torch', 'torchvision', 'captum', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_public_name_comes_from_its_layer_even_after_importing_every_module():
    import importlib
    import pkgutil

    import tl_lab

    for info in pkgutil.walk_packages(tl_lab.__path__, "tl_lab."):
        importlib.import_module(info.name)
    layers = ("backbones", "data", "training", "inside", "plots", "experiments", "widgets", "app")
    for name in tl_lab.__all__:
        value = getattr(tl_lab, name)
        module = value.__name__ if isinstance(value, type(tl_lab)) else value.__module__
        assert module.split(".")[1] in layers, (name, module)
    assert tl_lab.cka.__module__ == "tl_lab.inside.cka" and tl_lab.doctor.__module__ == "tl_lab.app.doctor"
    assert tl_lab.embed.replay.__module__ == "tl_lab.plots.embed"


def test_layers_import_only_downward_and_without_cycles():
    import subprocess

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_layers.py")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and result.stdout.strip() == "no upward imports", result.stdout
    cycles = ROOT.parent / "shared" / "tools" / "import_cycles.py"
    if cycles.exists():  # the team's shared tool, beside the checkout in CI and on developers' machines
        out = subprocess.run([sys.executable, str(cycles), str(ROOT / "tl_lab")], capture_output=True, text=True,
                             check=False)
        assert out.returncode == 0 and "0 import cycle(s)" in out.stdout, out.stdout


