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
from importlib import import_module
from typing import TYPE_CHECKING, Any

# Busy-waiting OpenMP threads made PyTorch 8-30x slower on shared CPUs (Binder, course hubs); set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Every public name loads on first use, so ``import tl_lab`` is instant and pulls in no PyTorch: the Jupyter
# server extension (tl_lab.app.jupyter_server) imports the package on every JupyterLab start. ``name: (module, attr)``;
# attr None means the module itself.
_LAZY: dict[str, tuple[str, str | None]] = {
    "Backbone": ("tl_lab.backbones.registry", "Backbone"),
    "WeightsUnavailableError": ("tl_lab.backbones.registry", "WeightsUnavailableError"),
    "list_backbones": ("tl_lab.backbones.registry", "list_backbones"),
    "load_backbone": ("tl_lab.backbones.registry", "load_backbone"),
    "register_backbone": ("tl_lab.backbones.registry", "register_backbone"),
    "cka": ("tl_lab.inside.cka", "cka"),
    "compare_stages": ("tl_lab.inside.cka", "compare_stages"),
    "DatasetSplits": ("tl_lab.data.datasets", "DatasetSplits"),
    "DatasetUnavailableError": ("tl_lab.data.datasets", "DatasetUnavailableError"),
    "baseline": ("tl_lab.data.baseline", "baseline"),
    "list_datasets": ("tl_lab.data.datasets", "list_datasets"),
    "load_dataset": ("tl_lab.data.datasets", "load_dataset"),
    "doctor": ("tl_lab.app.doctor", "doctor"),
    "embed": ("tl_lab.plots.embed", None),  # the module: tl_lab.embed.save_html / replay / record
    "StopToken": ("tl_lab.training.events", "StopToken"),
    "cut_at": ("tl_lab.backbones.cut", "cut_at"),
    "embed_features": ("tl_lab.inside.embedding", "embed"),  # 2-D projection (PCA / t-SNE) of features
    "feature_maps": ("tl_lab.inside.feature_maps", "feature_maps"),
    "filters": ("tl_lab.inside.feature_maps", "filters"),
    "probe_stages": ("tl_lab.inside.probes", "probe_stages"),
    "stage_features": ("tl_lab.inside.stage_features", "stage_features"),
    "tap": ("tl_lab.inside.taps", "tap"),
    "transferability": ("tl_lab.inside.transferability", "transferability"),
    "rank_backbones": ("tl_lab.experiments.backbone_ranking", "rank_backbones"),
    "zero_shot": ("tl_lab.inside.zero_shot", "zero_shot"),
    "nearest_mean": ("tl_lab.inside.prototypes", "nearest_mean"),
    "find_mistakes": ("tl_lab.inside.mistakes", "find_mistakes"),  # what a classifier gets wrong (run.mistakes())
    "old_task_agreement": ("tl_lab.inside.old_task", "old_task_agreement"),  # how much ImageNet a run kept
    "FreezePlan": ("tl_lab.training.freeze", "FreezePlan"),
    "Retain": ("tl_lab.training.retention", "Retain"),  # a forgetting remedy for fit(retain=...)
    "merge_lora": ("tl_lab.training.peft_params", "merge_lora"),
    "Run": ("tl_lab.training.run", "Run"),
    "export_run": ("tl_lab.training.export", "export_run"),  # run.export(path): ONNX + .pt2 + JSON, checked
    "ExportResult": ("tl_lab.training.export", "ExportResult"),
    "sample_photo": ("tl_lab.backbones.samples", "sample_photo"),
    "sample_photos": ("tl_lab.backbones.samples", "sample_photos"),
    "fit": ("tl_lab.training.loop", "fit"),
    "adapt_bn": ("tl_lab.training.adapt_bn", "adapt_bn"),  # AdaBN: target BatchNorm statistics, no labels
    "lp_ft": ("tl_lab.training.lp_ft", "lp_ft"),  # linear probe, then fine-tune (Kumar et al. 2022)
    "explain": ("tl_lab.inside.attribution", "explain"),
    "list_methods": ("tl_lab.inside.attribution", "list_methods"),
    "sanity_check": ("tl_lab.inside.sanity", "sanity_check"),
    "mask_scores": ("tl_lab.inside.sanity", "mask_scores"),
    "data_efficiency": ("tl_lab.experiments.data_efficiency", "data_efficiency"),
    "freeze_sweep": ("tl_lab.experiments.freeze_sweep", "freeze_sweep"),
    "shots_to_reach": ("tl_lab.experiments.data_efficiency", "shots_to_reach"),
    "domain_shift": ("tl_lab.experiments.domain_shift", "domain_shift"),
    "forgetting": ("tl_lab.experiments.forgetting", "forgetting"),
    "parameter_efficiency": ("tl_lab.experiments.parameter_efficiency", "parameter_efficiency"),
    "multitask": ("tl_lab.experiments.multitask", "multitask"),  # single-task models vs one shared body
    "negative_transfer": ("tl_lab.experiments.domain_shift", "negative_transfer"),
    "widgets": ("tl_lab.widgets", None),
    "lesson": ("tl_lab.app.lesson", None),  # the lessons' helper: FAST switch, RESULT lines
    "links": ("tl_lab.app.links", None),  # the module (also tl_lab.links): nbgitpuller and Binder links, no torch
}

