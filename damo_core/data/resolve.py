"""What ``--data`` may name, turned into the one training format: a manifest directory.

Accepted: a manifest directory (local or ``s3://``, ``summary.json`` inside), a COCO-format
``dataset.yaml`` (train/val JSON plus image folders), an ultralytics ``data.yaml`` (YOLO txt
labels), or a directory holding one of those files. The two YAML kinds are converted to a
manifest once and kept in the user's cache (``$DAMO_CACHE_DIR``, else
``$XDG_CACHE_HOME/damo``, else ``~/.cache/damo``) under a fingerprint of the YAML and its
annotation files, so training, evaluation, export calibration and benchmarks of the same data
share one conversion and an edited annotation file is converted again. Images are never
copied: the manifest's paths point at them where they are.

Why convert rather than read COCO JSON directly: one reader under every step means one set
of rules (clipping, crowd boxes, splits, sizes) and the same numbers whichever way the data
arrived; the COCO path keeps its strict validation because the conversion reads through
:class:`~damo_core.data.coco.CocoDetection`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

from damo_core.data.blob_cache import cache_root
from damo_core.data.coco import CocoDetection, DatasetSpec, load_dataset_yaml
from damo_core.data.errors import DatasetError
from damo_core.data.formats import SourceSpec, open_source
from damo_core.data.formats.base import FLAG_CROWD, ImageRecord, SourceClass, SourceReader
from damo_core.data.labelspace import LabelSpace, UnifiedClass
from damo_core.data.manifest_dataset import ManifestDetection
from damo_core.data.unify import UnifyResult
from damo_core.storage import is_remote, open_store

__all__ = ["cache_root", "convert_yaml", "manifest_for", "open_split"]

_YAML_NAMES = ("dataset.yaml", "data.yaml")


def open_split(data: str | Path | DatasetSpec | ManifestDetection, split: str
               ) -> ManifestDetection:
    """One split of whatever ``data`` names (see the module docstring)."""
    if isinstance(data, ManifestDetection):
        return data if data.split == split else ManifestDetection(data.manifest, split)
    return ManifestDetection(manifest_for(data), split)


def manifest_for(data: str | Path | DatasetSpec, *, skip_invalid: bool = False) -> str:
    """The manifest directory (a path or URI) for ``data``, converting a YAML once."""
    text = str(data.yaml_path if isinstance(data, DatasetSpec) else data)
    if is_remote(text):
        if text.endswith((".yaml", ".yml")):
            raise DatasetError(f"{text}: a dataset yaml on S3 is not converted implicitly; "
                               "unify it (`damo unify --source NAME:ultralytics=URI --out "
                               "DIR`) and pass the manifest")
        return text
    path = Path(text)
    if path.is_dir():
        if (path / "summary.json").is_file():
            return str(path)
        found = [path / n for n in _YAML_NAMES if (path / n).is_file()]
        if not found:
            raise DatasetError(f"{path}: neither a manifest directory (summary.json) nor a "
                               f"dataset directory ({' or '.join(_YAML_NAMES)})")
        path = found[0]
    elif not path.is_file():
        raise DatasetError(f"{path}: dataset not found (a manifest directory, dataset.yaml "
                           "or ultralytics data.yaml)")
    return str(_converted(path, skip_invalid=skip_invalid))


def _is_coco_yaml(path: Path) -> bool:
    """COCO ``dataset.yaml`` (train: a .json file) rather than an ultralytics ``data.yaml``."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot parse dataset yaml: {exc}") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    train = raw.get("train")
    return "train_images" in raw or (isinstance(train, str) and train.endswith(".json"))


