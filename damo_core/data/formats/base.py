"""What every annotation reader yields: one :class:`ImageRecord` per image, streamed.

Why one shape for five formats: unification, label-space proposals and tests then never care
where a box came from. Boxes are normalised ``xyxy`` in ``[0, 1]`` (OpenImages and YOLO have
no pixel sizes in their labels; COCO and VOC are divided by the image size), *unclipped*, so
that :mod:`damo_core.data.unify` can clip and count what lay outside the image in one place.
Labels index :attr:`SourceReader.classes` (source ids or MIDs stay in :class:`SourceClass`).

Readers stream: they hold compact numpy/Arrow columns (a few tens of bytes per box), never a
Python object per annotation of the whole file, and yield images one at a time.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from damo_core.data.coco import _Issues
from damo_core.storage import Store

__all__ = ["FLAG_CROWD", "FLAG_DIFFICULT", "FLAG_OCCLUDED", "FLAG_TRUNCATED", "ColumnBuffer",
           "ImageRecord", "SourceClass", "SourceReader", "group_rows"]

# Per-box flags (bits), shared by every format so a manifest can filter without its source.
FLAG_CROWD = 1  # COCO iscrowd / OpenImages IsGroupOf: the box covers a group of objects
FLAG_OCCLUDED = 2
FLAG_TRUNCATED = 4
FLAG_DIFFICULT = 8  # VOC difficult / OpenImages IsDepiction


@dataclass(frozen=True)
class SourceClass:
    """One class as its source knows it: ``key`` is the id (COCO category id, OpenImages MID,
    YOLO index) and ``name`` the display name. Mapping files may cite either."""

    key: str
    name: str


@dataclass
class ImageRecord:
    """One image and its boxes (normalised xyxy float32 ``[N, 4]``, unclipped)."""

    image_id: str
    file_name: str  # relative to the source's image root
    width: int | None
    height: int | None
    boxes: np.ndarray
    labels: np.ndarray  # int32 [N], indices into SourceReader.classes
    flags: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))  # uint8 [N]
    # the source's own split ("train"/"val"), or "" to let unification assign one
    split: str = ""
    # per-box area in pixels where the source states one (COCO's segment area, which its
    # evaluation uses for the small/medium/large ranges); None: the box's own area
    areas: np.ndarray | None = None


class SourceReader(abc.ABC):
    """A dataset in one format on a :class:`~damo_core.storage.Store`.

    ``skip_invalid=False`` raises :class:`~damo_core.data.errors.DatasetError` on the first
    bad entry (naming file, field, value); ``True`` drops it and counts it in ``skipped``.
    """

    format_name: str = ""

    def __init__(self, store: Store, *, images: str | None = None,
                 skip_invalid: bool = False) -> None:
        self.store = store
        self.image_root = images
        self.skipped: dict[str, int] = {}
        self.skip_invalid = skip_invalid

    def issues(self, where: str) -> _Issues:
        """Problem handler for one file (raise, or count in ``skipped``)."""
        return _Issues(where, self.skip_invalid, self.skipped)  # type: ignore[arg-type]

    _classes: list[SourceClass]  # each reader fills it while opening the source

    @property
    def classes(self) -> list[SourceClass]:
        """The source's classes, in label-index order."""
        return self._classes

    @abc.abstractmethod
    def __iter__(self) -> Iterator[ImageRecord]:
        """Images one by one (each image exactly once)."""

    def image_uri(self, file_name: str) -> str:
        """Where the image file lives (a local path or an ``s3://`` URI)."""
        root = self.image_root if self.image_root is not None else self.default_image_root()
        return f"{root.rstrip('/')}/{file_name}"

    def default_image_root(self) -> str:
        return self.store.uri("images")

    def images_beside(self, key: str) -> str:
        """``images/`` next to the annotation file ``key`` (the COCO and OpenImages layouts)."""
        parent = str(PurePosixPath(key).parent)
        return self.store.uri(f"{parent}/images" if parent != "." else "images")


def group_rows(owner: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(owner id, row indices)`` for each distinct value of ``owner``, ascending.

    A stable argsort keeps each group's rows in file order; this is how annotations that a
    file lists in any order become per-image groups without a dict of Python lists.
    """
    if len(owner) == 0:
        return
    order = np.argsort(owner, kind="stable")
    sorted_owner = owner[order]
    starts = np.flatnonzero(np.r_[True, sorted_owner[1:] != sorted_owner[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for s, e in zip(starts, ends, strict=True):
        yield int(sorted_owner[s]), order[s:e]


class ColumnBuffer:
    """Append-only numpy columns grown in chunks (amortised, no per-row Python objects)."""

    def __init__(self, **dtypes: tuple[np.dtype | type, tuple[int, ...]]) -> None:
        self._spec = dtypes
        self._chunks: dict[str, list[np.ndarray]] = {k: [] for k in dtypes}

    def append(self, **columns: np.ndarray) -> None:
        for name, (dtype, shape) in self._spec.items():
            self._chunks[name].append(np.asarray(columns[name], dtype=dtype).reshape(-1, *shape))

    def finish(self) -> dict[str, np.ndarray]:
        """Concatenate and release the chunks."""
        out = {}
        for name, (dtype, shape) in self._spec.items():
            chunks = self._chunks[name]
            out[name] = (np.concatenate(chunks) if chunks
                         else np.zeros((0, *shape), dtype=dtype))
            chunks.clear()
        return out
