"""Prediction on what users have (image files, folders, patterns, videos) with any detector.

``damo predict`` (a checkpoint run here, :class:`ModelDetector`) and ``damo infer`` (a model
on a Triton server, :class:`EncodedDetector`) expand their arguments with
:func:`~damo_core.eval.sources.expand_sources`, decide every output name with
:func:`~damo_core.eval.sources.plan_outputs` and then run the same :func:`annotate_media`, so
both write the same files:

* images: an annotated copy each (mirroring the input folders) and ``detections.jsonl``, one
  line per image: ``image`` (the input path), ``annotated`` (the copy, relative to the output
  folder) and ``detections``;
* videos: an annotated MP4 with the input's frame count, size and frame rate
  (:mod:`damo_core.eval.video`) and ``<name>.jsonl``, one line per frame: ``frame`` (0-based),
  ``time`` (seconds since the first frame) and ``detections``.

Each detection has the fields ``damo infer --json`` prints
(:func:`damo_core.serve.client.detections_json`): ``box`` (xyxy in the picture's pixels),
``score``, ``label`` and ``class_name``. Images go through the detector in batches, a video's
frames too, decoded as they are needed, so memory holds one batch of frames whatever the
video's length. Every video is opened and its first frame decoded before any output is
written, so a corrupt or empty video fails the run at once, naming the file.
"""

from __future__ import annotations

import contextlib
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
from PIL import Image
from torch import nn
from tqdm import tqdm

from damo_core.atomic import atomic_path
from damo_core.errors import UserInputError
from damo_core.eval.draw import draw_boxes, draw_detections
from damo_core.eval.postprocess import Detections
from damo_core.eval.predict import batched, predict_batches
from damo_core.eval.sources import MediaFile, OutputPlan
from damo_core.eval.video import Frame, VideoInfo, probe_video, read_frames, video_writer

__all__ = [
    "BatchDetector",
    "EncodedDetector",
    "ImageCallback",
    "ModelDetector",
    "VideoResult",
    "annotate_media",
    "probe_videos",
]

_T = TypeVar("_T")
Batches = Iterator[tuple[list[_T], list[Detections]]]
ImageCallback = Callable[[MediaFile, Detections, Path | None], None]


class BatchDetector(Protocol):
    """Detections batch by batch, for image files and for decoded frames; each yields
    ``(batch, its detections)`` in input order and reads its input one batch at a time."""

    def on_images(self, paths: Sequence[Path]) -> Batches[Path]: ...

    def on_frames(self, frames: Iterable[Frame]) -> Batches[Frame]: ...


class ModelDetector:
    """``damo predict``'s detector: a model in this process, run by
    :func:`~damo_core.eval.predict.predict_batches` (``options`` as for it)."""

    def __init__(self, model: nn.Module, **options: Any) -> None:
        self.model, self.options = model, options

    def on_images(self, paths: Sequence[Path]) -> Batches[Path]:
        return predict_batches(self.model, paths, **self.options)

    def on_frames(self, frames: Iterable[Frame]) -> Batches[Frame]:
        return predict_batches(self.model, frames, operator.attrgetter("image"), **self.options)


class EncodedDetector:
    """``damo infer``'s detector: a :class:`~damo_core.serve.client.TritonDetector`, or any
    object with its ``detect``, ``detect_encoded`` and ``max_batch_size``.

    Images go as their files' bytes (``detect`` checks each is an image); frames are encoded
    by :func:`~damo_core.serve.codec.encode_image` (PNG: lossless, so the server sees the
    pixels ``damo predict`` would). One request carries at most ``batch_size`` pictures
    (default and cap: the model's ``max_batch_size``); detections at or below
    ``score_threshold`` are dropped, as ``detect`` drops them."""

    def __init__(self, client: Any, *, score_threshold: float, batch_size: int | None = None,
                 frame_format: str = "PNG") -> None:
        limit = int(client.max_batch_size)
        self.size = min(batch_size or limit, limit)
        if self.size <= 0:
            raise UserInputError(f"batch_size must be positive, got {batch_size}")
        self.client, self.score_threshold, self.frame_format = client, score_threshold, frame_format

    def on_images(self, paths: Sequence[Path]) -> Batches[Path]:
        for chunk in batched(paths, self.size):
            yield chunk, self.client.detect(chunk, score_threshold=self.score_threshold,
                                            batch_size=self.size)

    def on_frames(self, frames: Iterable[Frame]) -> Batches[Frame]:
        from damo_core.serve.client import keep_above  # serve imports eval, not the reverse
        from damo_core.serve.codec import encode_image

        for chunk in batched(frames, self.size):
            found = self.client.detect_encoded([encode_image(f.image, self.frame_format)
                                                for f in chunk])
            yield chunk, [keep_above(d, self.score_threshold) for d in found]


@dataclass(frozen=True)
class VideoResult:
    """One video's outputs and how many frames went through the detector."""

    source: Path
    video: Path
    jsonl: Path
    frames: int


