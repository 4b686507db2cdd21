"""tl_lab: learn why pretrained features transfer, by doing it and measuring it in JupyterLab.

The public API, re-exported here so a lesson can write ``import tl_lab`` and still see where everything lives::

    import tl_lab
    data = tl_lab.load_dataset("digits", shots=10)                      # embedded, offline
    run = tl_lab.fit("efficientnet_lite0", data, plan=tl_lab.FreezePlan("head"))
    print(run.best["test_acc"], tl_lab.baseline(data)["test_acc"])     # pretrained features vs raw pixels
    probes = tl_lab.probe_stages(run.backbone, data)                    # which stage transfers best?

Attribution and the multi-run experiments import captum and friends, so they load on first use
(``tl_lab.explain``, ``tl_lab.data_efficiency`` …); the table below says which module each name comes from.
"""

from importlib import import_module
from typing import Any

from tl_lab.backbones import Backbone, WeightsUnavailableError, list_backbones, load_backbone, register_backbone
from tl_lab.cka import cka, compare_stages
from tl_lab.data import DatasetSplits, DatasetUnavailableError, baseline, list_datasets, load_dataset
from tl_lab.doctor import doctor
from tl_lab.events import StopToken
from tl_lab import embed  # the module: tl_lab.embed.save_html / replay (2-D projection: tl_lab.embed_features)
from tl_lab.features import cut_at, feature_maps, filters, probe_stages, stage_features, tap
from tl_lab.features import embed as embed_features
from tl_lab.freeze import FreezePlan
from tl_lab.run import Run
from tl_lab.samples import sample_photo, sample_photos
from tl_lab.train import fit

_LAZY = {
    "explain": "tl_lab.attribution",
    "list_methods": "tl_lab.attribution",
    "sanity_check": "tl_lab.sanity",
    "mask_scores": "tl_lab.sanity",
    "data_efficiency": "tl_lab.experiments",
    "freeze_sweep": "tl_lab.experiments",
    "shots_to_reach": "tl_lab.experiments",
    "domain_shift": "tl_lab.shift",
    "forgetting": "tl_lab.shift",
    "negative_transfer": "tl_lab.shift",
}

__all__ = [
    "Backbone",
    "DatasetSplits",
    "DatasetUnavailableError",
    "FreezePlan",
    "Run",
    "StopToken",
    "WeightsUnavailableError",
    "baseline",
    "cka",
    "compare_stages",
    "cut_at",
    "doctor",
    "embed",
    "embed_features",
    "feature_maps",
    "filters",
    "fit",
    "list_backbones",
    "list_datasets",
    "load_backbone",
    "load_dataset",
    "probe_stages",
    "register_backbone",
    "sample_photo",
    "sample_photos",
    "stage_features",
    "tap",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name == "widgets":  # ``tl_lab.widgets.TransferLab()`` after a plain ``import tl_lab``
        return import_module("tl_lab.widgets")
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tl_lab' has no attribute {name!r}")


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt extension (Launcher card, Lessons panel); see labextension/."""
    return [{"src": "labextension", "dest": "tl-lab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The server routes behind that extension (tl_lab.jupyter_server)."""
    return [{"module": "tl_lab.jupyter_server"}]
