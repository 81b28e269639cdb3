"""Geometric transforms of an image together with its boxes: fit to the input, affine, flip.

Fitting to the network input (letterbox or stretch) is :mod:`damo_core.data.fit`, shared with
evaluation and serving; :func:`fit_sample` only carries the boxes along.

Coordinate convention: boxes are float32 ``[N, 4]`` xyxy in *continuous* pixel coordinates,
pixel ``i`` covering ``[i, i + 1)``. The resize (:func:`damo_core.data.fit.resample`) and
Pillow's affine warp sample in exactly this convention, so a box maps through the very matrix
that warps the image and stays aligned with its object to sub-pixel accuracy (OpenCV's warp
is centred on integers instead, which would shift every box by half a pixel per transform).
Images are HxWx3 uint8 RGB throughout: interpolating in uint8 keeps the per-sample cost low,
and the network converts to float once.

Every random op takes an explicit ``np.random.Generator`` so a (seed, epoch, index) triple
reproduces a sample exactly, whichever DataLoader worker builds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from damo_core.data.fit import PAD_VALUE, FitMode, Placement, fit_image, resample
from damo_core.errors import UserInputError
from damo_core.models.layers.box_ops import box_area

__all__ = [
    "Annotated",
    "Placement",
    "affine_matrix",
    "areas",
    "clip_boxes",
    "drop_small",
    "fit_sample",
    "hflip",
    "random_affine",
    "random_hflip",
    "resample",
    "transform_boxes",
    "warp_affine",
]


@dataclass
class Annotated:
    """An image with its boxes and labels; ops take one and return a new one (no mutation)."""

    image: np.ndarray  # HxWx3 uint8 RGB
    boxes: np.ndarray  # float32 [N, 4] xyxy
    labels: np.ndarray  # int64 [N]

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.boxes) != len(self.labels):
            raise UserInputError(f"{len(self.boxes)} boxes but {len(self.labels)} labels")

    def select(self, keep: np.ndarray) -> Annotated:
        """Keep the boxes (and labels) where the boolean mask or index array says so."""
        return Annotated(self.image, self.boxes[keep], self.labels[keep])


def areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``[N, 4]`` numpy boxes, via the package's single box-math module."""
    return box_area(torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32))).numpy()


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip xyxy boxes to ``[0, width] x [0, height]`` (returns a new array)."""
    out = boxes.copy()
    np.clip(out[:, 0::2], 0.0, width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0.0, height, out=out[:, 1::2])
    return out


def drop_small(sample: Annotated, min_size: float = 0.0) -> Annotated:
    """Drop boxes whose width or height is not above ``min_size`` (0: only degenerate ones)."""
    wh = sample.boxes[:, 2:] - sample.boxes[:, :2]
    return sample.select((wh > min_size).all(axis=1))


def fit_sample(
    sample: Annotated, size: int, fit: FitMode, pad_value: int = PAD_VALUE
) -> tuple[Annotated, Placement]:
    """:func:`~damo_core.data.fit.fit_image` with the boxes carried along: the training
    loader's resize is the very function evaluation, prediction and serving use."""
    image, placement = fit_image(sample.image, size, fit, pad_value)
    return Annotated(image, placement.to_input(sample.boxes), sample.labels), placement


def hflip(sample: Annotated) -> Annotated:
    """Mirror left-right; ``x -> W - x`` swaps each box's left and right edges."""
    w = sample.image.shape[1]
    boxes = sample.boxes[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], dtype=np.float32)
    boxes += np.array([w, 0, w, 0], dtype=np.float32)
    return Annotated(np.ascontiguousarray(sample.image[:, ::-1]), boxes, sample.labels)


def random_hflip(sample: Annotated, rng: np.random.Generator, prob: float) -> Annotated:
    """Flip with probability ``prob`` (one draw from ``rng`` either way)."""
    return hflip(sample) if rng.random() < prob else sample


