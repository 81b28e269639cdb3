"""Run a detector on image files, decoded pictures (a video's frames) or a dataset split.

:func:`detect_prepared` is the single inference path (fitted batch → model → decode → NMS →
original pixels); the COCO evaluator uses it too, so the numbers it reports describe exactly
what :func:`predict` returns. Images are fitted to the input (letterbox or stretch) the way the
model was trained: the mode recorded on the model (:func:`damo_core.data.fit.model_fit`) unless
a caller overrides it.

:func:`predict` (files), :func:`predict_batches` (files or in-memory pixels such as a video's
frames, streamed) and :func:`predict_dataset` (rows of a manifest split, S3 images through the
cache) share one batching loop, :func:`_detect_batches`; only how an item is read differs.
:func:`annotate_dataset` writes what ``damo predict --data`` leaves behind: one annotated copy
per row and ``detections.jsonl``. Drawing lives in :mod:`damo_core.eval.draw` and output names
in :mod:`damo_core.eval.sources`; both are re-exported here for existing imports.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from damo_core.atomic import atomic_path
from damo_core.data.coco import Sample
from damo_core.data.fit import FitMode, model_fit
from damo_core.data.manifest_dataset import ManifestDetection
from damo_core.errors import UserInputError
from damo_core.eval.draw import class_colour, draw_boxes, draw_detections
from damo_core.eval.engine import dense_outputs
from damo_core.eval.postprocess import Detections, nms_defaults, postprocess
from damo_core.eval.preprocess import PreparedImage, load_image, prepare_image
from damo_core.eval.sources import annotated_paths, free_path

__all__ = [
    "RowDetections",
    "annotate_dataset",
    "annotated_paths",
    "batched",
    "class_colour",
    "detect_prepared",
    "draw_boxes",
    "draw_detections",
    "inference_mode",
    "predict",
    "predict_batches",
    "predict_dataset",
    "resolve_image_size",
    "resolve_thresholds",
    "row_stem",
    "thread_pool",
]


def _model_config(model: nn.Module) -> object | None:
    return getattr(model, "config", None)


def resolve_image_size(model: nn.Module, image_size: int | None) -> int:
    """The explicit size, else the size the model's config was designed for."""
    if image_size is not None:
        return int(image_size)
    size = getattr(_model_config(model), "image_size", None)
    if size is None:
        raise UserInputError("model has no config.image_size; pass image_size explicitly")
    return int(size)


def resolve_thresholds(
    model: nn.Module, score_threshold: float | None, iou_threshold: float | None
) -> tuple[float, float]:
    """Fill unset thresholds with the reference's values for this model family."""
    default_score, default_iou = nms_defaults(getattr(_model_config(model), "name", None))
    return (
        default_score if score_threshold is None else float(score_threshold),
        default_iou if iou_threshold is None else float(iou_threshold),
    )


@contextlib.contextmanager
def inference_mode(model: nn.Module, device: torch.device | str) -> Iterator[nn.Module]:
    """Move ``model`` to ``device`` in eval mode, and restore train mode afterwards (an
    evaluation inside a training loop must not leave BatchNorm frozen)."""
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def detect_prepared(
    model: nn.Module,
    batch: Sequence[PreparedImage],
    *,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int = 100,
    pre_nms_topk: int = 1000,
    device: torch.device | str = "cpu",
) -> list[Detections]:
    """Detect on one batch of fitted images; results are on CPU in original pixels.

    The caller sets eval mode and disables autograd (see :func:`inference_mode`).
    """
    if not batch:
        return []
    # one image (``damo predict`` on a file, a video frame) is viewed as a batch, not copied
    images = (batch[0].tensor[None] if len(batch) == 1
              else torch.stack([p.tensor for p in batch])).to(device)
    scores, boxes = dense_outputs(model, images)
    per_image = postprocess(
        scores.float(),
        boxes.float(),
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
        pre_nms_topk=pre_nms_topk,
    )
    out = []
    for prepared, det in zip(batch, per_image, strict=True):
        det = det.to("cpu")
        det.boxes = prepared.placement.to_original(det.boxes)
        out.append(det)
    return out


def predict(
    model: nn.Module,
    images: Sequence[str | Path] | str | Path,
    *,
    image_size: int | None = None,
    score_threshold: float = 0.3,
    iou_threshold: float | None = None,
    max_detections: int = 100,
    pre_nms_topk: int = 1000,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    workers: int = 4,
    fit: FitMode | None = None,
) -> list[Detections]:
    """Detections for each image file, in that image's own pixel coordinates.

    The default score threshold (0.3) suits display; use the evaluation default (0.05) when
    you want every plausible box. ``workers`` threads decode and fit each batch's images in
    parallel; 0 does it in the calling thread. ``fit`` defaults to the model's own mode.
    """
    if isinstance(images, str | Path):  # one path, not a sequence of characters
        images = [images]
    batches = predict_batches(
        model, [Path(p) for p in images], image_size=image_size, score_threshold=score_threshold,
        iou_threshold=iou_threshold, fit=fit, max_detections=max_detections,
        pre_nms_topk=pre_nms_topk, batch_size=batch_size, device=device, workers=workers)
    return [det for _, found in batches for det in found]


