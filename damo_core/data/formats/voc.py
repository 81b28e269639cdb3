"""Pascal VOC XML: ``Annotations/*.xml`` (one per image, pixel ``xmin..ymax`` 1-based, image
size in ``<size>``) with images in ``JPEGImages/``. Class names are not listed anywhere in
VOC, so they are collected from the XML files first (sorted, so indices are stable)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import numpy as np

from damo_core.data.errors import DatasetError
from damo_core.data.formats.base import (
    FLAG_DIFFICULT,
    FLAG_TRUNCATED,
    ImageRecord,
    SourceClass,
    SourceReader,
)
from damo_core.storage import Store

__all__ = ["VocReader"]


class VocReader(SourceReader):
    """A VOC directory (``store`` rooted at it): Annotations/ and JPEGImages/."""

    format_name = "voc"

    def __init__(self, store: Store, *, images: str | None = None,
                 skip_invalid: bool = False) -> None:
        super().__init__(store, images=images, skip_invalid=skip_invalid)
        self._keys = [k for k in store.list("Annotations") if k.endswith(".xml")]
        if not self._keys:
            raise DatasetError(f"{store.uri('Annotations')}: no .xml annotation files")
        names = {obj.findtext("name", "").strip()
                 for key in self._keys for obj in self._xml(key).iter("object")}
        self._classes = [SourceClass(n, n) for n in sorted(names - {""})]
        self._index = {c.name: i for i, c in enumerate(self._classes)}

    def default_image_root(self) -> str:
        return self.store.uri("JPEGImages")

    def _xml(self, key: str) -> ET.Element:
        try:
            return ET.fromstring(self.store.read_bytes(key))
        except ET.ParseError as exc:
            raise DatasetError(f"{self.store.uri(key)}: cannot parse XML: {exc}") from None

    def __iter__(self) -> Iterator[ImageRecord]:
        seen: set[str] = set()
        for key in self._keys:
            root = self._xml(key)
            where = self.store.uri(key)
            name = root.findtext("filename", "").strip()
            try:
                width = int(root.findtext("size/width", ""))
                height = int(root.findtext("size/height", ""))
            except ValueError:
                raise DatasetError(f"{where}: field 'size/width' or 'size/height' is missing "
                                   "or not an integer") from None
            if not name or width <= 0 or height <= 0:
                raise DatasetError(f"{where}: field 'filename' {name!r} or size "
                                   f"{width}x{height} is invalid")
            if name in seen:
                self.issues(where).report("duplicate_image_id",
                                          f"field 'filename' value {name!r} is duplicated")
                continue
            seen.add(name)
            boxes, labels, flags = self._objects(root, where, width, height)
            yield ImageRecord(image_id=name.rsplit(".", 1)[0], file_name=name, width=width,
                              height=height, boxes=boxes, labels=labels, flags=flags)

    def _objects(self, root: ET.Element, where: str, width: int,
                 height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        issues = self.issues(where)
        boxes, labels, flags = [], [], []
        for obj in root.iter("object"):
            label = obj.findtext("name", "").strip()
            try:
                x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{t}", ""))
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
            except ValueError:
                issues.report("bad_bbox", f"object {label!r}: field 'bndbox' is incomplete")
                continue
            if x1 <= x0 or y1 <= y0:
                issues.report("bad_bbox", f"object {label!r}: field 'bndbox' "
                              f"({x0}, {y0}, {x1}, {y1}) has non-positive size")
                continue
            # VOC pixels are 1-based inclusive; (x0 - 1, x1) is the covered extent.
            boxes.append([(x0 - 1) / width, (y0 - 1) / height, x1 / width, y1 / height])
            labels.append(self._index[label])
            flags.append((FLAG_DIFFICULT if obj.findtext("difficult", "0").strip() == "1" else 0)
                         | (FLAG_TRUNCATED if obj.findtext("truncated", "0").strip() == "1"
                            else 0))
        return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int32),
                np.asarray(flags, np.uint8))
