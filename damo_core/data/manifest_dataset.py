"""One split of a unified manifest as a random-access detection dataset: the training format.

Why one class: training, validation, evaluation, INT8 calibration and prediction on a dataset
then read the same rows, whatever the data came as (COCO or Objects365 JSON, OpenImages CSV,
YOLO txt, VOC, an ultralytics ``data.yaml``, the synthetic generator); each of those is only a
reader that produces manifests (:mod:`damo_core.data.unify`, :mod:`damo_core.data.resolve`).

Rows are held as a few numpy/Arrow columns (paths, sizes, CSR box offsets), never a Python
object per image, so a split of millions of images costs tens of bytes per box. Images are
read where the manifest says they lie: a local path directly, an ``s3://`` URI through the
bounded on-disk cache (:mod:`damo_core.data.blob_cache`), which DataLoader workers and ranks
share. The pycocotools ground truth that evaluation scores against is built from the same rows
(:attr:`ManifestDetection.coco`), with COCO's own areas where the source gave them.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pycocotools.coco import COCO

from damo_core.data.coco import Sample
from damo_core.data.errors import DatasetError
from damo_core.data.formats import SPLITS
from damo_core.data.formats.base import FLAG_CROWD
from damo_core.data.images import ImageDecodeError, load_rgb_array
from damo_core.errors import InputNotFoundError
from damo_core.storage import is_remote, open_store

__all__ = ["ManifestDetection"]

_COLUMNS = ["source", "image_id", "split", "path", "width", "height", "boxes", "classes",
            "box_flags", "areas"]


def _flat(column: pa.ChunkedArray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """(CSR offsets int64 [N+1], flattened values) of a list column."""
    lists = column.combine_chunks()
    offsets = lists.offsets.to_numpy().astype(np.int64)
    values = lists.flatten()
    if pa.types.is_fixed_size_list(values.type):
        values = values.flatten()
    return offsets - offsets[0], values.to_numpy(zero_copy_only=False).astype(dtype)


class ManifestDetection:
    """Split ``split`` (``train``/``val``) of the manifest directory ``manifest``.

    Items are :class:`~damo_core.data.coco.Sample` (boxes xyxy in pixels, crowd boxes left
    out, labels 0..K-1) with ``image_id`` the image's id in :attr:`coco` (see
    :meth:`_image_ids`). ``weights`` are the unify step's sampling weights of these
    rows, and ``sampling`` says whether training should draw by them.
    """

    def __init__(self, manifest: str | Path, split: str) -> None:
        from damo_core.data.unify import iter_manifest, read_sampling_weights, read_summary

        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        self.manifest = str(manifest)
        self.split = split
        store = open_store(self.manifest)
        self.ann_file = store.uri()  # where the annotations came from, for messages
        summary = read_summary(self.manifest)
        space = json.loads(store.read_text("label_space.json"))
        self.class_names: tuple[str, ...] = tuple(c["name"] for c in space["classes"])
        self.cat_ids = _category_ids(summary, space)
        self._coco_source = _single_coco_source(summary) is not None
        self.cat_id_to_label = {cid: i for i, cid in enumerate(self.cat_ids)}
        table = pa.Table.from_batches(list(iter_manifest(self.manifest, _COLUMNS)))
        keep = pc.equal(table.column("split"), split)
        weights = read_sampling_weights(self.manifest)
        if len(weights) != table.num_rows:
            raise DatasetError(f"{store.uri('sampling_weights.parquet')}: {len(weights)} rows, "
                               f"the manifest has {table.num_rows}")
        self.weights = weights[keep.to_numpy(zero_copy_only=False)]
        self.sampling = bool(summary.get("sampling", {}).get("enabled", False))
        table = table.filter(keep)
        if table.num_rows == 0:
            raise DatasetError(f"{self.ann_file}: split '{split}' has no images "
                               f"(summary.json splits: {summary.get('splits')})")
        self.paths = table.column("path").combine_chunks()
        self.sources = table.column("source").combine_chunks()
        self.source_image_ids = table.column("image_id").combine_chunks()
        self._ids = self._image_ids()
        self.widths = table.column("width").to_numpy(zero_copy_only=False)
        self.heights = table.column("height").to_numpy(zero_copy_only=False)
        self.offsets, boxes = _flat(table.column("boxes"), np.float32)
        self.boxes = boxes.reshape(-1, 4)
        _, self.labels = _flat(table.column("classes"), np.int64)
        _, self.box_flags = _flat(table.column("box_flags"), np.uint8)
        _, self.areas = _flat(table.column("areas"), np.float32)
        self.crowd = (self.box_flags & FLAG_CROWD) != 0
        self.remote = bool(pc.any(pc.starts_with(self.paths, "s3://")).as_py())
        bad = (self.labels < 0) | (self.labels >= len(self.class_names))
        if bad.any():
            raise DatasetError(f"{self.ann_file}: field 'classes' holds {self.labels[bad][0]}, "
                               f"outside the label space's {len(self.class_names)} classes")

    # -- the dataset protocol the loader and the evaluator use ---------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_ids(self) -> list[int]:
        return self._ids.tolist()

    def _image_ids(self) -> np.ndarray:
        """Evaluation ids: a single COCO-format source's own image ids (so a results file
        matches the source's annotation file), else the 1-based position in the split."""
        if self._coco_source:
            raw = self.source_image_ids.to_pylist()
            if all(r.isdigit() for r in raw) and len(set(raw)) == len(raw):
                return np.asarray([int(r) for r in raw], np.int64)
        return np.arange(1, len(self) + 1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, index: int) -> str:
        return self.paths[index].as_py()

    def has_targets(self, index: int) -> bool:
        """Whether the image has a non-crowd box (mixup needs a partner with targets)."""
        lo, hi = self.offsets[index], self.offsets[index + 1]
        return bool((~self.crowd[lo:hi]).any())

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of size {len(self)}")
        index %= len(self)
        image = self._decode(index)
        h, w = image.shape[:2]
        lo, hi = self.offsets[index], self.offsets[index + 1]
        take = ~self.crowd[lo:hi]
        boxes = self.boxes[lo:hi][take] * np.array([w, h, w, h], np.float32)
        return Sample(image=image, boxes=boxes.astype(np.float32),
                      labels=self.labels[lo:hi][take].copy(), image_id=int(self._ids[index]),
                      file_name=self.path(index))

    def prefetch(self, indices: Iterable[int]) -> None:
        """Start fetching the S3 images of ``indices`` into the cache (local ones need not)."""
        if not self.remote:
            return
        uris = [self.path(i) for i in indices]
        remote = [u for u in uris if is_remote(u)]
        if remote:
            _cache().prefetch(remote)

    def _where(self, index: int) -> str:
        return (f"{self.ann_file}: {self.split} row {index} ({self.sources[index].as_py()}:"
                f"{self.source_image_ids[index].as_py()}, path {self.path(index)})")

    def _decode(self, index: int) -> np.ndarray:
        path = self.path(index)
        try:
            data: str | bytes = _cache().read_bytes(path) if is_remote(path) else path
            image = load_rgb_array(data, name=path)
        except (ImageDecodeError, InputNotFoundError, FileNotFoundError) as exc:
            raise DatasetError(f"{self._where(index)}: cannot read image: {exc}") from None
        h, w = image.shape[:2]
        for field, stated, actual in (("width", self.widths[index], w),
                                      ("height", self.heights[index], h)):
            if stated is not None and not np.isnan(stated) and int(stated) != actual:
                raise DatasetError(f"{self._where(index)}: field '{field}' says {int(stated)} "
                                   f"but the file has {actual}")
        return image

    def draw_summary(self, order: Iterable[int]) -> dict[str, Any]:
        """Per-source shares and the rare-class multiple of the draws ``order``."""
        from damo_core.data.sampling import draw_summary

        encoded = self.sources.dictionary_encode()
        return draw_summary(np.fromiter(order, np.int64), encoded.indices.to_numpy(),
                            encoded.dictionary.to_pylist(), self.offsets, self.labels,
                            self.class_names)

    # -- ground truth for COCO evaluation ------------------------------------------------------
    def image_size(self, index: int) -> tuple[int, int]:
        """(width, height): the manifest's, or the file header's where the source gave none."""
        w, h = self.widths[index], self.heights[index]
        if w is not None and h is not None and not (np.isnan(w) or np.isnan(h)):
            return int(w), int(h)
        from damo_core.data.images import open_rgb

        path = self.path(index)
        data = _cache().read_bytes(path) if is_remote(path) else path
        with open_rgb(data, name=path) as im:
            return im.size

    @cached_property
    def coco(self) -> COCO:
        """pycocotools ground truth of this split (ids as in :attr:`image_ids`)."""
        images, anns = [], []
        for i in range(len(self)):
            w, h = self.image_size(i)
            iid = int(self._ids[i])
            images.append({"id": iid, "file_name": self.path(i), "width": w, "height": h})
            lo, hi = self.offsets[i], self.offsets[i + 1]
            pix = self.boxes[lo:hi].astype(np.float64) * np.array([w, h, w, h], np.float64)
            for j, box in enumerate(pix, start=lo):
                bw, bh = box[2] - box[0], box[3] - box[1]
                area = float(self.areas[j]) if np.isfinite(self.areas[j]) else bw * bh
                anns.append({"id": len(anns) + 1, "image_id": iid,
                             "category_id": self.cat_ids[int(self.labels[j])],
                             "bbox": [float(box[0]), float(box[1]), bw, bh], "area": area,
                             "iscrowd": int(self.crowd[j])})
        cats = [{"id": cid, "name": n} for cid, n in zip(self.cat_ids, self.class_names,
                                                         strict=True)]
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns, "categories": cats}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco


def _category_ids(summary: dict[str, Any], space: dict[str, Any]) -> tuple[int, ...]:
    """COCO category ids for evaluation and results files: a manifest of one COCO-format
    source keeps that source's ids (so a results file can go to the source's own tools);
    anything else numbers the unified classes from 1."""
    source = _single_coco_source(summary)
    if source is not None:
        keys = [c["members"].get(source, ()) for c in space["classes"]]
        if all(len(k) == 1 and k[0].isdigit() for k in keys):
            ids = tuple(int(k[0]) for k in keys)
            if len(set(ids)) == len(ids):
                return ids
    return tuple(range(1, len(space["classes"]) + 1))


def _single_coco_source(summary: dict[str, Any]) -> str | None:
    """The name of the manifest's only source when that is COCO-format JSON."""
    sources = summary.get("sources", {})
    if len(sources) == 1 and next(iter(sources.values())).get("format") in ("coco", "o365"):
        return next(iter(sources))
    return None


def _cache() -> Any:
    """The process's blob cache (one per cache setting; it repairs itself in forked workers)."""
    from damo_core.data.blob_cache import default_cache

    return default_cache()