_T = TypeVar("_T")
_R = TypeVar("_R")


def predict_batches(
    model: nn.Module,
    items: Iterable[_T],
    pixels: Callable[[_T], np.ndarray] | None = None,
    *,
    image_size: int | None = None,
    score_threshold: float | None = 0.3,
    iou_threshold: float | None = None,
    max_detections: int = 100,
    pre_nms_topk: int = 1000,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    workers: int = 4,
    fit: FitMode | None = None,
) -> Iterator[tuple[list[_T], list[Detections]]]:
    """``(batch of items, their detections)`` for image files, or for anything ``pixels``
    turns into an ``H×W×3`` uint8 RGB array (a video's decoded frames).

    ``items`` may be an iterator: it is read one batch at a time, so a video of any length
    needs memory for ``batch_size`` frames only. Options are as for :func:`predict`, whose
    detections these are, batch by batch (the same loop, :func:`_detect_batches`).
    """
    load = _load_prepared if pixels is None else partial(_load_pixels, pixels=pixels)
    return _detect_batches(
        model, items, load, image_size=image_size, score_threshold=score_threshold,
        iou_threshold=iou_threshold, fit=fit, max_detections=max_detections,
        pre_nms_topk=pre_nms_topk, batch_size=batch_size, device=device, workers=workers)


