"""Run a detector on image files and draw what it found.

:func:`detect_prepared` is the single inference path (fitted batch → model → decode → NMS →
original pixels); the COCO evaluator uses it too, so the numbers it reports describe exactly
what :func:`predict` returns. Images are fitted to the input (letterbox or stretch) the way the
model was trained: the mode recorded on the model (:func:`damo_core.data.fit.model_fit`) unless
a caller overrides it.
"""

from __future__ import annotations

import colorsys
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from damo_core.atomic import atomic_path
from damo_core.data.fit import FitMode, model_fit
from damo_core.data.images import open_rgb
from damo_core.errors import UserInputError
from damo_core.eval.postprocess import Detections, nms_defaults, postprocess
from damo_core.eval.preprocess import PreparedImage, load_image, prepare_image

__all__ = [
    "class_colour",
    "detect_prepared",
    "draw_detections",
    "inference_mode",
    "predict",
    "resolve_image_size",
    "resolve_thresholds",
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
    images = torch.stack([p.tensor for p in batch]).to(device)
    scores, boxes = model.head.decode(model(images))
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
    if batch_size <= 0:
        raise UserInputError(f"batch_size must be positive, got {batch_size}")
    size = resolve_image_size(model, image_size)
    mode = model_fit(model, fit)
    score_thr, iou_thr = resolve_thresholds(model, score_threshold, iou_threshold)
    if isinstance(images, str | Path):  # one path, not a sequence of characters
        images = [images]
    paths = [Path(p) for p in images]
    results: list[Detections] = []
    with inference_mode(model, device), thread_pool(workers) as pool:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            batch = list(pool.map(partial(_load_prepared, size=size, fit=mode), chunk))
            results += detect_prepared(
                model,
                batch,
                score_threshold=score_thr,
                iou_threshold=iou_thr,
                max_detections=max_detections,
                pre_nms_topk=pre_nms_topk,
                device=device,
            )
    return results


_T = TypeVar("_T")
_R = TypeVar("_R")


class _InlinePool:
    """``map`` in the calling thread: same interface as an executor, for ``workers=0``."""

    def map(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[_R]:
        return map(fn, items)


def _load_prepared(path: Path, size: int, fit: FitMode) -> PreparedImage:
    return prepare_image(load_image(path), size, fit)


@contextlib.contextmanager
def thread_pool(workers: int) -> Iterator[ThreadPoolExecutor | _InlinePool]:
    """Threads suffice for image decoding: PIL releases the GIL while decoding/resizing."""
    if workers <= 0:
        yield _InlinePool()
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield pool


# ----------------------------------------------------------------------------- drawing

_GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable RGB colour per class. Hues step by the golden ratio, so consecutive class
    ids land far apart on the colour wheel however many classes there are."""
    hue = (label * _GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background`` (Rec. 601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size``; the fixed bitmap font if FreeType is missing."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


def _save_format(out_path: Path) -> str:
    """Pillow format name for the output suffix, checked before any drawing work is done."""
    fmt = Image.registered_extensions().get(out_path.suffix.lower())
    if fmt is None:
        raise UserInputError(f"{out_path}: unknown image suffix {out_path.suffix!r}; use .png "
                             "or .jpg")
    return fmt


def draw_detections(
    image_path: str | Path,
    detections: Detections,
    class_names: Sequence[str],
    out_path: str | Path,
    *,
    line_width: int | None = None,
) -> Path:
    """Draw each box with a ``"name score"`` tag in its class colour and write the result to
    ``out_path`` atomically (format from the suffix). Boxes are in original-image pixels."""
    out_path = Path(out_path)
    fmt = _save_format(out_path)
    canvas = open_rgb(image_path)
    lw = line_width or max(2, round(min(canvas.size) / 200))
    font = _font(max(10, 5 * lw + 2))
    draw = ImageDraw.Draw(canvas)
    for box, score, label in zip(
        detections.boxes.tolist(),
        detections.scores.tolist(),
        detections.labels.tolist(),
        strict=True,
    ):
        colour = class_colour(int(label))
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        x1, y1, x2, y2 = box
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=colour, width=lw)
        text = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        # Tag sits above the box, or inside its top edge when the box touches the image top.
        ty = y1 - th - 2 * lw if y1 - th - 2 * lw >= 0 else y1
        draw.rectangle((x1, ty, x1 + tw + 2 * lw, ty + th + 2 * lw), fill=colour)
        draw.text((x1 + lw - left, ty + lw - top), text, fill=_text_colour(colour), font=font)
    save_kwargs = {"quality": 95} if fmt == "JPEG" else {}
    with atomic_path(out_path) as tmp:
        canvas.save(tmp, format=fmt, **save_kwargs)
    return out_path


def annotated_paths(images: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Where each input's annotated copy goes: ``out_dir/<name>``, unless that would overwrite
    an input or another input's result (same file name from two folders), in which case
    ``<stem>_2<suffix>``, ``_3``... So a run never destroys what it was given or loses a result.
    """
    out_dir = Path(out_dir)
    inputs = {Path(p).resolve() for p in images}
    taken: set[Path] = set()
    targets = []
    for image in map(Path, images):
        target = out_dir / image.name
        k = 2
        while target.resolve() in inputs or target.resolve() in taken:
            target = out_dir / f"{image.stem}_{k}{image.suffix}"
            k += 1
        taken.add(target.resolve())
        targets.append(target)
    return targets
