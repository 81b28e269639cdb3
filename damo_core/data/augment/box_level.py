"""Scale-aware box-level augmentation (SADA, as used by DAMO-YOLO after mosaic/mixup).

Why per box, and why scale-aware: image-level ops treat every object alike, but small and
large objects need different amounts of augmentation. Here each box is picked with a
probability that depends on its area bucket, and the op's effect is confined to a soft
Gaussian region around the picked box whose size also depends on the bucket (small boxes get
some surrounding context augmented, large ones only their core). Two stages run in order,
each firing on an image with probability ``box_image_prob``:

* colour: one photometric op (brightness, contrast, colour saturation, solarize-add or
  autocontrast) computed on the image and blended in through the summed Gaussian masks;
* geometric: each picked box's content is mirrored or slightly rotated inside the box and
  blended back with a centred Gaussian, so the object stays within its (unchanged) box.

Area buckets use ``scale_splits`` defined for an 800-pixel short side (the reference's
convention) and rescaled to the actual image: ``area < s0``, ``< s1``, else. Boxes are never
changed, so only the image is returned.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from PIL import Image

from damo_core.data.augment.config import AugmentConfig
from damo_core.data.augment.geometric import areas

__all__ = [
    "COLOR_OPS",
    "GEOMETRIC_OPS",
    "apply_color_op",
    "box_level_augment",
    "box_sample_probs",
    "scale_buckets",
]

COLOR_OPS: tuple[str, ...] = ("brightness", "contrast", "color", "solarize_add", "autocontrast")
GEOMETRIC_OPS: tuple[str, ...] = ("hflip", "rotate")
_SPLIT_REFERENCE_SIDE = 800.0
_GRAY = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)


def _scaled_splits(splits: tuple[float, ...], image_hw: tuple[int, int]) -> np.ndarray:
    return np.asarray(splits, dtype=np.float64) * (min(image_hw) / _SPLIT_REFERENCE_SIDE)


def scale_buckets(
    boxes: np.ndarray, image_hw: tuple[int, int], splits: tuple[float, ...]
) -> np.ndarray:
    """Bucket 0 (small), 1 (medium) or 2 (large) per box, by area against the first two
    rescaled splits."""
    return np.searchsorted(_scaled_splits(splits, image_hw)[:2], areas(boxes), side="right")


def box_sample_probs(
    boxes: np.ndarray,
    image_hw: tuple[int, int],
    splits: tuple[float, ...],
    ratios: tuple[float, ...],
    box_prob: float,
) -> np.ndarray:
    """Per-box pick probability ``box_prob * ratios[bucket] / sum(ratios)``; 0 for empty boxes."""
    weights = np.asarray(ratios, dtype=np.float64) / float(sum(ratios))
    probs = box_prob * weights[scale_buckets(boxes, image_hw, splits)]
    probs[areas(boxes) <= 0] = 0.0
    return probs


def apply_color_op(image: np.ndarray, op: str, rng: np.random.Generator) -> np.ndarray:
    """One photometric op on a float32 HxWx3 image in 0..255; magnitudes are random."""
    if op == "brightness":
        out = image * rng.uniform(0.1, 1.9)
    elif op == "contrast":
        mean = float((image @ _GRAY).mean())
        out = mean + (image - mean) * rng.uniform(0.1, 1.9)
    elif op == "color":
        gray = (image @ _GRAY)[..., None]
        out = gray + (image - gray) * rng.uniform(0.1, 1.9)
    elif op == "solarize_add":
        out = np.where(image <= 128.0, image + rng.uniform(0.0, 110.0), image)
    elif op == "autocontrast":
        lo, hi = image.min(axis=(0, 1)), image.max(axis=(0, 1))
        span = np.where(hi > lo, hi - lo, 1.0)
        out = np.where(hi > lo, (image - lo) * (255.0 / span), image)
    else:
        raise ValueError(f"unknown colour op {op!r}; known: {COLOR_OPS}")
    return np.clip(out, 0.0, 255.0).astype(np.float32)


def _gaussian(length: int, centre: float, sigma: float) -> np.ndarray:
    """1-D Gaussian over pixel centres ``0.5 .. length - 0.5``, peak 1 at ``centre``."""
    x = np.arange(length, dtype=np.float32) + 0.5
    return np.exp(-0.5 * ((x - centre) / max(sigma, 1e-3)) ** 2)


class _Blob(NamedTuple):
    """A separable Gaussian restricted to its 3-sigma window ``[y0:y1, x0:x1]``."""

    y0: int
    y1: int
    x0: int
    x1: int
    gy: np.ndarray
    gx: np.ndarray


def _blob(box: np.ndarray, sigma: np.ndarray, hw: tuple[int, int]) -> _Blob | None:
    """Gaussian centred on ``box`` with per-axis ``sigma``, clipped to the image; ``None`` if
    its window misses the image."""
    h, w = hw
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2
    sx, sy = float(sigma[0]), float(sigma[1])
    x0, x1 = max(0, int(cx - 3 * sx)), min(w, math.ceil(cx + 3 * sx))
    y0, y1 = max(0, int(cy - 3 * sy)), min(h, math.ceil(cy + 3 * sy))
    if x1 <= x0 or y1 <= y0:
        return None
    return _Blob(y0, y1, x0, x1, _gaussian(y1 - y0, cy - y0, sy), _gaussian(x1 - x0, cx - x0, sx))


def _blob_sigmas(boxes: np.ndarray, image_hw: tuple[int, int], cfg: AugmentConfig) -> np.ndarray:
    """Per-box Gaussian sigmas ``[N, 2]`` whose volume ``2*pi*sx*sy`` equals a target area:
    ``box_blend_areas[bucket]`` times the bucket's reference area (``s0``, ``(s0+s1)/2``,
    ``s2``; a box larger than ``s2`` is its own reference). The shape follows the box."""
    splits = _scaled_splits(cfg.scale_splits, image_hw)
    box_area = np.maximum(areas(boxes).astype(np.float64), 1e-6)
    buckets = scale_buckets(boxes, image_hw, cfg.scale_splits)
    reference = np.array([splits[0], (splits[0] + splits[1]) / 2, splits[2]])[buckets]
    reference = np.where(box_area >= splits[2], box_area, reference)
    target = np.asarray(cfg.box_blend_areas)[buckets] * reference
    k = np.sqrt(target / box_area) / math.sqrt(2 * math.pi)
    return (boxes[:, 2:] - boxes[:, :2]) * k[:, None]


def _color_stage(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> np.ndarray:
    """Blend one colour op into the image around the picked boxes.

    The op and the blend only touch the union of the blobs' windows, which keeps the cost
    proportional to the augmented area rather than the image.
    """
    hw = image.shape[:2]
    op = COLOR_OPS[int(rng.integers(len(COLOR_OPS)))]
    probs = box_sample_probs(boxes, hw, cfg.scale_splits, cfg.box_color_ratios, cfg.box_prob)
    picked = boxes[rng.random(len(boxes)) < probs]
    sigmas = _blob_sigmas(picked, hw, cfg)
    blobs = [b for b in map(_blob, picked, sigmas, [hw] * len(picked)) if b is not None]
    if not blobs:
        return image
    y0, y1 = min(b.y0 for b in blobs), max(b.y1 for b in blobs)
    x0, x1 = min(b.x0 for b in blobs), max(b.x1 for b in blobs)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    for b in blobs:
        mask[b.y0 - y0 : b.y1 - y0, b.x0 - x0 : b.x1 - x0] += b.gy[:, None] * b.gx[None, :]
    np.minimum(mask, 1.0, out=mask)
    region = image[y0:y1, x0:x1].astype(np.float32)
    blended = region + mask[..., None] * (apply_color_op(region, op, rng) - region)
    out = image.copy()
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def _moved_content(
    crop: np.ndarray, op: str, rng: np.random.Generator, cfg: AugmentConfig
) -> np.ndarray:
    """The crop mirrored, or rotated about its centre by ``U(+-box_rotate_degrees)``."""
    if op == "hflip":
        return crop[:, ::-1]
    angle = float(rng.uniform(-cfg.box_rotate_degrees, cfg.box_rotate_degrees))
    rotated = Image.fromarray(np.ascontiguousarray(crop)).rotate(
        angle, resample=Image.Resampling.BILINEAR, fillcolor=(cfg.pad_value,) * 3
    )
    return np.asarray(rotated)


def _geometric_stage(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> np.ndarray:
    """Mirror or rotate the content of each picked box in place, feathered at the edges."""
    hw = image.shape[:2]
    op = GEOMETRIC_OPS[int(rng.integers(len(GEOMETRIC_OPS)))]
    probs = box_sample_probs(boxes, hw, cfg.scale_splits, cfg.box_geometric_ratios, cfg.box_prob)
    picked = np.flatnonzero(rng.random(len(boxes)) < probs)
    if not len(picked):
        return image
    out = image.copy()
    for i in picked:
        x0, y0 = (max(0, int(v)) for v in boxes[i, :2])
        x1, y1 = min(hw[1], math.ceil(boxes[i, 2])), min(hw[0], math.ceil(boxes[i, 3]))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        crop = out[y0:y1, x0:x1].astype(np.float32)
        moved = _moved_content(out[y0:y1, x0:x1], op, rng, cfg).astype(np.float32)
        bw, bh = x1 - x0, y1 - y0
        k = 1.0 / math.sqrt(2 * math.pi)  # unit-volume-per-box-area sigma, as in the colour stage
        weight = _gaussian(bh, bh / 2, bh * k)[:, None] * _gaussian(bw, bw / 2, bw * k)[None, :]
        blended = crop + weight[..., None] * (moved - crop)
        out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def box_level_augment(
    image: np.ndarray,
    boxes: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    strength: float = 1.0,
) -> np.ndarray:
    """Colour stage then geometric stage, each firing with ``cfg.box_image_prob * strength``
    (``strength`` ramps the augmentation in over the first epochs, see the loader).

    Returns the (possibly) augmented uint8 image; ``boxes`` stay valid unchanged.
    """
    if not cfg.box_level or len(boxes) == 0:
        return image
    fire = cfg.box_image_prob * strength
    if rng.random() < fire:
        image = _color_stage(image, boxes, rng, cfg)
    if rng.random() < fire:
        image = _geometric_stage(image, boxes, rng, cfg)
    return image
