"""YOLO txt labels: ``images/<rel>.<ext>`` with ``labels/<rel>.txt`` holding one
``class cx cy w h`` line per box (normalised), class names in ``classes.txt`` (one per line)
or a ``data.yaml`` ``names`` list. Files are read one image at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np
import yaml

from damo_core.data.coco import _Issues
from damo_core.data.errors import DatasetError
from damo_core.data.formats.base import ImageRecord, SourceClass, SourceReader
from damo_core.storage import Store

__all__ = ["IMAGE_SUFFIXES", "YoloReader", "parse_label_text"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _class_names(store: Store) -> list[str]:
    if store.exists("classes.txt"):
        names = [n.strip() for n in store.read_text("classes.txt").splitlines() if n.strip()]
        where = store.uri("classes.txt")
    elif store.exists("data.yaml"):
        where = store.uri("data.yaml")
        try:
            raw = yaml.safe_load(store.read_text("data.yaml")) or {}
        except yaml.YAMLError as exc:
            raise DatasetError(f"{where}: cannot parse YAML: {exc}") from None
        names = raw.get("names") if isinstance(raw, dict) else None
        if isinstance(names, dict):  # ultralytics also writes {index: name}
            names = [names[k] for k in sorted(names)]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{where}: field 'names' must be a list of strings, got {names!r}")
    else:
        raise DatasetError(f"{store.uri()}: YOLO dataset needs classes.txt or data.yaml")
    if not names:
        raise DatasetError(f"{where}: no class names")
    return names


class YoloReader(SourceReader):
    """A YOLO dataset directory (``store`` is rooted at it)."""

    format_name = "yolo"

    def __init__(self, store: Store, *, images: str | None = None,
                 skip_invalid: bool = False) -> None:
        super().__init__(store, images=images, skip_invalid=skip_invalid)
        self._classes = [SourceClass(str(i), n) for i, n in enumerate(_class_names(store))]

    def __iter__(self) -> Iterator[ImageRecord]:
        labels = set(self.store.list("labels"))
        for key in self.store.list("images"):
            rel = PurePosixPath(key).relative_to("images")
            if rel.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            label_key = str(PurePosixPath("labels") / rel.with_suffix(".txt"))
            text = self.store.read_text(label_key) if label_key in labels else ""
            boxes, classes = self._parse(label_key, text)
            yield ImageRecord(image_id=str(rel.with_suffix("")), file_name=str(rel), width=None,
                              height=None, boxes=boxes, labels=classes,
                              flags=np.zeros(len(classes), np.uint8))

    def _parse(self, key: str, text: str) -> tuple[np.ndarray, np.ndarray]:
        return parse_label_text(text, len(self._classes), self.issues(self.store.uri(key)))


def parse_label_text(text: str, num_classes: int, issues: _Issues, *,
                     polygons: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Normalised xyxy boxes (unclipped) and class indices of one YOLO label file.

    Shared by the YOLO and ultralytics readers so both name the same faults the same way.
    ``polygons`` also reads ultralytics segment lines (``class x1 y1 x2 y2 x3 y3 ...``) as
    their bounding box, as ultralytics does when it trains a detector on segment labels.
    """
    boxes: list[list[float]] = []
    classes: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parsed = _label_numbers(line, polygons)
        if parsed is None:
            issues.report("bad_line", f"line {lineno}: expected 'class cx cy w h', "
                          f"got {line.strip()!r}")
            continue
        cls, cx, cy, w, h = parsed
        if not 0 <= cls < num_classes:
            issues.report("unknown_category", f"line {lineno}: field 'class' value {cls} "
                          f"is not in 0..{num_classes - 1}")
            continue
        if w <= 0 or h <= 0:
            issues.report("bad_bbox", f"line {lineno}: non-positive size w={w}, h={h}")
            continue
        boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        classes.append(cls)
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int32))


def _label_numbers(line: str, polygons: bool) -> tuple[int, float, float, float, float] | None:
    """``(class, cx, cy, w, h)`` of one label line, or None when the line is malformed."""
    cls_text, *coords = line.split()
    try:
        cls, values = int(cls_text), [float(v) for v in coords]
    except ValueError:
        return None
    if polygons and len(values) >= 6 and len(values) % 2 == 0:
        xs, ys = values[0::2], values[1::2]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        return cls, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    if len(values) != 4:
        return None
    cx, cy, w, h = values
    return cls, cx, cy, w, h
