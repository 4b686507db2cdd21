"""Data: datasets and splits with provenance (embedded, procedural, your folder, torchvision), the raw-pixel
baseline, and reproducible domain shifts. Imports only :mod:`tl_lab.backbones` below it (and mostly nothing)."""

from tl_lab.data.baseline import baseline
from tl_lab.data.datasets import (
    DatasetSplits,
    DatasetUnavailableError,
    ImageSplit,
    SkippedFile,
    list_datasets,
    load_dataset,
)

__all__ = ["DatasetSplits", "DatasetUnavailableError", "ImageSplit", "SkippedFile", "baseline", "list_datasets",
           "load_dataset"]