def _fingerprint(path: Path, inputs: list[Path], skip_invalid: bool) -> str:
    from damo_core.data.unify import MANIFEST_VERSION

    digest = hashlib.sha256(f"{MANIFEST_VERSION}|{skip_invalid}|{path.resolve()}".encode())
    digest.update(path.read_bytes())
    for item in inputs:
        st = item.stat()
        digest.update(f"|{item}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """One converter per fingerprint at a time (ranks and steps may start together)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _converted(path: Path, *, skip_invalid: bool) -> Path:
    from damo_core.data.unify import SUMMARY

    if _is_coco_yaml(path):
        spec = load_dataset_yaml(path)
        inputs = [spec.train_json, spec.val_json]
    else:  # labels are one file per image: every file under the dataset root counts
        from damo_core.data.formats.ultralytics import UltralyticsReader

        root = Path(UltralyticsReader(str(path)).default_image_root())
        inputs = sorted(p for p in root.rglob("*") if p.is_file())
    out = cache_root() / "manifests" / _fingerprint(path, inputs, skip_invalid)
    with _locked(out.with_suffix(".lock")):
        if not (out / SUMMARY).is_file():
            convert_yaml(path, out, skip_invalid=skip_invalid)
    return out


def convert_yaml(path: str | Path, out: str | Path, *, skip_invalid: bool = False,
                 sampling: bool = False, alpha: float = 0.5,
                 rfs_threshold: float = 0.001) -> UnifyResult:
    """Write the manifest of a COCO ``dataset.yaml`` or an ultralytics ``data.yaml`` to
    ``out`` (its classes as the label space, its splits kept)."""
    from damo_core.data.unify import unify

    path = Path(path)
    if _is_coco_yaml(path):
        source = SourceSpec(name="data", format="coco", uri=str(path))
        reader: SourceReader = _CocoSplits(load_dataset_yaml(path), skip_invalid)
    else:
        source = SourceSpec(name="data", format="ultralytics", uri=str(path))
        reader = open_source(source, skip_invalid=skip_invalid)
    return unify([source], _identity_space(reader.classes), out, readers=[reader],
                 sampling=sampling, alpha=alpha, rfs_threshold=rfs_threshold, progress=False)


def _identity_space(classes: list[SourceClass]) -> LabelSpace:
    """Each class of the one source is its own unified class, in the source's order."""
    return LabelSpace(sources=("data",), classes=[UnifiedClass(c.name, {"data": (c.key,)})
                                                  for c in classes],
                      where="the dataset's own classes")


class _CocoSplits(SourceReader):
    """Both splits of a COCO ``dataset.yaml`` as one source, validated by CocoDetection."""

    format_name = "coco"

    def __init__(self, spec: object, skip_invalid: bool) -> None:
        super().__init__(open_store("."), skip_invalid=skip_invalid)
        self.splits = {s: CocoDetection.from_spec(spec, s, skip_invalid=skip_invalid)  # type: ignore[arg-type]
                       for s in ("train", "val")}
        train = self.splits["train"]
        self._classes = [SourceClass(str(cid), n)
                         for cid, n in zip(train.cat_ids, train.class_names, strict=True)]
        for dataset in self.splits.values():
            self.skipped.update({k: self.skipped.get(k, 0) + v
                                 for k, v in dataset.skipped.items()})

    def image_uri(self, file_name: str) -> str:
        return file_name  # already the image's absolute path

    def __iter__(self) -> Iterator[ImageRecord]:
        for split, dataset in self.splits.items():
            coco = dataset.coco
            for image_id in dataset.image_ids:
                info = coco.imgs[image_id]
                anns = coco.imgToAnns.get(image_id, [])
                yield _record(split, info, anns, dataset.cat_id_to_label,
                              str(dataset.image_dir / info["file_name"]))


def _record(split: str, info: dict, anns: list[dict], cat_to_label: dict[int, int],
            path: str) -> ImageRecord:
    """One COCO image entry as an :class:`ImageRecord` (its own split, areas and crowd)."""
    xywh = np.asarray([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    w, h = info.get("width"), info.get("height")
    if w is None or h is None:
        from damo_core.data.images import open_rgb

        with open_rgb(path) as im:
            w, h = im.size
    scale = np.array([w, h, w, h], np.float64)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1) / scale
    return ImageRecord(
        image_id=str(info["id"]), file_name=path, width=int(w), height=int(h),
        boxes=boxes.astype(np.float32),
        labels=np.asarray([cat_to_label[a["category_id"]] for a in anns], np.int32),
        flags=np.asarray([FLAG_CROWD if a.get("iscrowd", 0) else 0 for a in anns], np.uint8),
        split=split,
        areas=np.asarray([a.get("area", np.nan) for a in anns], np.float64))
