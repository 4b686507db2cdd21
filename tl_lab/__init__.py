"""tl_lab: learn why pretrained features transfer, by doing it and measuring it in JupyterLab.

The public API, re-exported here so a lesson can write ``import tl_lab`` and still see where everything lives::

    import tl_lab
    data = tl_lab.load_dataset("digits", shots=10)                      # embedded, offline
    run = tl_lab.fit("efficientnet_lite0", data, plan=tl_lab.FreezePlan("head"))
    print(run.best["test_acc"], tl_lab.baseline(data)["test_acc"])     # pretrained features vs raw pixels
    probes = tl_lab.probe_stages(run.backbone, data)                    # which stage transfers best?

Every name loads on first use (``import tl_lab`` itself imports no PyTorch, which keeps JupyterLab's start fast:
its server extension imports this package); the table below says which module each name comes from.
"""

import os
import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

# Busy-waiting OpenMP threads made PyTorch 8-30x slower on shared CPUs (Binder, course hubs); set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Every public name loads on first use, so ``import tl_lab`` is instant and pulls in no PyTorch: the Jupyter
# server extension (tl_lab.jupyter_server) imports the package on every JupyterLab start. ``name: (module, attr)``;
# attr None means the module itself.
_LAZY: dict[str, tuple[str, str | None]] = {
    "Backbone": ("tl_lab.backbones", "Backbone"),
    "WeightsUnavailableError": ("tl_lab.backbones", "WeightsUnavailableError"),
    "list_backbones": ("tl_lab.backbones", "list_backbones"),
    "load_backbone": ("tl_lab.backbones", "load_backbone"),
    "register_backbone": ("tl_lab.backbones", "register_backbone"),
    "cka": ("tl_lab.cka", "cka"),
    "compare_stages": ("tl_lab.cka", "compare_stages"),
    "DatasetSplits": ("tl_lab.data", "DatasetSplits"),
    "DatasetUnavailableError": ("tl_lab.data", "DatasetUnavailableError"),
    "baseline": ("tl_lab.data", "baseline"),
    "list_datasets": ("tl_lab.data", "list_datasets"),
    "load_dataset": ("tl_lab.data", "load_dataset"),
    "doctor": ("tl_lab.doctor", "doctor"),
    "embed": ("tl_lab.embed", None),  # the module: tl_lab.embed.save_html / replay / record
    "StopToken": ("tl_lab.events", "StopToken"),
    "cut_at": ("tl_lab.features", "cut_at"),
    "embed_features": ("tl_lab.features", "embed"),  # 2-D projection (PCA / t-SNE) of features
    "feature_maps": ("tl_lab.features", "feature_maps"),
    "filters": ("tl_lab.features", "filters"),
    "probe_stages": ("tl_lab.features", "probe_stages"),
    "stage_features": ("tl_lab.features", "stage_features"),
    "tap": ("tl_lab.features", "tap"),
    "FreezePlan": ("tl_lab.freeze", "FreezePlan"),
    "Run": ("tl_lab.run", "Run"),
    "sample_photo": ("tl_lab.samples", "sample_photo"),
    "sample_photos": ("tl_lab.samples", "sample_photos"),
    "fit": ("tl_lab.train", "fit"),
    "explain": ("tl_lab.attribution", "explain"),
    "list_methods": ("tl_lab.attribution", "list_methods"),
    "sanity_check": ("tl_lab.sanity", "sanity_check"),
    "mask_scores": ("tl_lab.sanity", "mask_scores"),
    "data_efficiency": ("tl_lab.experiments", "data_efficiency"),
    "freeze_sweep": ("tl_lab.experiments", "freeze_sweep"),
    "shots_to_reach": ("tl_lab.experiments", "shots_to_reach"),
    "domain_shift": ("tl_lab.shift", "domain_shift"),
    "forgetting": ("tl_lab.shift", "forgetting"),
    "negative_transfer": ("tl_lab.shift", "negative_transfer"),
    "widgets": ("tl_lab.widgets", None),
}

__all__ = sorted(name for name in _LAZY if name != "widgets")

if TYPE_CHECKING:  # what each name is, for readers and type checkers
    from tl_lab import embed, widgets
    from tl_lab.attribution import explain, list_methods
    from tl_lab.backbones import Backbone, WeightsUnavailableError, list_backbones, load_backbone, register_backbone
    from tl_lab.cka import cka, compare_stages
    from tl_lab.data import DatasetSplits, DatasetUnavailableError, baseline, list_datasets, load_dataset
    from tl_lab.doctor import doctor
    from tl_lab.events import StopToken
    from tl_lab.experiments import data_efficiency, freeze_sweep, shots_to_reach
    from tl_lab.features import cut_at, feature_maps, filters, probe_stages, stage_features, tap
    from tl_lab.features import embed as embed_features
    from tl_lab.freeze import FreezePlan
    from tl_lab.run import Run
    from tl_lab.samples import sample_photo, sample_photos
    from tl_lab.sanity import mask_scores, sanity_check
    from tl_lab.shift import domain_shift, forgetting, negative_transfer
    from tl_lab.train import fit


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = import_module(module) if attr is None else getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tl_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Keeps ``tl_lab.cka`` and ``tl_lab.doctor`` the functions after ``import tl_lab.cka`` / ``tl_lab.doctor``.

    Importing a submodule makes Python set it as an attribute of the package, which would hide the function of the
    same name that ``__getattr__`` serves lazily.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        target = _LAZY.get(name)
        if target is not None and target[1] is not None and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt extension (Launcher card, Lessons panel); see labextension/."""
    return [{"src": "labextension", "dest": "tl-lab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The server routes behind that extension (tl_lab.jupyter_server)."""
    return [{"module": "tl_lab.jupyter_server"}]
