"""An ultralytics ``data.yaml`` dataset, read as it is: the file a user already trains with.

Why a reader of its own rather than the ``yolo`` directory reader: ultralytics datasets are
described by the YAML, not by a fixed layout. ``path`` is the root (absolute, or relative to
the YAML's directory; the YAML's directory when absent). ``train`` and ``val`` are each a
directory of images, a list of them, or a ``.txt`` file listing images (a line starting
``./`` is relative to that file's directory, as ultralytics reads it; other relative lines
to ``path``). Entries are relative to ``path``; one starting ``../`` that finds nothing is
retried without it (ultralytics' rule for Roboflow exports). ``test`` is not read. Labels
follow ultralytics' rule: the last ``/images/`` of the image path becomes ``/labels/`` and
the suffix ``.txt``; an image without a label file is a background image (no boxes).

Paths are resolved as keys of one store at the volume root (``/`` or ``s3://bucket``), so
``..`` in ``path`` or entries works on S3 too. Image ids are the image path relative to
``path`` without its suffix; an id may occur once, and an image in both ``train`` and
``val`` is always an error (its validation score would be a training score).
"""

from __future__ import annotations

import io
import os
import posixpath
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from damo_core.data.errors import DatasetError
from damo_core.data.formats.base import ImageRecord, SourceClass, SourceReader
from damo_core.data.formats.yolo import IMAGE_SUFFIXES as YOLO_SUFFIXES
from damo_core.data.formats.yolo import parse_label_text
from damo_core.storage import (
    StorageError,
    StorageNotFoundError,
    Store,
    is_remote,
    open_store,
    split_uri,
)

__all__ = ["IMAGE_SUFFIXES", "UltralyticsReader", "label_key", "read_names"]

# The ultralytics image formats that PIL, hence damo_core.data.images, can decode.
IMAGE_SUFFIXES = (*YOLO_SUFFIXES, ".tif", ".tiff", ".mpo")
SPLIT_FIELDS = ("train", "val")  # each yaml field gives its images that split's name
# Enough for the header of nearly every JPEG/PNG/WebP; the rest is read only when it is not.
_HEADER_BYTES = 1 << 16


class _Entry(NamedTuple):
    """One ``train``/``val`` entry, kept for messages that say where an image was listed."""

    field: str
    text: str
    uri: str


class _Image(NamedTuple):
    key: str  # store key (from the volume root)
    split: int  # index into SPLIT_FIELDS
    entry: int  # index into the reader's entries
    line: int  # line of the list file, 0 for a directory entry


def label_key(image_key: str) -> str:
    """Ultralytics' label path for an image: last ``/images/`` -> ``/labels/``, ``.txt``."""
    path = "/" + image_key
    head, sep, tail = path.rpartition("/images/")
    if sep:
        path = f"{head}/labels/{tail}"
    return path.rsplit(".", 1)[0].lstrip("/") + ".txt"


def read_names(config: dict[str, Any], where: str) -> list[str]:
    """Class names from ``names`` (a list, or a mapping ``{0: person, 1: car}``), checked
    against ``nc`` when present: a silent mismatch would shift every class index."""
    names = config.get("names")
    if names is None:
        raise DatasetError(f"{where}: field 'names' is missing (the class names: a list, or a "
                           "mapping {0: person, 1: car})")
    if isinstance(names, dict):
        index = {_class_index(k, where): v for k, v in names.items()}
        if len(index) != len(names) or sorted(index) != list(range(len(index))):
            raise DatasetError(f"{where}: field 'names' keys must be 0..{len(names) - 1}, got "
                               f"{sorted(names, key=str)}")
        names = [index[i] for i in range(len(index))]
    elif not isinstance(names, list):
        raise DatasetError(f"{where}: field 'names' must be a list or a mapping of class index "
                           f"to name, got {type(names).__name__} {names!r}")
    for i, name in enumerate(names):
        if isinstance(name, bool) or not isinstance(name, str | int) or not str(name).strip():
            raise DatasetError(f"{where}: field 'names' class {i} has bad name {name!r}")
    if not names:
        raise DatasetError(f"{where}: field 'names' is empty")
    nc = config.get("nc")
    if nc is not None and (isinstance(nc, bool) or nc != len(names)):
        raise DatasetError(f"{where}: field 'nc' is {nc!r} but 'names' has {len(names)} classes")
    return [str(n) for n in names]


def _class_index(key: object, where: str) -> int:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    raise DatasetError(f"{where}: field 'names' key {key!r} is not a class index")


def _norm(key: str) -> str:
    return posixpath.normpath("/" + key).lstrip("/")


