"""Look inside: analyses that return plain data (taps, filters, feature maps, pooled stage features, linear probes,
2-D embeddings, CKA, captum attributions, sanity checks, how much of the old task a trained body kept). :mod:`tl_lab.plots` draws what they return."""

from tl_lab.inside.attribution import Attribution, explain, list_methods
from tl_lab.inside.cka import cka, compare_stages
from tl_lab.inside.embedding import embed
from tl_lab.inside.feature_maps import FeatureMaps, FilterTiles, feature_maps, filters
from tl_lab.inside.old_task import old_task_agreement
from tl_lab.inside.probes import ProbeResult, StageProbe, fit_probe, probe_stages
from tl_lab.inside.prototypes import NearestMeanResult, nearest_mean
from tl_lab.inside.sanity import mask_scores, sanity_check
from tl_lab.inside.stage_features import clear_feature_cache, stage_features
from tl_lab.inside.taps import tap
from tl_lab.inside.transferability import METRICS, transferability
from tl_lab.inside.zero_shot import ZeroShotResult, zero_shot

__all__ = ["METRICS", "Attribution", "FeatureMaps", "FilterTiles", "NearestMeanResult", "ProbeResult", "StageProbe",
           "ZeroShotResult", "cka", "clear_feature_cache", "compare_stages", "embed", "explain", "feature_maps",
           "filters", "fit_probe", "list_methods", "mask_scores", "nearest_mean", "old_task_agreement", "probe_stages",
           "sanity_check", "stage_features", "tap", "transferability", "zero_shot"]
