"""Turn unified manifests into the COCO-format dataset the trainer reads today.

Why: the trainer, evaluation and the pipeline's later steps read a ``dataset.yaml`` with COCO
JSON splits (:func:`damo_core.data.coco.load_dataset_yaml`). This writes one from a manifest
directory, so unification can land before the trainer learns to read Parquet. Images stay
where they are (file names are absolute local paths) unless they live on S3, in which case they
are downloaded under ``out/images/<source>/``. The split is a stable hash of
``(source, image_id)``, so re-exporting gives the same split. ``sampling_weights.npy`` holds
the train images' sampling weights in JSON order for
:class:`damo_core.data.sampling.WeightedEpochSampler`.
"""

from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml
from PIL import Image

from damo_core.atomic import atomic_path, atomic_write_text
from damo_core.data.errors import DatasetError
from damo_core.errors import UserInputError
from damo_core.storage import is_remote, open_store

__all__ = ["export_coco"]

_SPLITS = ("train", "val")
_COLUMNS = ["source", "image_id", "path", "width", "height", "boxes", "classes", "box_flags"]


class _SplitWriter:
    """Streams one split's COCO JSON: images now, annotations buffered to a side file."""

    def __init__(self, images: IO[str], anns: IO[str]) -> None:
        self.images, self.anns = images, anns
        self.num_images = self.num_anns = 0

    def add(self, path: str, width: int, height: int, boxes: np.ndarray, classes: np.ndarray,
            crowd: np.ndarray) -> None:
        self.num_images += 1
        entry = {"id": self.num_images, "file_name": path, "width": width, "height": height}
        self.images.write(("," if self.num_images > 1 else "") + json.dumps(entry))
        scale = np.array([width, height, width, height], np.float64)
        pix = boxes.astype(np.float64) * scale
        for box, cls, is_crowd in zip(pix, classes, crowd, strict=True):
            self.num_anns += 1
            w, h = box[2] - box[0], box[3] - box[1]
            ann = {"id": self.num_anns, "image_id": self.num_images, "category_id": int(cls) + 1,
                   "bbox": [round(v, 2) for v in (box[0], box[1], w, h)],
                   "area": round(w * h, 2), "iscrowd": int(is_crowd)}
            self.anns.write(("," if self.num_anns > 1 else "") + json.dumps(ann))


def _local_image(path: str, source: str, out: Path) -> str:
    """A local path for the image (S3 images are downloaded once)."""
    if not is_remote(path):
        return path
    store_uri, _, key = path.rpartition("/")
    target = out / "images" / source / key
    if not target.is_file():
        open_store(store_uri).get_file(key, target)
    return str(target)


def _rows(manifest: str | Path) -> Iterator[dict[str, Any]]:
    from damo_core.data.unify import iter_manifest

    for batch in iter_manifest(manifest, _COLUMNS):
        yield from batch.to_pylist()


def export_coco(manifest: str | Path, out_dir: str | Path, *, val_fraction: float = 0.05,
                seed: int = 0) -> Path:
    """Write ``out_dir/dataset.yaml`` (+ JSONs, weights) from a manifest; returns the yaml."""
    from damo_core.data.unify import read_sampling_weights, read_summary

    if not 0.0 <= val_fraction < 1.0:
        raise UserInputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out = Path(out_dir)
    store = open_store(manifest)
    read_summary(manifest)
    names = [c["name"] for c in json.loads(store.read_text("label_space.json"))["classes"]]
    weights = read_sampling_weights(manifest)
    train_weights: list[float] = []
    tmp_dir = out / ".export-tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    files = {s: (tmp_dir / f"{s}.images", tmp_dir / f"{s}.anns") for s in _SPLITS}
    handles = {s: tuple(p.open("w") for p in files[s]) for s in _SPLITS}
    writers = {s: _SplitWriter(*handles[s]) for s in _SPLITS}
    try:
        for row, weight in zip(_rows(manifest), weights, strict=True):
            key = f"{seed}/{row['source']}/{row['image_id']}".encode()
            split = "val" if zlib.crc32(key) % 10_000 < val_fraction * 10_000 else "train"
            path = _local_image(row["path"], row["source"], out)
            width, height = row["width"], row["height"]
            if width is None or height is None:
                try:
                    with Image.open(path) as im:
                        width, height = im.size
                except OSError as exc:
                    raise DatasetError(f"{path}: image of {row['source']}:{row['image_id']} "
                                       f"cannot be opened to read its size: {exc}") from None
            writers[split].add(path, width, height, np.asarray(row["boxes"]).reshape(-1, 4),
                               np.asarray(row["classes"]),
                               np.asarray(row["box_flags"], np.uint8) & 1)
            if split == "train":
                train_weights.append(weight)
    finally:
        for pair in handles.values():
            for handle in pair:
                handle.close()
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    for split in _SPLITS:
        if writers[split].num_images == 0:
            raise DatasetError(f"{manifest}: split '{split}' would be empty "
                               f"(val_fraction {val_fraction})")
        with atomic_path(out / "annotations" / f"{split}.json") as tmp, tmp.open("w") as f:
            f.write(f'{{"categories": {json.dumps(cats)}, "images": [')
            for i, part in enumerate(files[split]):
                f.write('], "annotations": [' if i else "")
                with part.open() as src:
                    shutil.copyfileobj(src, f)
            f.write("]}")
    for pair in files.values():
        for p in pair:
            p.unlink()
    tmp_dir.rmdir()
    with atomic_path(out / "sampling_weights.npy") as tmp, tmp.open("wb") as f:
        np.save(f, np.asarray(train_weights, np.float64))
    spec = {"path": ".", "train": "annotations/train.json", "val": "annotations/val.json",
            "train_images": "/", "val_images": "/", "names": names,
            "sampling_weights": "sampling_weights.npy"}
    return atomic_write_text(out / "dataset.yaml", yaml.safe_dump(spec, sort_keys=False))
