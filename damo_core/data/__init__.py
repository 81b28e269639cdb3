"""Datasets: the bundled synthetic shapes generator and the COCO reader."""

from damo_core.data.coco import CocoDetection, DatasetSpec, Sample, load_dataset_yaml
from damo_core.data.errors import DatasetError
from damo_core.data.synth import generate

__all__ = [
    "CocoDetection",
    "DatasetError",
    "DatasetSpec",
    "Sample",
    "generate",
    "load_dataset_yaml",
]