class _InlinePool:
    """``map`` in the calling thread: same interface as an executor, for ``workers=0``."""

    def map(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[_R]:
        return map(fn, items)


def _load_prepared(path: Path, size: int, fit: FitMode) -> PreparedImage:
    return prepare_image(load_image(path), size, fit)


def _load_pixels(item: _T, size: int, fit: FitMode, *,
                 pixels: Callable[[_T], np.ndarray]) -> PreparedImage:
    return prepare_image(pixels(item), size, fit)


def batched(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), pulled from ``items``
    lazily: an iterator is never read further than the batch being built."""
    if size <= 0:
        raise UserInputError(f"batch_size must be positive, got {size}")
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


@torch.no_grad()  # on a generator: autograd is off only while it runs, not in the consumer
def _detect_batches(
    model: nn.Module,
    items: Iterable[_T],
    load: Callable[..., PreparedImage],
    *,
    image_size: int | None,
    score_threshold: float | None,
    iou_threshold: float | None,
    fit: FitMode | None,
    max_detections: int,
    pre_nms_topk: int,
    batch_size: int,
    device: torch.device | str,
    workers: int,
    prefetch: Callable[[Sequence[_T]], None] | None = None,
) -> Iterator[tuple[list[_T], list[Detections]]]:
    """``(chunk, its detections)`` per batch of ``items``: the one loop behind :func:`predict`,
    :func:`predict_batches` and :func:`predict_dataset`, which differ only in
    ``load(item, size=, fit=)``, run in the thread pool. Unset size, thresholds and fit are
    resolved from the model here, once. ``items`` may be an iterator (a video's frames), read
    a batch at a time. ``prefetch`` (a sequence's items only) gets the next chunk before the
    current one is read, so remote images download meanwhile. The model stays in eval mode on
    ``device`` until the generator ends."""
    if batch_size <= 0:
        raise UserInputError(f"batch_size must be positive, got {batch_size}")
    if prefetch is not None and not isinstance(items, Sequence):
        raise TypeError("prefetch needs items as a sequence, to look one batch ahead")
    read = partial(load, size=resolve_image_size(model, image_size), fit=model_fit(model, fit))
    score_thr, iou_thr = resolve_thresholds(model, score_threshold, iou_threshold)
    with inference_mode(model, device), thread_pool(workers) as pool:
        for k, chunk in enumerate(batched(items, batch_size)):
            if prefetch is not None:
                start = (k + 1) * batch_size
                prefetch(items[start : start + batch_size])
            found = detect_prepared(model, list(pool.map(read, chunk)), device=device,
                                    score_threshold=score_thr, iou_threshold=iou_thr,
                                    max_detections=max_detections, pre_nms_topk=pre_nms_topk)
            yield chunk, found


@contextlib.contextmanager
def thread_pool(workers: int) -> Iterator[ThreadPoolExecutor | _InlinePool]:
    """Threads suffice for image decoding: PIL releases the GIL while decoding/resizing."""
    if workers <= 0:
        yield _InlinePool()
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield pool


# ----------------------------------------------------------------------------- datasets


class RowDetections(NamedTuple):
    """What :func:`predict_dataset` yields per image: the split's row, the sample read from it
    (the decoded image, kept so drawing it costs no second read) and its detections."""

    index: int
    sample: Sample
    detections: Detections


def predict_dataset(
    model: nn.Module,
    dataset: ManifestDetection,
    *,
    limit: int | None = None,
    image_size: int | None = None,
    score_threshold: float = 0.3,
    iou_threshold: float | None = None,
    max_detections: int = 100,
    pre_nms_topk: int = 1000,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    workers: int = 4,
    fit: FitMode | None = None,
    progress: bool = True,
) -> Iterator[RowDetections]:
    """Detections for the first ``limit`` rows (default all) of a manifest split, in row order
    and batch by batch, so a split of any size streams; boxes are in each image's pixels.

    Rows are read through ``dataset`` (S3 images via its cache, the next batch prefetched), so
    prediction sees the same pixels training and evaluation do. Thresholds, ``fit`` and
    ``workers`` are as for :func:`predict`; ``progress`` shows a bar with images/s.
    """
    if limit is not None and limit <= 0:
        raise UserInputError(f"limit must be a positive number of images, got {limit}")
    rows = range(len(dataset) if limit is None else min(limit, len(dataset)))
    samples: dict[int, Sample] = {}  # row → its sample, from the loader threads to the yield

    def load(index: int, size: int, fit: FitMode) -> PreparedImage:
        samples[index] = sample = dataset[index]
        return prepare_image(sample.image, size, fit)

    batches = _detect_batches(
        model, rows, load, image_size=image_size, score_threshold=score_threshold,
        iou_threshold=iou_threshold, fit=fit, max_detections=max_detections,
        pre_nms_topk=pre_nms_topk, batch_size=batch_size, device=device, workers=workers,
        prefetch=dataset.prefetch)
    with tqdm(total=len(rows), desc=f"predict {dataset.split}", unit="img",
              disable=not progress) as bar:
        for chunk, found in batches:
            bar.update(len(chunk))
            for index, det in zip(chunk, found, strict=True):
                yield RowDetections(index, samples.pop(index), det)


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_IMAGE_SUFFIX = re.compile(r"\.(jpe?g|png|bmp|gif|webp|tiff?)$", re.IGNORECASE)


def row_stem(source: str, image_id: str, max_len: int = 120) -> str:
    """``<source>_<source image id>`` as a safe file stem: a slash, space or other character
    outside ``[A-Za-z0-9._-]`` becomes ``_``, an image suffix on the id and leading dots go
    (no hidden files, no ``..``), and the length is capped below file-system limits."""
    stem = _UNSAFE_NAME.sub("_", f"{source}_{_IMAGE_SUFFIX.sub('', image_id)}")
    return stem.strip("._")[:max_len] or "image"


def annotate_dataset(
    model: nn.Module,
    dataset: ManifestDetection,
    out_dir: str | Path,
    *,
    class_names: Sequence[str],
    **options: Any,
) -> Path:
    """Predict on ``dataset`` (``options`` as for :func:`predict_dataset`) and write, into
    ``out_dir``, one annotated JPEG per row named by :func:`row_stem` (``_2``, ``_3``... where
    two rows' names meet; never over an input image) and ``detections.jsonl``. Returns the
    JSONL path.

    Each JSONL line is one image: its split ``row``, ``source``, source ``image_id``,
    ``path`` (path or s3:// URI), ``width``/``height``, the ``annotated`` file name and its
    ``detections`` (``class``, ``label``, ``score``, ``box`` xyxy in the image's pixels).
    ``class_names`` are the model's. The file appears complete or not at all (written beside
    itself and renamed at the end); each image is written atomically as it is done.
    """
    out_dir = Path(out_dir)
    avoid = _inputs_in(out_dir, dataset.paths.to_pylist())
    jsonl = out_dir / "detections.jsonl"
    with atomic_path(jsonl) as tmp, tmp.open("w", encoding="utf-8") as lines:
        for index, sample, det in predict_dataset(model, dataset, **options):
            source = dataset.sources[index].as_py()
            image_id = dataset.source_image_ids[index].as_py()
            target = free_path(out_dir, row_stem(source, image_id), ".jpg", avoid)
            draw_detections(sample.image, det, class_names, target)
            height, width = sample.image.shape[:2]
            record = {"row": index, "source": source, "image_id": image_id,
                      "path": sample.file_name, "width": width, "height": height,
                      "annotated": target.name, "detections": _records(det, class_names)}
            lines.write(json.dumps(record) + "\n")
    return jsonl


def _inputs_in(out_dir: Path, paths: Iterable[str]) -> set[Path]:
    """The local input images an annotated copy in ``out_dir`` could overwrite, resolved. A
    split may hold millions of rows, so the folder is compared as a string first and only
    ``.jpg`` files lying in it are resolved."""
    folders = {os.path.abspath(out_dir), str(out_dir.resolve())}
    return {Path(p).resolve() for p in paths if p.lower().endswith(".jpg")
            and "://" not in p and os.path.dirname(os.path.abspath(p)) in folders}


def _records(det: Detections, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """JSON-ready detections; a label outside ``class_names`` is named by its number."""
    return [
        {"class": class_names[label] if 0 <= label < len(class_names) else str(label),
         "label": label, "score": round(score, 5), "box": [round(v, 2) for v in box]}
        for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(),
                                     det.labels.tolist(), strict=True)
    ]
