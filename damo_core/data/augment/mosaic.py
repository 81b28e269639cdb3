"""Mosaic (four images tiled, then randomly warped back to the input size) and mixup.

Why: mosaic shows the detector objects at many scales and partially cut at tile borders in
every sample, and mixup overlays a second scene at half opacity; together they are the
image-level half of DAMO-YOLO's recipe (SADA box-level augmentation runs afterwards).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from damo_core.data.augment.config import AugmentConfig
from damo_core.data.augment.geometric import (
    Annotated,
    clip_boxes,
    drop_small,
    hflip,
    random_affine,
    resample,
)
from damo_core.data.fit import PAD_VALUE, FitMode, fit_from_keep_ratio, fitted_size

__all__ = ["mixup", "mosaic", "mosaic_canvas"]


def _tile_size(image: np.ndarray, size: int, fit: FitMode) -> tuple[int, int]:
    """(width, height) of one tile: the content size :func:`~damo_core.data.fit.fit_image`
    gives the image for a ``size`` input (a tile needs no padding: the canvas is its pad), so
    objects in a mosaic have the proportions they have at evaluation."""
    th, tw = fitted_size((int(image.shape[0]), int(image.shape[1])), size, fit)
    return tw, th


def _paste_tile(
    canvas: np.ndarray, tile: np.ndarray, quadrant: int, centre: tuple[int, int]
) -> tuple[int, int]:
    """Paste ``tile`` so one of its corners touches ``centre``; return its (x, y) origin.

    Quadrant 0 is top-left of the centre, 1 top-right, 2 bottom-left, 3 bottom-right; the part
    of the tile falling outside the canvas is cut off.
    """
    th, tw = tile.shape[:2]
    side = canvas.shape[0]
    x0 = centre[0] - tw if quadrant in (0, 2) else centre[0]
    y0 = centre[1] - th if quadrant in (0, 1) else centre[1]
    x1, y1 = max(x0, 0), max(y0, 0)
    x2, y2 = min(x0 + tw, side), min(y0 + th, side)
    canvas[y1:y2, x1:x2] = tile[y1 - y0 : y2 - y0, x1 - x0 : x2 - x0]
    return x0, y0


def mosaic_canvas(
    samples: Sequence[Annotated],
    size: int,
    rng: np.random.Generator,
    *,
    fit: FitMode = "stretch",
    pad_value: int = PAD_VALUE,
) -> Annotated:
    """Tile four samples around a random centre of a ``2*size`` square canvas.

    Each sample is first resized to a ``size`` tile by ``fit`` (stretched, or aspect-kept for
    ``letterbox``). The centre is drawn from the middle half of the canvas, so every tile
    shows at least a quarter of itself; boxes are clipped to the canvas, which is exactly
    where tiles are cut, since tiles never overlap each other. Boxes cut away entirely go.
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic needs exactly 4 samples, got {len(samples)}")
    side = 2 * size
    canvas = np.full((side, side, 3), pad_value, dtype=np.uint8)
    centre = (int(rng.uniform(0.5 * size, 1.5 * size)), int(rng.uniform(0.5 * size, 1.5 * size)))
    all_boxes, all_labels = [], []
    for quadrant, sample in enumerate(samples):
        h, w = sample.image.shape[:2]
        tw, th = _tile_size(sample.image, size, fit)
        x0, y0 = _paste_tile(canvas, resample(sample.image, tw, th), quadrant, centre)
        factor = np.array([tw / w, th / h, tw / w, th / h], dtype=np.float32)
        all_boxes.append(sample.boxes * factor + np.array([x0, y0, x0, y0], dtype=np.float32))
        all_labels.append(sample.labels)
    boxes = clip_boxes(np.concatenate(all_boxes), side, side)
    return drop_small(Annotated(canvas, boxes, np.concatenate(all_labels)))


def mosaic(
    samples: Sequence[Annotated], size: int, rng: np.random.Generator, cfg: AugmentConfig
) -> Annotated:
    """Four-image mosaic warped back to ``size x size`` by the random affine of ``cfg``.

    The affine zoom (``cfg.mosaic_scale``) is relative to the ``2*size`` canvas, so a zoom of
    1 keeps the tiles at input resolution and crops a quarter-area window out of the mosaic.
    """
    fit = fit_from_keep_ratio(cfg.keep_ratio)
    canvas = mosaic_canvas(samples, size, rng, fit=fit, pad_value=cfg.pad_value)
    return random_affine(
        canvas,
        rng,
        size,
        degrees=cfg.degrees,
        translate=cfg.translate,
        scale_range=cfg.mosaic_scale,
        shear=cfg.shear,
        pad_value=cfg.pad_value,
        min_box_size=cfg.min_box_size,
        min_area_ratio=cfg.min_area_ratio,
        max_aspect_ratio=cfg.max_aspect_ratio,
    )


def _jittered_layer(
    other: Annotated, out_hw: tuple[int, int], jitter: float, flip: bool, pad_value: int
) -> tuple[Annotated, tuple[int, int]]:
    """``other`` fitted into ``out_hw`` keeping its ratio, zoomed by ``jitter``, maybe flipped,
    on a pad canvas at least ``out_hw`` big; also returns the canvas (width, height)."""
    h, w = other.image.shape[:2]
    ratio = min(out_hw[0] / h, out_hw[1] / w) * jitter
    new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
    layer = Annotated(
        resample(other.image, new_w, new_h),
        other.boxes * np.array([new_w / w, new_h / h] * 2, dtype=np.float32),
        other.labels,
    )
    if flip:
        layer = hflip(layer)
    canvas_w, canvas_h = max(new_w, out_hw[1]), max(new_h, out_hw[0])
    canvas = np.full((canvas_h, canvas_w, 3), pad_value, dtype=np.uint8)
    canvas[:new_h, :new_w] = layer.image
    return Annotated(canvas, layer.boxes, layer.labels), (canvas_w, canvas_h)


def mixup(
    base: Annotated,
    other: Annotated,
    rng: np.random.Generator,
    *,
    scale_range: tuple[float, float] = (0.5, 1.5),
    pad_value: int = 114,
    min_box_size: float = 2.0,
) -> Annotated:
    """Blend ``other`` 50/50 over ``base`` and take both sets of boxes.

    ``other`` is fitted to ``base``'s size keeping its aspect ratio, zoomed by
    ``U(*scale_range)``, flipped with probability 0.5, and a random ``base``-sized window of
    it is used; its boxes are shifted, clipped, and dropped if the window cut them to slivers.
    """
    out_h, out_w = base.image.shape[:2]
    jitter = float(rng.uniform(*scale_range))
    flip = bool(rng.random() < 0.5)
    layer, (canvas_w, canvas_h) = _jittered_layer(other, (out_h, out_w), jitter, flip, pad_value)
    x_off = int(rng.integers(0, canvas_w - out_w + 1))
    y_off = int(rng.integers(0, canvas_h - out_h + 1))
    window = layer.image[y_off : y_off + out_h, x_off : x_off + out_w]
    shift = np.array([x_off, y_off, x_off, y_off], dtype=np.float32)
    moved = Annotated(window, clip_boxes(layer.boxes - shift, out_w, out_h), layer.labels)
    moved = drop_small(moved, min_box_size)
    blended = (base.image.astype(np.uint16) + window.astype(np.uint16) + 1) // 2
    return Annotated(
        blended.astype(np.uint8),
        np.concatenate([base.boxes, moved.boxes]),
        np.concatenate([base.labels, moved.labels]),
    )
