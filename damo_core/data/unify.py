"""Unify several detection sources into sharded Parquet manifests over one label space.

Output (a local directory or ``s3://bucket/prefix``)::

    manifest/<source>-00000.parquet   one row per image: source, image_id, split, path,
                                      width, height, boxes (normalised xyxy), classes
                                      (unified ids), box_flags, areas (pixels, NaN: the
                                      box's own), flags
    label_space.json                  the unified classes and their source members
    class_counts.csv                  per class: images and boxes, total and per source
    sampling_weights.parquet          per image (manifest order): repeat factor, weight
    source_share.png, class_frequency.png   before/after the sampling weights (log scale)
    summary.json                      schema version, shards, per-source counts, every
                                      skip/clip/drop count, images per split

Why these choices: Parquet shards let training and statistics read only the columns they
need; per-source shards keep a source's label lookup vectorised. Everything is staged under
a temporary name and only then renamed (local) or uploaded (S3), ``summary.json`` last: it is
the commit marker that readers open first, so an interrupted run leaves no half manifest.
The split is the source's own (``split=`` in its spec, or the reader's, as for an ultralytics
``data.yaml``), else a stable hash of ``(seed, source, image_id)`` against ``val_fraction``, so
re-unifying gives the same split. ``path`` is where the image lies (a local path or an
``s3://`` URI): images are never copied. Boxes outside the image are clipped and counted;
those left without area are dropped and counted; boxes of classes the label space does not
map are dropped and counted per source.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from damo_core.data.errors import DatasetError
from damo_core.data.formats import SourceReader, SourceSpec, open_source, parse_source
from damo_core.data.formats.base import ImageRecord
from damo_core.data.labelspace import LabelSpace, load_preset
from damo_core.data.scratch import scratch_dir
from damo_core.storage import Store, is_remote, open_store
from damo_core.storage.local import LocalStore

__all__ = ["FLAG_BOXES_CLIPPED", "FLAG_BOXES_DROPPED", "FLAG_UNMAPPED_DROPPED",
           "MANIFEST_SCHEMA", "MANIFEST_VERSION", "UnifyResult", "assign_split",
           "iter_manifest", "load_label_space", "read_sampling_weights", "read_summary", "unify"]

FLAG_BOXES_CLIPPED = 1  # some box reached outside the image and was clipped
FLAG_BOXES_DROPPED = 2  # some box had no area left inside the image (or was not finite)
FLAG_UNMAPPED_DROPPED = 4  # some box's class is not in the label space
SUMMARY = "summary.json"
SCRATCH_PREFIX = ".unify-"
MANIFEST_DIR = "manifest"
DEFAULT_SHARD_IMAGES = 200_000
DEFAULT_VAL_FRACTION = 0.05
# Bumped whenever a column is added, removed or changes meaning; readers refuse any other.
MANIFEST_VERSION = 2

MANIFEST_SCHEMA = pa.schema([
    ("source", pa.string()), ("image_id", pa.string()), ("split", pa.string()),
    ("path", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("boxes", pa.list_(pa.list_(pa.float32(), 4))), ("classes", pa.list_(pa.int32())),
    ("box_flags", pa.list_(pa.uint8())), ("areas", pa.list_(pa.float32())),
    ("flags", pa.uint8()),
])


def assign_split(source: str, image_id: str, val_fraction: float, seed: int) -> str:
    """``"val"`` for a stable ``val_fraction`` share of images, else ``"train"``."""
    key = f"{seed}/{source}/{image_id}".encode()
    return "val" if zlib.crc32(key) % 10_000 < val_fraction * 10_000 else "train"


def load_label_space(ref: str | LabelSpace) -> LabelSpace:
    """A :class:`LabelSpace` from an object, ``preset:NAME`` / a preset name, or a CSV URI."""
    if isinstance(ref, LabelSpace):
        return ref
    name = ref.removeprefix("preset:")
    if ref.startswith("preset:") or (not ref.endswith(".csv") and "/" not in ref):
        return load_preset(name)
    store_uri, _, key = ref.rpartition("/")
    store = open_store(store_uri or ".")
    return LabelSpace.from_csv(store.read_text(key), store.uri(key))


@dataclass
class _Counts:
    """What one source contributed, and what was clipped, dropped or skipped."""

    images: int = 0
    boxes: int = 0
    clipped: int = 0
    dropped_outside: int = 0
    dropped_unmapped: int = 0
    unmapped_classes: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


class _ShardWriter:
    """Buffers one source's images and writes them as Parquet shards into ``stage``."""

    def __init__(self, stage: Path, reader: SourceReader, spec: SourceSpec, lut: np.ndarray,
                 num_classes: int, shard_images: int, val_fraction: float, seed: int) -> None:
        self.stage, self.reader, self.source, self.lut = stage, reader, spec.name, lut
        self.split, self.val_fraction, self.seed = spec.split or "", val_fraction, seed
        self.split_counts = {"train": 0, "val": 0}
        self.shard_images = shard_images
        self.counts = _Counts()
        self.box_counts = np.zeros(num_classes, np.int64)
        self.image_counts = np.zeros(num_classes, np.int64)
        self.unmapped = np.zeros(len(lut), np.int64)
        self.shards: list[str] = []
        self._records: list[ImageRecord] = []

    def add(self, record: ImageRecord) -> None:
        self._records.append(record)
        if len(self._records) >= self.shard_images:
            self.flush()

    def flush(self) -> None:
        if not self._records:
            return
        records, self._records = self._records, []
        table = self._table(records)
        key = f"{MANIFEST_DIR}/{self.source}-{len(self.shards):05d}.parquet"
        path = self.stage / key
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
        self.shards.append(key)

    def _table(self, records: Sequence[ImageRecord]) -> pa.Table:
        n = len(records)
        counts = np.fromiter((len(r.labels) for r in records), np.int64, n)
        owner = np.repeat(np.arange(n), counts)
        boxes = (np.concatenate([r.boxes for r in records]).astype(np.float32) if counts.sum()
                 else np.zeros((0, 4), np.float32))
        labels = np.concatenate([r.labels for r in records]).astype(np.int64)
        bflags = np.concatenate([r.flags for r in records]).astype(np.uint8)
        uid = self.lut[labels] if len(labels) else np.zeros(0, np.int32)
        finite = np.isfinite(boxes).all(axis=1)
        outside = finite & ((boxes < 0) | (boxes > 1)).any(axis=1)
        clipped = np.clip(np.nan_to_num(boxes), 0.0, 1.0)
        has_area = finite & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        mapped = uid >= 0
        keep = mapped & has_area
        self._count(labels, uid, keep, mapped, has_area, outside, owner, n)
        image_flags = np.zeros(n, np.uint8)
        for mask, bit in ((outside & keep, FLAG_BOXES_CLIPPED),
                          (mapped & ~has_area, FLAG_BOXES_DROPPED),
                          (~mapped, FLAG_UNMAPPED_DROPPED)):
            image_flags[np.unique(owner[mask])] |= bit
        offsets = np.r_[0, np.cumsum(np.bincount(owner[keep], minlength=n))].astype(np.int32)
        flat_boxes = pa.FixedSizeListArray.from_arrays(pa.array(clipped[keep].ravel()), 4)
        widths = [r.width for r in records]
        heights = [r.height for r in records]
        areas = np.concatenate([r.areas if r.areas is not None
                                else np.full(len(r.labels), np.nan) for r in records])
        splits = [self._split(r) for r in records]
        columns = {
            "source": pa.array([self.source] * n, pa.string()),
            "image_id": pa.array([r.image_id for r in records], pa.string()),
            "split": pa.array(splits, pa.string()),
            "path": pa.array([self.reader.image_uri(r.file_name) for r in records], pa.string()),
            "width": pa.array(widths, pa.int32()), "height": pa.array(heights, pa.int32()),
            "boxes": pa.ListArray.from_arrays(pa.array(offsets), flat_boxes),
            "classes": pa.ListArray.from_arrays(pa.array(offsets),
                                                pa.array(uid[keep].astype(np.int32))),
            "box_flags": pa.ListArray.from_arrays(pa.array(offsets), pa.array(bflags[keep])),
            "areas": pa.ListArray.from_arrays(
                pa.array(offsets), pa.array(areas[keep].astype(np.float32))),
            "flags": pa.array(image_flags, pa.uint8()),
        }
        return pa.table(columns, schema=MANIFEST_SCHEMA)

    def _split(self, record: ImageRecord) -> str:
        split = (record.split or self.split
                 or assign_split(self.source, record.image_id, self.val_fraction, self.seed))
        self.split_counts[split] = self.split_counts.get(split, 0) + 1
        return split

    def _count(self, labels: np.ndarray, uid: np.ndarray, keep: np.ndarray, mapped: np.ndarray,
               has_area: np.ndarray, outside: np.ndarray, owner: np.ndarray, n: int) -> None:
        c = self.counts
        c.images += n
        c.boxes += int(keep.sum())
        c.clipped += int((outside & keep).sum())
        c.dropped_outside += int((mapped & ~has_area).sum())
        c.dropped_unmapped += int((~mapped).sum())
        self.unmapped += np.bincount(labels[~mapped], minlength=len(self.lut))
        k = len(self.box_counts)
        self.box_counts += np.bincount(uid[keep], minlength=k)
        pairs = np.unique(owner[keep].astype(np.int64) * k + uid[keep])
        self.image_counts += np.bincount(pairs % k, minlength=k)

    def finish(self) -> _Counts:
        self.flush()
        classes = self.reader.classes
        self.counts.unmapped_classes = {f"{classes[i].key} ({classes[i].name})": int(v)
                                        for i, v in enumerate(self.unmapped) if v}
        self.counts.skipped = dict(self.reader.skipped)
        return self.counts


