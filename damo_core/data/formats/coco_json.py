"""COCO-style JSON (COCO, Objects365) read in bounded memory with ijson.

Why three streaming passes instead of ``json.load``: Objects365's train JSON holds ~30 M
boxes; as Python dicts that is tens of GiB. Categories and images are read first (small), then
annotations are streamed into compact numpy columns (~30 bytes a box) and grouped per image
with one argsort. Validation reuses :mod:`damo_core.data.coco`'s checks, so the messages and
skip kinds are the ones users already know.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from damo_core.data.coco import (
    _check_annotation,
    _is_number,
    _parse_categories,
    check_image_fields,
)
from damo_core.data.errors import DatasetError
from damo_core.data.formats.base import (
    FLAG_CROWD,
    ColumnBuffer,
    ImageRecord,
    SourceClass,
    SourceReader,
    group_rows,
)
from damo_core.storage import Store

__all__ = ["CocoJsonReader"]

_BATCH = 65536


def _ijson() -> Any:
    try:
        import ijson
    except ImportError:
        raise DatasetError("reading COCO JSON in bounded memory needs the 'ijson' package: "
                           "pip install ijson") from None
    return ijson


class CocoJsonReader(SourceReader):
    """Streams ``key`` (a COCO-format JSON in ``store``); images under ``images`` (default:
    the ``images/`` folder beside the JSON)."""

    format_name = "coco"

    def __init__(self, store: Store, key: str, *, images: str | None = None,
                 skip_invalid: bool = False) -> None:
        super().__init__(store, images=images, skip_invalid=skip_invalid)
        self.key = key
        self.where = store.uri(key)
        cats = list(self._items("categories.item"))
        sorted_cats = _parse_categories(self.where, {"categories": cats})  # type: ignore[arg-type]
        self.cat_ids = [c["id"] for c in sorted_cats]
        self._classes = [SourceClass(str(c["id"]), c["name"]) for c in sorted_cats]

    def default_image_root(self) -> str:
        return self.images_beside(self.key)

    def _items(self, prefix: str) -> Iterator[Any]:
        ijson = _ijson()
        try:
            with self.store.open_read(self.key) as stream:
                yield from ijson.items(stream, prefix, use_float=True)
        except ijson.JSONError as exc:
            raise DatasetError(f"{self.where}: cannot parse JSON ({prefix}): {exc}") from None

    def _images(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(ids int64, [width, height] int32, file names) of the valid image entries."""
        issues = self.issues(self.where)
        ids: list[int] = []
        sizes: list[tuple[int, int]] = []
        names: list[str] = []
        seen: set[int] = set()
        for entry in self._items("images.item"):
            problem = _check_image(entry, seen)
            if problem is not None:
                issues.report(*problem)
                continue
            seen.add(entry["id"])
            ids.append(entry["id"])
            sizes.append((entry["width"], entry["height"]))
            names.append(entry["file_name"])
        if not ids:
            raise DatasetError(f"{self.where}: field 'images': dataset has no valid images")
        return np.asarray(ids, np.int64), np.asarray(sizes, np.float64).reshape(-1, 2), names

    def _annotations(self, ids: np.ndarray, sizes: np.ndarray) -> dict[str, np.ndarray]:
        """Valid annotations as columns: image row, label, normalised xyxy box, flags."""
        issues = self.issues(self.where)
        row_of = {int(iid): i for i, iid in enumerate(ids)}
        cat_label = {cid: i for i, cid in enumerate(self.cat_ids)}
        known_images, known_cats = row_of.keys(), cat_label.keys()
        buf = ColumnBuffer(row=(np.int64, ()), label=(np.int32, ()), box=(np.float32, (4,)),
                           flags=(np.uint8, ()), area=(np.float32, ()))
        rows: list[int] = []
        labels: list[int] = []
        boxes: list[list[float]] = []
        flags: list[int] = []
        areas: list[float] = []

        def flush() -> None:
            buf.append(row=rows, label=labels, box=boxes, flags=flags, area=areas)
            for column in (rows, labels, boxes, flags, areas):
                column.clear()

        for ann in self._items("annotations.item"):
            problem = _check_annotation(ann, known_images, known_cats)
            if problem is not None:
                issues.report(*problem)
                continue
            rows.append(row_of[ann["image_id"]])
            labels.append(cat_label[ann["category_id"]])
            boxes.append(ann["bbox"])
            flags.append(FLAG_CROWD if ann.get("iscrowd", 0) else 0)
            area = ann.get("area")
            areas.append(float(area) if _is_number(area) and area >= 0 else np.nan)
            if len(rows) >= _BATCH:
                flush()
        flush()
        cols = buf.finish()
        wh = sizes[cols["row"]]
        xywh = cols["box"].astype(np.float64)
        x0, y0 = xywh[:, 0] / wh[:, 0], xywh[:, 1] / wh[:, 1]
        x1, y1 = x0 + xywh[:, 2] / wh[:, 0], y0 + xywh[:, 3] / wh[:, 1]
        cols["box"] = np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)
        return cols

    def __iter__(self) -> Iterator[ImageRecord]:
        ids, sizes, names = self._images()
        cols = self._annotations(ids, sizes)
        groups = group_rows(cols["row"])
        pending = next(groups, None)
        empty = np.zeros(0, np.int64)
        for i, iid in enumerate(ids):
            take = empty
            if pending is not None and pending[0] == i:
                take = pending[1]
                pending = next(groups, None)
            yield ImageRecord(
                image_id=str(int(iid)), file_name=names[i],
                width=int(sizes[i, 0]), height=int(sizes[i, 1]),
                boxes=cols["box"][take], labels=cols["label"][take], flags=cols["flags"][take],
                areas=cols["area"][take])


def _check_image(entry: object, seen: set[int]) -> tuple[str, str] | None:
    """(kind, message) for a bad ``images`` entry; sizes are required to normalise boxes."""
    return check_image_fields(entry, seen, require_size=True)
