"""Annotation readers for the formats users bring, behind one source spec.

A source is written ``NAME[:FORMAT]=URI[,images=URI][,classes=URI][,split=train|val]`` (the
CLI's ``--source``; ``split`` puts all of the source's images in that split):
``coco=/data/coco/instances_train2017.json,images=/data/coco/train2017``,
``oi=s3://bkt/oi/train-annotations-bbox.csv,classes=s3://bkt/oi/class-descriptions.csv``.
FORMAT defaults to NAME when NAME is a format (``coco``, ``o365``, ``oi``, ``yolo``, ``voc``,
``ultralytics``). COCO/O365/OI URIs name the annotation file; YOLO/VOC URIs name the dataset
directory; ULTRALYTICS URIs name the ``data.yaml`` (whose ``train``/``val`` give the split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from damo_core.data.errors import DatasetError
from damo_core.data.formats.base import ImageRecord, SourceClass, SourceReader
from damo_core.data.formats.coco_json import CocoJsonReader
from damo_core.data.formats.openimages import OpenImagesReader, read_class_descriptions
from damo_core.data.formats.ultralytics import UltralyticsReader
from damo_core.data.formats.voc import VocReader
from damo_core.data.formats.yolo import YoloReader
from damo_core.storage import Store, open_store

__all__ = ["FORMATS", "SPLITS", "ImageRecord", "SourceClass", "SourceReader", "SourceSpec",
           "open_source", "parse_source"]

# Objects365 ships COCO-style JSON: same reader, its own name in manifests and mappings.
FORMATS: tuple[str, ...] = ("coco", "o365", "oi", "yolo", "voc", "ultralytics")
_OPTIONS = ("images", "classes", "split")
SPLITS = ("train", "val")
OI_DEFAULT_CLASSES = "class-descriptions-boxable.csv"


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``--source`` value."""

    name: str
    format: str
    uri: str
    images: str | None = None
    classes: str | None = None
    split: str | None = None


def parse_source(text: str) -> SourceSpec:
    """Parse ``NAME[:FORMAT]=URI[,OPTION=VALUE...]``; errors quote the value."""
    head, sep, rest = text.partition("=")
    if not sep or not head or not rest:
        raise DatasetError(f"source {text!r}: expected NAME[:FORMAT]=URI")
    name, _, fmt = head.partition(":")
    fmt = fmt or name
    if fmt not in FORMATS:
        raise DatasetError(f"source {text!r}: unknown format {fmt!r}; choose from "
                           f"{list(FORMATS)} (NAME:FORMAT=URI)")
    uri, *extras = rest.split(",")
    options: dict[str, str] = {}
    for extra in extras:
        key, eq, value = extra.partition("=")
        if not eq or key not in _OPTIONS or not value:
            raise DatasetError(f"source {text!r}: option {extra!r} is not one of "
                               "['images=URI', 'classes=URI', 'split=train|val']")
        options[key] = value
    if options.get("split", "train") not in SPLITS:
        raise DatasetError(f"source {text!r}: split={options['split']!r} is not one of "
                           f"{list(SPLITS)}")
    return SourceSpec(name=name, format=fmt, uri=uri.rstrip("/"), **options)


def _file(uri: str) -> tuple[Store, str]:
    """(store of the parent directory, file name) for a file URI."""
    path = PurePosixPath(uri)
    return open_store(str(path.parent) if not uri.startswith("s3://")
                      else uri.rsplit("/", 1)[0]), path.name


def open_source(spec: SourceSpec | str, *, skip_invalid: bool = False) -> SourceReader:
    """The reader for one source (nothing is read beyond class lists until iterated)."""
    spec = parse_source(spec) if isinstance(spec, str) else spec
    if spec.format in ("coco", "o365"):
        store, key = _file(spec.uri)
        reader: SourceReader = CocoJsonReader(store, key, images=spec.images,
                                              skip_invalid=skip_invalid)
    elif spec.format == "oi":
        store, key = _file(spec.uri)
        classes_store, classes_key = (_file(spec.classes) if spec.classes
                                      else (store, OI_DEFAULT_CLASSES))
        reader = OpenImagesReader(store, key,
                                  classes=read_class_descriptions(classes_store, classes_key),
                                  images=spec.images, skip_invalid=skip_invalid)
    elif spec.format == "yolo":
        reader = YoloReader(open_store(spec.uri), images=spec.images, skip_invalid=skip_invalid)
    elif spec.format == "ultralytics":
        reader = UltralyticsReader(spec.uri, images=spec.images, skip_invalid=skip_invalid)
    else:
        reader = VocReader(open_store(spec.uri), images=spec.images, skip_invalid=skip_invalid)
    reader.format_name = spec.format
    return reader