@dataclass
class UnifyResult:
    """Where the manifests went and what they hold (``summary.json`` in object form)."""

    out: str
    num_classes: int
    num_images: int
    num_boxes: int
    summary: dict[str, Any]

    def report_lines(self) -> list[str]:
        """One line per source with every clip/drop/skip count (for the CLI and logs)."""
        lines = [f"unified {self.num_images} images, {self.num_boxes} boxes, "
                 f"{self.num_classes} classes -> {self.out}"]
        for name, st in self.summary["sources"].items():
            lines.append(f"  {name}: {st['images']} images, {st['boxes']} boxes; clipped "
                         f"{st['clipped']}, dropped outside {st['dropped_outside']}, dropped "
                         f"unmapped {st['dropped_unmapped']}, skipped {st['skipped'] or 0}")
        return lines


def unify(sources: Sequence[SourceSpec | str], label_space: str | LabelSpace, out: str | Path,
          *, shard_images: int = DEFAULT_SHARD_IMAGES, skip_invalid: bool = False,
          alpha: float = 0.5, rfs_threshold: float = 0.001,
          val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0,
          sampling: bool = True, progress: bool = True,
          readers: Sequence[SourceReader] | None = None) -> UnifyResult:
    """Read every source, map it onto ``label_space`` and write the manifests to ``out``.

    ``alpha`` and ``rfs_threshold`` set the sampling weights written beside the manifests
    (see :mod:`damo_core.data.sampling`; ``rfs_threshold=0`` turns the class-aware part off);
    ``sampling=False`` records that training should take every train image once per epoch
    instead of drawing by them (the weights and plots are still written). ``val_fraction``
    and ``seed`` split the images of sources that bring no split of their own. ``readers``,
    one per source, replaces opening them from the specs (a converter's own reader).
    """
    if shard_images <= 0:
        raise DatasetError(f"shard_images must be positive, got {shard_images}")
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    specs = [parse_source(s) if isinstance(s, str) else s for s in sources]
    names = [s.name for s in specs]
    if not specs or len(set(names)) != len(names):
        raise DatasetError(f"sources {names}: need at least one, with distinct names")
    space = load_label_space(label_space)
    if readers is None:
        readers = [open_source(s, skip_invalid=skip_invalid) for s in specs]
    elif len(readers) != len(specs):
        raise DatasetError(f"{len(readers)} readers for {len(specs)} sources")
    luts = [space.resolve(s.name, r.classes) for s, r in zip(specs, readers, strict=True)]
    out_store = open_store(out)
    with _staging(out) as stage_dir:
        stage = Path(stage_dir)
        writers = []
        for spec, reader, lut in zip(specs, readers, luts, strict=True):
            writer = _ShardWriter(stage, reader, spec, lut, len(space.classes),
                                  shard_images, val_fraction, seed)
            for record in tqdm(reader, desc=f"unify {spec.name}", unit="img",
                               disable=not progress):
                writer.add(record)
            writer.finish()
            writers.append(writer)
        summary = _write_tables(stage, space, specs, writers)
        summary["sampling"] = {"enabled": sampling, **_write_sampling(
            stage, space, summary["shards"], alpha, rfs_threshold)}
        (stage / SUMMARY).write_text(json.dumps(summary, indent=1))
        _publish(stage, out_store, [*summary["shards"], *_SIDE_FILES, SUMMARY])
    return UnifyResult(out_store.uri(), len(space.classes), summary["num_images"],
                       summary["num_boxes"], summary)


