"""COCO-format detection dataset reader and ``dataset.yaml`` loader.

Why validate up front: a bad box or a missing file found at step 40k of training wastes the
run and the message is usually a shape error far from the cause. Everything checkable
without decoding images is checked in the constructor, and every error names the file,
the image id, the field and the offending value. ``skip_invalid=True`` is for messy real
data: bad entries are dropped and counted in ``skipped`` instead.

Labels are contiguous ``0..K-1`` in ascending COCO category-id order; ``cat_ids`` and
``cat_id_to_label`` convert back and forth (evaluation needs the COCO ids).
Annotations with ``iscrowd=1`` are kept in :attr:`CocoDetection.coco` (COCOeval uses them
as ignore regions) but are not returned as training targets.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pycocotools.coco import COCO

from damo_core.data.errors import DatasetError
from damo_core.data.images import ImageDecodeError, load_rgb_array

__all__ = ["CocoDetection", "DatasetSpec", "Sample", "load_dataset_yaml"]


@dataclass
class Sample:
    """One image and its targets, in the layout the training transforms expect."""

    image: np.ndarray  # HxWx3 uint8 RGB
    boxes: np.ndarray  # float32 [N, 4] xyxy, absolute pixels
    labels: np.ndarray  # int64 [N], contiguous 0..K-1
    image_id: int
    file_name: str


@dataclass(frozen=True)
class _Record:
    """Pre-validated per-image data, so ``__getitem__`` only has to decode the image."""

    image_id: int
    file_name: str
    path: Path
    width: int | None
    height: int | None
    boxes: np.ndarray
    labels: np.ndarray


_Problem = tuple[str, str] | None  # (skip-count kind, message) or no problem


class _Issues:
    """Raise on the first problem, or (skip mode) count problems by kind and carry on."""

    def __init__(self, source: Path, skip: bool, counts: dict[str, int]) -> None:
        self.source = source
        self.skip = skip
        self.counts = counts

    def report(self, kind: str, message: str) -> None:
        """Handle one problem; ``message`` already says where (image id / field / value)."""
        if not self.skip:
            raise DatasetError(f"{self.source}: {message}")
        self.counts[kind] = self.counts.get(kind, 0) + 1


def _is_int(value: object) -> bool:
    """True for real integers (JSON ``true`` is a bool, which Python treats as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """True for finite JSON numbers (excluding booleans)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_json(path: Path) -> dict[str, Any]:
    """Parse the annotation file; failures name the file instead of a bare JSON error."""
    try:
        with path.open("r", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read annotation JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level must be a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise DatasetError(f"{path}: field '{key}' must be a list")
    return data


def _parse_categories(path: Path, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Categories sorted by id. Malformed categories are fatal even in skip mode: dropping
    one would silently renumber every later class."""
    cats = data.get("categories", [])
    if not cats:
        raise DatasetError(f"{path}: field 'categories' is missing or empty")
    seen: set[int] = set()
    for cat in cats:
        cid = cat.get("id") if isinstance(cat, dict) else None
        if not _is_int(cid) or cid in seen:
            raise DatasetError(f"{path}: category entry {cat!r}: field 'id' missing or duplicate")
        if not isinstance(cat.get("name"), str):
            raise DatasetError(f"{path}: category id {cid}: field 'name' must be a string")
        seen.add(cid)
    return sorted(cats, key=lambda c: c["id"])


def check_image_fields(entry: object, seen: set[int], *, require_size: bool) -> _Problem:
    """(kind, message) for a bad ``images`` entry's id, file name or size, or None. Streaming
    readers need the size (boxes are normalised before any image is opened); the trainer's
    reader does not (it reads the size from the file)."""
    if not isinstance(entry, dict) or not _is_int(entry.get("id")):
        return "bad_image_entry", f"images entry {entry!r}: field 'id' must be an integer"
    iid = entry["id"]
    if iid in seen:
        return "duplicate_image_id", f"image id {iid}: field 'id' value {iid} is duplicated"
    name = entry.get("file_name")
    if not isinstance(name, str) or not name:
        return "bad_image_entry", f"image id {iid}: field 'file_name' has bad value {name!r}"
    for key in ("width", "height"):
        value = entry.get(key)
        if (value is not None or require_size) and (not _is_int(value) or value <= 0):
            return "bad_image_entry", f"image id {iid}: field '{key}' has bad value {value!r}"
    return None


def _check_image_entry(entry: object, image_dir: Path, seen: set[int]) -> _Problem:
    """Return (kind, message) describing what is wrong with one ``images`` entry, or None."""
    problem = check_image_fields(entry, seen, require_size=False)
    if problem is not None:
        return problem
    iid, name = entry["id"], entry["file_name"]  # type: ignore[index]
    if not (image_dir / name).is_file():
        return "missing_image", (
            f"image id {iid}: field 'file_name' value {name!r}: "
            f"file {image_dir / name} does not exist"
        )
    return None


def _clean_images(data: Mapping[str, Any], image_dir: Path, issues: _Issues) -> list[dict]:
    """Keep image entries that have an integer id, a name and an existing file."""
    kept: list[dict] = []
    seen: set[int] = set()
    for entry in data.get("images", []):
        problem = _check_image_entry(entry, image_dir, seen)
        if problem is not None:
            issues.report(*problem)
            continue
        seen.add(entry["id"])
        kept.append(entry)
    return kept


def _check_annotation(ann: object, image_ids: set[int] | Mapping[int, dict],
                      cat_ids: set[int]) -> _Problem:
    """Return (kind, message) describing what is wrong with one annotation, or None.

    With ``image_ids`` a mapping id -> image entry, a box lying wholly outside its image is
    a ``bad_bbox`` too (left/top of 0 always; right/bottom where the entry gives the size):
    such a box teaches the detector nothing and usually means swapped or mis-scaled
    coordinates. A box that only overhangs the edge is kept (the loader clips it).
    """
    if not isinstance(ann, dict) or not _is_int(ann.get("id")):
        return "bad_annotation", f"annotations entry {ann!r}: field 'id' must be an integer"
    iid, aid = ann.get("image_id"), ann["id"]
    where = f"image id {iid}, annotation id {aid}"
    if not _is_int(iid) or iid not in image_ids:
        return "unknown_image", f"{where}: field 'image_id' value {iid!r} matches no image"
    cid = ann.get("category_id")
    if not _is_int(cid) or cid not in cat_ids:
        return "unknown_category", f"{where}: field 'category_id' has unknown value {cid!r}"
    box = ann.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(map(_is_number, box)):
        return "bad_bbox", f"{where}: field 'bbox' value {box!r} is not 4 finite numbers"
    if box[2] <= 0 or box[3] <= 0:
        return "bad_bbox", (
            f"{where}: field 'bbox' value {box!r} has non-positive width/height "
            f"(w={box[2]}, h={box[3]})"
        )
    if isinstance(image_ids, Mapping):
        return _check_inside(box, image_ids[iid], where)
    return None


def _check_inside(box: list, image: Mapping[str, Any], where: str) -> _Problem:
    """``bad_bbox`` when an xywh ``box`` has no overlap with its image."""
    x, y, w, h = box
    width, height = image.get("width"), image.get("height")
    outside = x + w <= 0 or y + h <= 0
    if _is_int(width) and _is_int(height):
        outside = outside or x >= width or y >= height
    if not outside:
        return None
    size = f"{width}x{height}" if _is_int(width) and _is_int(height) else "its"
    return "bad_bbox", (f"{where}: field 'bbox' value {box!r} lies wholly outside the "
                        f"{size} image")


def _clean_annotations(
    data: Mapping[str, Any], images: Sequence[dict], cat_ids: set[int], issues: _Issues
) -> list[dict]:
    """Keep well-formed annotations of kept images.

    Annotations of images dropped in skip mode go too, counted as
    ``annotation_of_skipped_image``. A missing ``area`` is filled with the box area because
    COCOeval's small/medium/large split reads it.
    """
    kept_ids = {img["id"]: img for img in images}
    all_ids = {img.get("id") for img in data.get("images", []) if isinstance(img, dict)}
    dropped_ids = {i for i in all_ids if _is_int(i)} - kept_ids.keys()
    kept: list[dict] = []
    for ann in data.get("annotations", []):
        iid = ann.get("image_id") if isinstance(ann, dict) else None
        if _is_int(iid) and iid in dropped_ids:
            issues.report("annotation_of_skipped_image", f"image id {iid}: image was dropped")
            continue
        problem = _check_annotation(ann, kept_ids, cat_ids)
        if problem is not None:
            issues.report(*problem)
            continue
        if not _is_number(ann.get("area")):
            ann = {**ann, "area": float(ann["bbox"][2] * ann["bbox"][3])}
        kept.append(ann)
    return kept


def _build_coco(dataset: dict[str, Any]) -> COCO:
    """pycocotools index over the *cleaned* data (its progress prints are swallowed)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _targets(anns: Sequence[dict], cat_to_label: Mapping[int, int]) -> tuple[np.ndarray, ...]:
    """Non-crowd annotations as (xyxy float32 [N,4], labels int64 [N])."""
    rows = [a for a in anns if not a.get("iscrowd", 0)]
    boxes = np.asarray([a["bbox"] for a in rows], dtype=np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    labels = np.asarray([cat_to_label[a["category_id"]] for a in rows], dtype=np.int64)
    return boxes.astype(np.float32), labels


def _decode_image(record: _Record, source: Path) -> np.ndarray:
    """Decode to HxWx3 uint8 RGB; corrupt or mis-sized files raise naming the file."""
    where = f"image id {record.image_id}, file {record.path}"
    try:
        image = load_rgb_array(record.path)
    except (ImageDecodeError, FileNotFoundError) as exc:
        raise DatasetError(f"{source}: {where}: cannot decode image: {exc}") from None
    h, w = image.shape[:2]
    for field, expected, actual in (("width", record.width, w), ("height", record.height, h)):
        if expected is not None and expected != actual:
            raise DatasetError(
                f"{source}: {where}: field '{field}' says {expected} but the file has {actual}"
            )
    return image


class CocoDetection:
    """Random-access detection dataset over a COCO JSON file and an image directory.

    Validation happens once, here; see the module docstring. ``skipped`` maps a problem
    kind (``bad_bbox``, ``unknown_category``, ``unknown_image``, ``missing_image``,
    ``duplicate_image_id``, ``bad_image_entry``, ``bad_annotation``,
    ``annotation_of_skipped_image``) to how many entries were dropped (skip mode only).
    """

    def __init__(
        self, ann_file: str | Path, image_dir: str | Path, *, skip_invalid: bool = False
    ) -> None:
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir)
        self.skipped: dict[str, int] = {}
        if not self.image_dir.is_dir():
            raise DatasetError(f"{self.ann_file}: image directory {self.image_dir} not found")
        data = _read_json(self.ann_file)
        issues = _Issues(self.ann_file, skip_invalid, self.skipped)
        categories = _parse_categories(self.ann_file, data)
        self.cat_ids: tuple[int, ...] = tuple(c["id"] for c in categories)
        self.class_names: tuple[str, ...] = tuple(c["name"] for c in categories)
        self.cat_id_to_label: dict[int, int] = {cid: i for i, cid in enumerate(self.cat_ids)}
        images = _clean_images(data, self.image_dir, issues)
        anns = _clean_annotations(data, images, set(self.cat_ids), issues)
        if not images:
            extra = " after skipping invalid entries" if data.get("images") else ""
            raise DatasetError(f"{self.ann_file}: field 'images': dataset has no images{extra}")
        cleaned = {**data, "images": images, "annotations": anns, "categories": categories}
        self.coco = _build_coco(cleaned)
        self._records = [self._record(img) for img in images]

    def _record(self, img: Mapping[str, Any]) -> _Record:
        """Precompute one image's targets (cheap, and keeps ``__getitem__`` I/O-only)."""
        boxes, labels = _targets(self.coco.imgToAnns.get(img["id"], []), self.cat_id_to_label)
        return _Record(
            image_id=img["id"],
            file_name=img["file_name"],
            path=self.image_dir / img["file_name"],
            width=img.get("width"),
            height=img.get("height"),
            boxes=boxes,
            labels=labels,
        )

    @classmethod
    def from_spec(
        cls, spec: DatasetSpec, split: str, *, skip_invalid: bool = False
    ) -> CocoDetection:
        """Open one split of a :class:`DatasetSpec`, checking its names match the JSON."""
        ann_file, image_dir = spec.split(split)
        dataset = cls(ann_file, image_dir, skip_invalid=skip_invalid)
        if tuple(spec.names) != dataset.class_names:
            raise DatasetError(
                f"{spec.yaml_path}: field 'names' {list(spec.names)} does not match the "
                f"categories {list(dataset.class_names)} in {ann_file}"
            )
        return dataset

    @property
    def num_classes(self) -> int:
        """Number of contiguous labels (K)."""
        return len(self.cat_ids)

    @property
    def image_ids(self) -> list[int]:
        """COCO image ids in dataset index order."""
        return [r.image_id for r in self._records]

    def __len__(self) -> int:
        return len(self._records)

    def has_targets(self, index: int) -> bool:
        """Whether image ``index`` has a non-crowd annotation (a training target)."""
        return len(self._records[index].labels) > 0

    def __getitem__(self, index: int) -> Sample:
        """Decode image ``index``; targets are copies, so callers may mutate them freely."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of size {len(self)}")
        record = self._records[index]
        return Sample(
            image=_decode_image(record, self.ann_file),
            boxes=record.boxes.copy(),
            labels=record.labels.copy(),
            image_id=record.image_id,
            file_name=record.file_name,
        )


@dataclass(frozen=True)
class DatasetSpec:
    """Resolved contents of a ``dataset.yaml``: absolute paths plus class names."""

    yaml_path: Path
    root: Path
    train_json: Path
    val_json: Path
    train_images: Path
    val_images: Path
    names: tuple[str, ...]

    def split(self, name: str) -> tuple[Path, Path]:
        """(annotation JSON, image dir) for ``"train"`` or ``"val"``."""
        if name == "train":
            return self.train_json, self.train_images
        if name == "val":
            return self.val_json, self.val_images
        raise DatasetError(f"unknown split {name!r}; expected 'train' or 'val'")


_YAML_PATH_FIELDS = ("train", "val", "train_images", "val_images")


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse the yaml file into a mapping, naming the file on any failure."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: dataset yaml not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot parse dataset yaml: {exc}") from exc
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    return raw


def _yaml_field(path: Path, raw: Mapping[str, Any], field: str) -> str:
    """A required non-empty string field."""
    if field not in raw:
        raise DatasetError(f"{path}: missing required field '{field}'")
    value = raw[field]
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{path}: field '{field}' must be a non-empty string, got {value!r}")
    return value


def load_dataset_yaml(path: str | Path) -> DatasetSpec:
    """Read a ``dataset.yaml``. Relative paths resolve against ``path:`` (default ``.``),
    itself relative to the yaml's directory, so a dataset folder can be moved as a whole."""
    yaml_path = Path(path).absolute()
    raw = _read_yaml_mapping(yaml_path)
    root_value = raw.get("path", ".")
    if not isinstance(root_value, str):
        raise DatasetError(f"{yaml_path}: field 'path' must be a string, got {root_value!r}")
    root = (yaml_path.parent / root_value).resolve()
    resolved = {f: (root / _yaml_field(yaml_path, raw, f)).resolve() for f in _YAML_PATH_FIELDS}
    if "names" not in raw:
        raise DatasetError(f"{yaml_path}: missing required field 'names'")
    names = raw["names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DatasetError(
            f"{yaml_path}: field 'names' must be a non-empty list of strings, got {names!r}"
        )
    return DatasetSpec(
        yaml_path=yaml_path,
        root=root,
        train_json=resolved["train"],
        val_json=resolved["val"],
        train_images=resolved["train_images"],
        val_images=resolved["val_images"],
        names=tuple(names),
    )