def _locate(uri: str) -> tuple[str, str]:
    """``(volume, key)``: the volume is ``/`` or ``s3://bucket``; the key is normalised."""
    if is_remote(uri):
        bucket, key = split_uri(uri)
        return f"s3://{bucket}", _norm(key)
    return "/", _norm(os.path.abspath(uri.removeprefix("file://")))


def _resolve(volume: str, base: str, text: str) -> tuple[str, str]:
    """Where ``text`` points: an ``s3://`` URI, an absolute path on ``volume``, or a path
    relative to the key ``base``."""
    if is_remote(text):
        return _locate(text)
    return volume, _norm(text if text.startswith("/") else posixpath.join(base, text))


class UltralyticsReader(SourceReader):
    """The dataset a ``data.yaml`` describes; ``yaml_uri`` is a local path or ``s3://`` URI.

    ``missing_label_files`` counts (per iteration) images without a label file: ultralytics
    trains on them as background, so they are read as images with no boxes, not skipped.
    """

    format_name = "ultralytics"

    def __init__(self, yaml_uri: str, *, images: str | None = None,
                 skip_invalid: bool = False) -> None:
        volume, yaml_key = _locate(yaml_uri)
        store = open_store(volume)
        self.yaml_uri = store.uri(yaml_key)
        config = _load_yaml(store, yaml_key, self.yaml_uri)
        root = config.get("path") or "."
        if not isinstance(root, str):
            raise DatasetError(f"{self.yaml_uri}: field 'path' must be a directory, got "
                               f"{root!r}")
        root_volume, self.root = _resolve(volume, posixpath.dirname(yaml_key), root)
        super().__init__(store if root_volume == volume else open_store(root_volume),
                         images=images, skip_invalid=skip_invalid)
        self.volume = root_volume
        self._classes = [SourceClass(str(i), n)
                         for i, n in enumerate(read_names(config, self.yaml_uri))]
        self._fields = {f: _entry_texts(config, f, self.yaml_uri) for f in SPLIT_FIELDS}
        self.entries: list[_Entry] = []
        self.missing_label_files = 0

    def _key(self, base: str, text: str, where: str) -> str:
        """The store key of a path given relative to ``base`` (errors if on another volume)."""
        volume, key = _resolve(self.volume, base, text)
        if volume != self.volume:
            raise DatasetError(f"{where}: {text!r} is not on {self.volume}, where 'path' is")
        if not key:
            raise DatasetError(f"{where}: {text!r} is the root of {self.volume}")
        return key

    def default_image_root(self) -> str:
        return self.store.uri(self.root) if self.root else self.store.uri()

    def image_uri(self, file_name: str) -> str:
        if self.image_root is not None:
            return super().image_uri(file_name)
        return self.store.uri(_norm(posixpath.join(self.root, file_name)))

    def __iter__(self) -> Iterator[ImageRecord]:
        self.missing_label_files = 0
        for image in self._collect():
            record = self._record(image)
            if record is not None:
                yield record

    def _collect(self) -> list[_Image]:
        """Every image of every entry, checked for duplicates before any is yielded."""
        self.entries = []
        images: list[_Image] = []
        seen: dict[str, int] = {}
        issues = self.issues(self.yaml_uri)
        for split, field in enumerate(SPLIT_FIELDS):
            for text in self._fields[field]:
                self.entries.append(_Entry(field, text, ""))
                for key, line in self._expand(len(self.entries) - 1):
                    image = _Image(key, split, len(self.entries) - 1, line)
                    image_id = self._image_id(key)
                    first = seen.setdefault(image_id, len(images))
                    if first == len(images):
                        images.append(image)
                    elif images[first].key != key:
                        issues.report("duplicate_image_id", f"{self._origin(images[first])} and "
                                      f"{self._origin(image)} share image id {image_id!r} and "
                                      f"label file {self.store.uri(label_key(key))}")
                    elif images[first].split != split:
                        raise DatasetError(
                            f"{self.yaml_uri}: {self.store.uri(key)} is listed in both "
                            f"{self._listing(images[first])} and {self._listing(image)}; an "
                            "image must be in one split only (val scores would be train scores)")
                    else:
                        issues.report("duplicate_image", f"{self._origin(image)} is listed "
                                      f"twice (first as {self._origin(images[first])})")
        return images

    def _expand(self, index: int) -> list[tuple[str, int]]:
        """``(image key, list-file line)`` of one entry: a list file, else a directory."""
        field, text, _ = self.entries[index]
        where = f"{self.yaml_uri}: field {field!r} entry {text!r}"
        key = self._key(self.root, text, where)
        keys = self.store.list(key)
        if not keys and text.startswith("../"):  # ultralytics retries "../x" as "x"
            key = self._key(self.root, text[3:], where)
            keys = self.store.list(key)
        if not keys:
            raise DatasetError(f"{where}: {self.store.uri(key)} does not exist (expected a "
                               "directory of images or a .txt file listing them)")
        self.entries[index] = _Entry(field, text, self.store.uri(key))
        if keys == [key]:
            return self._read_list(key, where)
        found = [(k, 0) for k in keys if posixpath.splitext(k)[1].lower() in IMAGE_SUFFIXES]
        if not found:
            raise DatasetError(f"{where}: {self.store.uri(key)} holds no images "
                               f"({', '.join(IMAGE_SUFFIXES)})")
        return found

    def _read_list(self, key: str, where: str) -> list[tuple[str, int]]:
        try:
            text = self.store.read_text(key)
        except UnicodeDecodeError:
            raise DatasetError(f"{where}: {self.store.uri(key)} is not a text file listing "
                               "images") from None
        here = posixpath.dirname(key)
        found = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if posixpath.splitext(line)[1].lower() not in IMAGE_SUFFIXES:
                continue  # blank lines and other files, which ultralytics skips too
            base = here if line.startswith("./") else self.root
            found.append((self._key(base, line, f"{self.store.uri(key)}: line {lineno}"),
                          lineno))
        return found

    def _image_id(self, key: str) -> str:
        return posixpath.splitext(posixpath.relpath("/" + key, "/" + self.root))[0]

    def _listing(self, image: _Image) -> str:
        """Where an image was listed: ``field 'train' entry 'x'[, line n of LIST]``."""
        entry = self.entries[image.entry]
        line = f", line {image.line} of {entry.uri}" if image.line else ""
        return f"field {entry.field!r} entry {entry.text!r}{line}"

    def _origin(self, image: _Image) -> str:
        return f"{self.store.uri(image.key)} ({self._listing(image)})"

    def _record(self, image: _Image) -> ImageRecord | None:
        size = self._size(image)
        if size is None:
            return None
        label = label_key(image.key)
        issues = self.issues(self.store.uri(label))
        try:
            text = self.store.read_text(label)
        except StorageNotFoundError:
            self.missing_label_files += 1
            text = ""
        except UnicodeDecodeError:
            issues.report("bad_label_file", "not a UTF-8 text file")
            return None
        boxes, classes = parse_label_text(text, len(self._classes), issues, polygons=True)
        rel = posixpath.relpath("/" + image.key, "/" + self.root)
        return ImageRecord(image_id=posixpath.splitext(rel)[0], file_name=rel, width=size[0],
                           height=size[1], boxes=boxes, labels=classes,
                           flags=np.zeros(len(classes), np.uint8),
                           split=SPLIT_FIELDS[image.split])

    def _size(self, image: _Image) -> tuple[int, int] | None:
        """Width and height from the image header (the pixels are not decoded)."""
        try:
            with self.store.open_read(image.key) as stream:
                return _header_size(stream)
        except StorageNotFoundError:
            kind, problem = "missing_image", f"image not found (listed as {self._origin(image)})"
        except StorageError:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
                ValueError, EOFError) as err:
            kind, problem = "bad_image", f"not a readable image ({err})"
        self.issues(self.store.uri(image.key)).report(kind, problem)
        return None


