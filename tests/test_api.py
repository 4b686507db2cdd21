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