__all__ = sorted(name for name in _LAZY if name not in ("widgets", "lesson"))

if TYPE_CHECKING:  # what each name is, for readers and type checkers
    from tl_lab import widgets
    from tl_lab.app import lesson, links
    from tl_lab.app.doctor import doctor
    from tl_lab.backbones.cut import cut_at
    from tl_lab.backbones.registry import (
        Backbone,
        WeightsUnavailableError,
        list_backbones,
        load_backbone,
        register_backbone,
    )
    from tl_lab.backbones.samples import sample_photo, sample_photos
    from tl_lab.data.baseline import baseline
    from tl_lab.data.datasets import (
        DatasetSplits,
        DatasetUnavailableError,
        list_datasets,
        load_dataset,
    )
    from tl_lab.experiments.backbone_ranking import rank_backbones
    from tl_lab.experiments.data_efficiency import data_efficiency, shots_to_reach
    from tl_lab.experiments.domain_shift import domain_shift, negative_transfer
    from tl_lab.experiments.forgetting import forgetting
    from tl_lab.experiments.freeze_sweep import freeze_sweep
    from tl_lab.experiments.multitask import multitask
    from tl_lab.experiments.parameter_efficiency import parameter_efficiency
    from tl_lab.inside.attribution import explain, list_methods
    from tl_lab.inside.cka import cka, compare_stages
    from tl_lab.inside.embedding import embed as embed_features
    from tl_lab.inside.feature_maps import feature_maps, filters
    from tl_lab.inside.old_task import old_task_agreement
    from tl_lab.inside.probes import probe_stages
    from tl_lab.inside.sanity import mask_scores, sanity_check
    from tl_lab.inside.stage_features import stage_features
    from tl_lab.inside.prototypes import nearest_mean
    from tl_lab.inside.mistakes import find_mistakes
    from tl_lab.inside.taps import tap
    from tl_lab.inside.transferability import transferability
    from tl_lab.inside.zero_shot import zero_shot
    from tl_lab.plots import embed
    from tl_lab.training.events import StopToken
    from tl_lab.training.freeze import FreezePlan
    from tl_lab.training.peft_params import merge_lora
    from tl_lab.training.retention import Retain
    from tl_lab.training.adapt_bn import adapt_bn
    from tl_lab.training.loop import fit
    from tl_lab.training.lp_ft import lp_ft
    from tl_lab.training.run import Run
    from tl_lab.training.export import ExportResult, export_run


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = import_module(module) if attr is None else getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tl_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt extension (Launcher card, Lessons panel); see labextension/."""
    return [{"src": "labextension", "dest": "tl-lab"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The server routes behind that extension (tl_lab.app.jupyter_server)."""
    return [{"module": "tl_lab.app.jupyter_server"}]