def _write_tables(stage: Path, space: LabelSpace, specs: Sequence[SourceSpec],
                  writers: Sequence[_ShardWriter]) -> dict[str, Any]:
    (stage / "label_space.json").write_text(json.dumps(space.to_json(), indent=1))
    boxes = sum(w.box_counts for w in writers)
    images = sum(w.image_counts for w in writers)
    text = io.StringIO()
    table = csv.writer(text, lineterminator="\n")
    table.writerow(["id", "name", "images", "boxes", *(f"boxes_{s.name}" for s in specs)])
    for i, name in enumerate(space.names):
        table.writerow([i, name, int(images[i]), int(boxes[i]),
                        *(int(w.box_counts[i]) for w in writers)])
    (stage / "class_counts.csv").write_text(text.getvalue())
    summary = {
        "schema_version": MANIFEST_VERSION,
        "num_classes": len(space.classes),
        "num_images": sum(w.counts.images for w in writers),
        "num_boxes": sum(w.counts.boxes for w in writers),
        "shards": [k for w in writers for k in w.shards],
        "sources": {s.name: {"format": s.format, "uri": s.uri, **vars(w.counts),
                             "splits": w.split_counts}
                    for s, w in zip(specs, writers, strict=True)},
        "splits": {k: sum(w.split_counts.get(k, 0) for w in writers) for k in ("train", "val")},
    }
    return summary


