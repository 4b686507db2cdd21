"""The public API named in the design document resolves from ``import tl_lab``."""

import tl_lab


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

    code = ("import sys, tl_lab, tl_lab.jupyter_server.handlers; "
            "print(sorted(m for m in ('torch', 'torchvision', 'captum', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_importing_a_submodule_never_hides_a_function_of_the_same_name():
    import tl_lab.cka  # noqa: F401 - a submodule named like a public function
    import tl_lab.doctor  # noqa: F401

    assert callable(tl_lab.cka) and tl_lab.cka.__module__ == "tl_lab.cka"
    assert callable(tl_lab.doctor) and tl_lab.doctor.__module__ == "tl_lab.doctor"
    from tl_lab.cka import compare_stages

    assert tl_lab.compare_stages is compare_stages