def _header_size(stream: BinaryIO) -> tuple[int, int]:
    """PIL reads only the header of a seekable file; an S3 stream is not seekable, so PIL
    would download it whole: give it the first bytes, and the rest only if they fall short."""
    if stream.seekable():
        with Image.open(stream) as im:
            return im.size
    head = stream.read(_HEADER_BYTES)
    try:
        with Image.open(io.BytesIO(head)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError):
        with Image.open(io.BytesIO(head + stream.read())) as im:
            return im.size


def _load_yaml(store: Store, key: str, where: str) -> dict[str, Any]:
    try:
        config = yaml.safe_load(store.read_text(key))
    except StorageNotFoundError:
        raise DatasetError(f"{where}: no such file (an ultralytics source names its "
                           "data.yaml)") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{where}: not a UTF-8 text file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise DatasetError(f"{where}: cannot parse YAML: {at}{problem}") from None
    if not isinstance(config, dict):
        raise DatasetError(f"{where}: top level must be a mapping (path, train, val, names), "
                           f"got {type(config).__name__}")
    return config


def _entry_texts(config: dict[str, Any], field: str, where: str) -> list[str]:
    value = config.get(field)
    if value is None and field == "val":
        value = config.get("validation")  # ultralytics accepts this spelling too
    entries = [value] if isinstance(value, str) else value
    if (not isinstance(entries, list) or not entries
            or not all(isinstance(e, str) and e.strip() for e in entries)):
        raise DatasetError(f"{where}: field {field!r} must be a directory of images (relative "
                           f"to 'path'), a list of them, or a .txt file listing images; got "
                           f"{value!r}")
    return [e.strip() for e in entries]