_SIDE_FILES = ("label_space.json", "class_counts.csv", "sampling_weights.parquet",
               "source_share.png", "class_frequency.png")


def _write_sampling(stage: Path, space: LabelSpace, shards: Sequence[str], alpha: float,
                    threshold: float) -> dict[str, Any]:
    """Per-image sampling weights and the before/after plots, from the staged shards."""
    from damo_core.data.plots import (
        expected_class_boxes,
        plot_class_frequency,
        plot_source_share,
    )
    from damo_core.data.sampling import manifest_csr, plan_sampling

    def batches() -> Iterator[pa.RecordBatch]:
        for key in shards:
            yield from pq.ParquetFile(stage / key).iter_batches(columns=["source", "classes"])

    names, source_ids, offsets, classes = manifest_csr(batches())
    k = len(space.classes)
    plan = plan_sampling(names, source_ids, offsets, classes, k, alpha=alpha,
                         threshold=threshold)
    pq.write_table(pa.table({"source": pa.array(np.asarray(names)[source_ids]),
                             "repeat_factor": plan.factors, "weight": plan.weights}),
                   stage / "sampling_weights.parquet", compression="zstd")
    plot_source_share(plan, stage / "source_share.png")
    uniform, weighted = expected_class_boxes(plan, offsets, classes, k)
    plot_class_frequency(uniform, weighted, space.names, stage / "class_frequency.png")
    return {"alpha": alpha, "rfs_threshold": threshold,
            "source_shares": dict(zip(names, plan.shares, strict=True))}


