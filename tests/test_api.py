"""The public API named in the design document resolves from ``import tl_lab``."""

import sys
from pathlib import Path

import tl_lab

ROOT = Path(__file__).resolve().parents[1]


def test_every_exported_name_resolves():
    for name in tl_lab.__all__:
        assert getattr(tl_lab, name) is not None, name


def test_design_api_is_there():
    for name in ("list_backbones", "load_backbone", "load_dataset", "FreezePlan", "fit", "probe_stages", "cka",
                 "compare_stages", "explain", "baseline", "doctor"):
        assert callable(getattr(tl_lab, name)), name
    assert tl_lab.list_backbones()[0] == "efficientnet_lite0"


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

    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_layers.py")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "no upward imports", result.stdout
    cycles = ROOT.parent / "shared" / "tools" / "import_cycles.py"
    if cycles.exists():  # the team's shared tool, beside the checkout in CI and on developers' machines
        out = subprocess.run([sys.executable, str(cycles), str(ROOT / "tl_lab")], capture_output=True, text=True)
        assert out.returncode == 0 and "0 import cycle(s)" in out.stdout, out.stdout


