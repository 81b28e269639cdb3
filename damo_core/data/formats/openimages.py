"""OpenImages V6/V7 boxes: the box CSV (one row per box, normalised coords, MIDs) and the
class-descriptions CSV (MID -> display name).

Why pyarrow's streaming CSV reader: the V6 train box file has ~15 M rows. Batches are parsed
in C++ and reduced at once to compact columns (a dictionary-encoded image id, an int32 label,
four float32 coords, one flag byte), so no Python object is made per row; images are then
grouped with one argsort over the dictionary indices.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from damo_core.data.errors import DatasetError
from damo_core.data.formats.base import (
    FLAG_CROWD,
    FLAG_DIFFICULT,
    FLAG_OCCLUDED,
    FLAG_TRUNCATED,
    ColumnBuffer,
    ImageRecord,
    SourceClass,
    SourceReader,
    group_rows,
)
from damo_core.storage import Store

__all__ = ["BOX_COLUMNS", "OpenImagesReader", "read_class_descriptions"]

BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
_FLAG_COLUMNS = {"IsGroupOf": FLAG_CROWD, "IsOccluded": FLAG_OCCLUDED,
                 "IsTruncated": FLAG_TRUNCATED, "IsDepiction": FLAG_DIFFICULT}
_BLOCK_BYTES = 8 << 20


def read_class_descriptions(store: Store, key: str) -> list[SourceClass]:
    """MID,DisplayName rows (with or without the V7 ``LabelName,DisplayName`` header)."""
    where = store.uri(key)
    try:
        text = store.read_text(key)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{where}: class descriptions are not UTF-8: {exc}") from None
    classes: list[SourceClass] = []
    seen: set[str] = set()
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or (lineno == 1 and row[0] == "LabelName"):
            continue
        if len(row) < 2 or not row[0].strip():
            raise DatasetError(f"{where}: line {lineno}: expected 'MID,DisplayName', got {row!r}")
        mid = row[0].strip()
        if mid in seen:
            raise DatasetError(f"{where}: line {lineno}: MID {mid!r} is listed twice")
        seen.add(mid)
        classes.append(SourceClass(mid, row[1].strip()))
    if not classes:
        raise DatasetError(f"{where}: no classes found")
    return classes


class OpenImagesReader(SourceReader):
    """Box CSV ``key`` in ``store`` with its classes (from :func:`read_class_descriptions`);
    images are ``<images>/<ImageID>.jpg`` (default: ``images/`` beside the CSV)."""

    format_name = "oi"

    def __init__(self, store: Store, key: str, *, classes: list[SourceClass],
                 images: str | None = None, skip_invalid: bool = False) -> None:
        super().__init__(store, images=images, skip_invalid=skip_invalid)
        self.key = key
        self.where = store.uri(key)
        self._classes = list(classes)

    def default_image_root(self) -> str:
        return self.images_beside(self.key)

    def _columns(self) -> tuple[pa.Array, dict[str, np.ndarray]]:
        """(unique image ids, columns with ``image`` = index into them) for the whole CSV."""
        mids = pa.array([c.key for c in self._classes], pa.string())
        ids: list[pa.Array] = []
        buf = ColumnBuffer(label=(np.int32, ()), box=(np.float32, (4,)), flags=(np.uint8, ()))
        issues = self.issues(self.where)
        with self.store.open_read(self.key) as stream:
            reader = self._open_csv(stream)
            flag_columns = [c for c in _FLAG_COLUMNS if c in reader.schema.names]
            for batch in _batches(reader, self.where):
                label = pc.index_in(batch.column("LabelName"), value_set=mids)
                unknown = pc.is_null(label)
                n_unknown = pc.sum(unknown).as_py() or 0
                if n_unknown:
                    first = pc.filter(batch.column("LabelName"), unknown)[0].as_py()
                    issues.report("unknown_class", f"field 'LabelName' value {first!r} is not "
                                  f"in the class descriptions ({n_unknown} rows in this batch)")
                    self.skipped["unknown_class"] += n_unknown - 1
                    batch = batch.filter(pc.invert(unknown))
                    label = pc.drop_null(label)
                ids.append(batch.column("ImageID"))
                coords = [batch.column(c).to_numpy() for c in ("XMin", "YMin", "XMax", "YMax")]
                flags = np.zeros(batch.num_rows, np.uint8)
                for name in flag_columns:
                    flags |= np.where(batch.column(name).to_numpy(zero_copy_only=False) == 1,
                                      _FLAG_COLUMNS[name], 0).astype(np.uint8)
                buf.append(label=label.to_numpy(), box=np.stack(coords, axis=1), flags=flags)
        encoded = pa.chunked_array(ids, pa.string()).combine_chunks().dictionary_encode()
        cols = buf.finish()
        cols["image"] = encoded.indices.to_numpy()
        return encoded.dictionary, cols

    def _open_csv(self, stream: object) -> pacsv.CSVStreamingReader:
        types = {c: pa.float32() for c in ("XMin", "XMax", "YMin", "YMax")}
        types.update({c: pa.int8() for c in _FLAG_COLUMNS})
        types.update({"ImageID": pa.string(), "LabelName": pa.string()})
        try:
            reader = pacsv.open_csv(
                stream, read_options=pacsv.ReadOptions(block_size=_BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(column_types=types))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DatasetError(f"{self.where}: cannot read box CSV: {exc}") from None
        missing = [c for c in BOX_COLUMNS if c not in reader.schema.names]
        if missing:
            raise DatasetError(f"{self.where}: box CSV is missing column(s) {missing} "
                               f"(header has {reader.schema.names})")
        return reader

    def __iter__(self) -> Iterator[ImageRecord]:
        image_ids, cols = self._columns()
        for image, rows in group_rows(cols["image"]):
            iid = image_ids[image].as_py()
            yield ImageRecord(image_id=iid, file_name=f"{iid}.jpg", width=None, height=None,
                              boxes=cols["box"][rows], labels=cols["label"][rows],
                              flags=cols["flags"][rows])


def _batches(reader: pacsv.CSVStreamingReader, where: str) -> Iterator[pa.RecordBatch]:
    """Record batches; a malformed row names the file instead of a bare Arrow error."""
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise DatasetError(f"{where}: malformed box CSV: {exc}") from None
