"""Backbones: the registry of pretrained networks rebuilt as chains of named stages, their sample photos, cut_at.

The lowest layer: it imports nothing else from tl_lab but :mod:`tl_lab.limits` (no torch) and
:mod:`tl_lab.shared_cache`. Stage names (``stem``, ``stage1`` … ``head``) are real module paths of
``Backbone.model``, checked once at registration; every layer above speaks in them.
"""

import torch as _torch

from tl_lab.limits import apply_torch_threads as _apply_torch_threads

# torch's thread count follows the CPUs this process may use (quota, CPU_LIMIT, affinity) unless the user chose
# one: done here, where tl_lab first imports torch (and in tl_lab.data.sources, the other lowest torch user).
_apply_torch_threads(_torch)

from tl_lab.backbones.cut import cut_at
from tl_lab.backbones.registry import (
    Backbone,
    BackboneSpec,
    WeightsUnavailableError,
    available_offline,
    get_spec,
    list_backbones,
    load_backbone,
    register_backbone,
)
from tl_lab.backbones.samples import (
    SamplePhoto,
    imagenet_categories,
    sample_photo,
    sample_photos,
)

__all__ = ["Backbone", "BackboneSpec", "SamplePhoto", "WeightsUnavailableError", "available_offline", "cut_at", "get_spec",
           "imagenet_categories", "list_backbones", "load_backbone", "register_backbone", "sample_photo",
           "sample_photos"]