def affine_matrix(
    rng: np.random.Generator,
    in_hw: tuple[int, int],
    out_size: int,
    *,
    degrees: float,
    translate: float,
    scale_range: tuple[float, float],
    shear: float,
) -> tuple[np.ndarray, float]:
    """Random 3x3 forward matrix (input -> output pixels) and its isotropic scale.

    Composition, applied right to left: move the input centre to the origin, rotate by
    ``U(-degrees, degrees)`` and zoom by ``U(*scale_range)``, shear both axes by
    ``U(-shear, shear)`` degrees, then put the origin at ``U(0.5 +- translate) * out_size``.
    """
    h, w = in_hw
    centre = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], dtype=np.float64)
    angle = np.deg2rad(rng.uniform(-degrees, degrees))
    scale = float(rng.uniform(*scale_range))
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    rotate = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]], dtype=np.float64)
    shear_x, shear_y = np.tan(np.deg2rad(rng.uniform(-shear, shear, size=2)))
    skew = np.array([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]], dtype=np.float64)
    tx, ty = rng.uniform(0.5 - translate, 0.5 + translate, size=2) * out_size
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)
    return shift @ skew @ rotate @ centre, scale


def warp_affine(image: np.ndarray, matrix: np.ndarray, out_size: int, pad_value: int) -> np.ndarray:
    """Warp by the forward ``matrix`` into ``out_size x out_size``, filling with ``pad_value``.

    Pillow wants the output -> input map, hence the inverse.
    """
    inverse = np.linalg.inv(matrix)
    coeffs = tuple(float(v) for v in inverse[:2].ravel())
    warped = Image.fromarray(image).transform(
        (out_size, out_size),
        Image.Transform.AFFINE,
        data=coeffs,
        resample=Image.Resampling.BILINEAR,
        fillcolor=(pad_value,) * 3,
    )
    return np.asarray(warped)


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Axis-aligned bounds of each box's four corners mapped through ``matrix``.

    For an axis-aligned rectangle under rotation/shear this is exactly the tight box of the
    transformed rectangle, so a solid object keeps a tight box.
    """
    n = len(boxes)
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(n * 4, 2).astype(np.float64)
    mapped = corners @ matrix[:2, :2].T + matrix[:2, 2]
    mapped = mapped.reshape(n, 4, 2)
    return np.concatenate([mapped.min(axis=1), mapped.max(axis=1)], axis=1).astype(np.float32)


def _box_candidates(
    before: np.ndarray,
    after: np.ndarray,
    *,
    min_size: float,
    min_area_ratio: float,
    max_aspect_ratio: float,
) -> np.ndarray:
    """Mask of boxes still worth training on after a crop: not thinner than ``min_size``,
    keeping at least ``min_area_ratio`` of their (zoomed) area, and not a sliver."""
    eps = 1e-6
    wh = after[:, 2:] - after[:, :2]
    aspect = np.maximum(wh[:, 0] / (wh[:, 1] + eps), wh[:, 1] / (wh[:, 0] + eps))
    kept_fraction = areas(after) / (areas(before) + eps)
    return (
        (wh > min_size).all(axis=1) & (kept_fraction > min_area_ratio) & (aspect < max_aspect_ratio)
    )


def random_affine(
    sample: Annotated,
    rng: np.random.Generator,
    out_size: int,
    *,
    degrees: float = 10.0,
    translate: float = 0.2,
    scale_range: tuple[float, float] = (0.1, 2.0),
    shear: float = 2.0,
    pad_value: int = 114,
    min_box_size: float = 2.0,
    min_area_ratio: float = 0.1,
    max_aspect_ratio: float = 20.0,
) -> Annotated:
    """Rotate/zoom/shear/translate into an ``out_size`` square; clip boxes and drop the ones
    the crop reduced to slivers (see :func:`_box_candidates`). Defaults are the reference's."""
    matrix, scale = affine_matrix(
        rng,
        sample.image.shape[:2],
        out_size,
        degrees=degrees,
        translate=translate,
        scale_range=scale_range,
        shear=shear,
    )
    image = warp_affine(sample.image, matrix, out_size, pad_value)
    boxes = clip_boxes(transform_boxes(sample.boxes, matrix), out_size, out_size)
    keep = _box_candidates(
        sample.boxes * scale,
        boxes,
        min_size=min_box_size,
        min_area_ratio=min_area_ratio,
        max_aspect_ratio=max_aspect_ratio,
    )
    return Annotated(image, boxes[keep], sample.labels[keep])