def _staging(out: str | Path) -> Any:
    """A temporary directory for the whole output: beside ``out`` when local (so the final
    renames stay on one filesystem), in the system temp dir for S3; removed on return or
    error, and one left by a killed run is removed by the next run (see
    :mod:`damo_core.data.scratch`)."""
    parent = None if is_remote(out) else Path(out)
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return scratch_dir(parent, SCRATCH_PREFIX)


def _publish(stage: str | Path, store: Store, keys: Sequence[str]) -> None:
    """Move staged files into ``store`` in order (summary last); local moves are renames.

    Shards of an earlier run that the new manifest does not list (it had more, smaller
    shards, or other sources) are deleted once the old commit marker is gone, so no reader
    can be referring to them; a run killed before that deletes them next time.
    """
    stage = Path(stage)
    root = store.root if isinstance(store, LocalStore) else None
    store.delete(SUMMARY)  # the old commit marker goes first: no mix of old and new shards
    new = set(keys)
    for key in store.list(MANIFEST_DIR):
        if (key not in new and key.startswith(f"{MANIFEST_DIR}/")
                and key.endswith(".parquet")):
            store.delete(key)
    for key in keys:
        if root is not None:
            target = Path(root) / key
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(stage / key, target)  # same filesystem: an atomic rename
        else:
            store.put_file(stage / key, key)


def read_summary(out: str | Path) -> dict[str, Any]:
    """The committed ``summary.json`` of a manifest directory (error if absent)."""
    store = open_store(out)
    if not store.exists(SUMMARY):
        raise DatasetError(f"{store.uri(SUMMARY)}: no unified manifest here (summary.json "
                           "missing; the run did not finish?)")
    try:
        summary = json.loads(store.read_text(SUMMARY))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{store.uri(SUMMARY)}: not valid JSON: {exc}") from None
    version = summary.get("schema_version", 1) if isinstance(summary, dict) else None
    if version != MANIFEST_VERSION:
        raise DatasetError(f"{store.uri(SUMMARY)}: field 'schema_version' is {version!r}; this "
                           f"damo reads manifest schema {MANIFEST_VERSION} only (re-run "
                           "`damo unify` on the sources to rewrite it)")
    return summary


def iter_manifest(out: str | Path, columns: Sequence[str] | None = None
                  ) -> Iterator[pa.RecordBatch]:
    """Record batches of every committed shard, in ``summary.json`` order."""
    store = open_store(out)
    for key in read_summary(out)["shards"]:
        yield from _parquet(store, key).iter_batches(columns=list(columns) if columns else None)


def _parquet(store: Store, key: str) -> pq.ParquetFile:
    """A Parquet file from a store (read whole: Parquet needs seeks, S3 streams do not)."""
    if isinstance(store, LocalStore):
        return pq.ParquetFile(store.root / key)
    return pq.ParquetFile(pa.BufferReader(store.read_bytes(key)))


def read_sampling_weights(out: str | Path) -> np.ndarray:
    """Per-image sampling weights of a manifest directory, in manifest order."""
    table = _parquet(open_store(out), "sampling_weights.parquet").read(columns=["weight"])
    return table.column("weight").to_numpy()