def probe_videos(media: Sequence[MediaFile]) -> list[VideoInfo]:
    """:func:`~damo_core.eval.video.probe_video` for each video of ``media``, in order: each
    opens and decodes a first frame, else the error names it. Cheap (one frame per video), so
    a command runs it before loading a model or contacting a server."""
    return [probe_video(m.path) for m in media if m.video]


def annotate_media(
    detector: BatchDetector,
    media: Sequence[MediaFile],
    plan: OutputPlan,
    class_names: Sequence[str] | None,
    *,
    progress: bool | None = None,
    on_image: ImageCallback | None = None,
    videos_probed: Sequence[VideoInfo] | None = None,
) -> list[VideoResult]:
    """Detect on every image and video of ``media`` and write what ``plan`` names (images
    first, then videos, in input order). ``on_image(item, detections, annotated copy or
    None)`` is called per image as it is done. ``class_names`` label the drawings and records
    (None: labels stay numbers). ``progress``: a tqdm bar with images/s or frames/s; None
    shows it when stderr is a terminal. ``videos_probed`` is :func:`probe_videos`' result when
    the caller has it already; otherwise the videos are probed here, before any output."""
    videos = [m for m in media if m.video]
    infos = probe_videos(media) if videos_probed is None else videos_probed
    images = [m for m in media if not m.video]
    if images:
        _annotate_images(detector, images, plan, class_names, progress, on_image)
    return [_annotate_video(detector, video, info, targets, class_names, progress)
            for video, info, targets in zip(videos, infos, plan.videos, strict=True)]


def _detections(det: Detections, class_names: Sequence[str] | None) -> list[dict[str, Any]]:
    from damo_core.serve.client import detections_json  # serve imports eval, not the reverse

    return detections_json("", det, class_names)["detections"]


def _annotate_images(detector: BatchDetector, images: Sequence[MediaFile], plan: OutputPlan,
                     class_names: Sequence[str] | None, progress: bool | None,
                     on_image: ImageCallback | None) -> None:
    """Images in batches: the annotated copy of each as it is done, ``detections.jsonl``
    written beside itself and renamed at the end. Nothing (not even the output folder) is
    created before the first batch has been read, so a bad first image leaves no trace."""
    names = list(class_names or [])
    pending = iter(zip(images, plan.images, strict=True))
    with contextlib.ExitStack() as stack:
        lines = None
        batches = detector.on_images([m.path for m in images])
        for _, found in _counted(batches, len(images), "img", "predict images", progress):
            if lines is None and plan.jsonl is not None:
                lines = stack.enter_context(
                    stack.enter_context(atomic_path(plan.jsonl)).open("w", encoding="utf-8"))
            for det in found:
                item, target = next(pending)
                if target is not None:
                    draw_detections(item.path, det, names, target)
                if lines is not None:
                    annotated = target.relative_to(plan.jsonl.parent).as_posix() if target else None
                    lines.write(json.dumps({"image": str(item.path), "annotated": annotated,
                                            "detections": _detections(det, class_names)}) + "\n")
                if on_image is not None:
                    on_image(item, det, target)


def _annotate_video(detector: BatchDetector, video: MediaFile, info: VideoInfo,
                    targets: tuple[Path, Path], class_names: Sequence[str] | None,
                    progress: bool | None) -> VideoResult:
    """One video, streamed: decode a batch of frames, detect, draw and encode each, write a
    line per frame. Both files appear complete under their names or not at all."""
    names = list(class_names or [])
    mp4, jsonl = targets
    count = 0
    with (video_writer(mp4, info) as write, atomic_path(jsonl) as tmp,
          tmp.open("w", encoding="utf-8") as lines):
        batches = detector.on_frames(read_frames(video.path))
        for frames, found in _counted(batches, info.frames, "frame", video.path.name, progress):
            for frame, det in zip(frames, found, strict=True):
                write(np.asarray(draw_boxes(Image.fromarray(frame.image), det, names)))
                lines.write(json.dumps({"frame": frame.index, "time": round(frame.time, 6),
                                        "detections": _detections(det, class_names)}) + "\n")
                count += 1
    return VideoResult(video.path, mp4, jsonl, count)


def _counted(batches: Batches[_T], total: int | None, unit: str, desc: str,
             progress: bool | None) -> Batches[_T]:
    """``batches`` unchanged, counted on a tqdm bar (``unit``/s). The bar appears with the
    first batch, so an input that fails in it is reported before any bar is drawn, and it
    starts at that batch's count so the rate measures from then on."""
    bar = None
    try:
        for chunk, found in batches:
            if bar is None:
                bar = tqdm(total=total, initial=len(chunk), unit=unit, desc=desc,
                           disable=None if progress is None else not progress)
            else:
                bar.update(len(chunk))
            yield chunk, found
    finally:
        if bar is not None:
            bar.close()
