"""The one way an image becomes a network input, and the exact inverse for its boxes.

Why one function: a detector learns the geometry it is trained on. If training stretches
images while evaluation, prediction, INT8 calibration or Triton letterbox them (or round the
scaled size, split the padding or clip differently), every non-square image is seen
distorted at inference and the reported AP describes a different model than the one served.
So every consumer calls :func:`fit_image` with the mode the model was trained with, and maps
boxes with the :class:`Placement` it returns.

Modes (:data:`FIT_MODES`):

* ``letterbox``: the longer side is scaled to the input side, keeping the aspect ratio, and
  the content is centred on a ``pad_value`` canvas (``augment.keep_ratio: True``);
* ``stretch``: both sides are scaled to the input side independently, no padding
  (``augment.keep_ratio: False``, the reference recipe's default).

A :class:`Placement` holds only integers (original size, resized content size, padding), and
the per-axis scales are derived from them. So it crosses a float32 tensor (Triton's
``placement`` row, see :meth:`Placement.to_row`) exactly, and the server's inverse mapping is
bit-for-bit the one ``damo predict`` computes.

Coordinates are continuous pixels (pixel ``i`` covers ``[i, i + 1)``), which is how the resize
samples (PyTorch's bilinear without ``align_corners``, like Pillow's), so a box maps through the
same factors as the pixels it encloses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast, get_args

import numpy as np
import torch

from damo_core.errors import UserInputError

__all__ = [
    "FIT_MODES",
    "LEGACY_FIT",
    "PAD_VALUE",
    "PLACEMENT_WIDTH",
    "FitMode",
    "Placement",
    "check_fit",
    "fit_from_keep_ratio",
    "fit_image",
    "fitted_size",
    "model_fit",
    "resample",
    "set_model_fit",
]

FitMode = Literal["letterbox", "stretch"]
FIT_MODES: tuple[FitMode, ...] = get_args(FitMode)
# What a checkpoint or export without a recorded mode gets: before the mode was recorded, the
# evaluator, ``damo predict``, calibration and Triton all letterboxed, so this reproduces the
# numbers such artefacts were reported with.
LEGACY_FIT: FitMode = "letterbox"
PAD_VALUE = 114
PLACEMENT_WIDTH = 6  # length of Placement.to_row()
_MODEL_ATTR = "input_fit"  # where a loaded model carries its mode (see model_fit)

Boxes = TypeVar("Boxes", torch.Tensor, np.ndarray)


def check_fit(value: object) -> FitMode:
    """``value`` as a :data:`FitMode`, or a one-line error naming the valid modes."""
    if value not in FIT_MODES:
        raise UserInputError(f"unknown image fit {value!r}; expected one of {list(FIT_MODES)}")
    return cast(FitMode, value)


def fit_from_keep_ratio(keep_ratio: bool) -> FitMode:
    """The mode a training config's ``augment.keep_ratio`` selects."""
    return "letterbox" if keep_ratio else "stretch"


def model_fit(model: object, fit: str | None = None) -> FitMode:
    """``fit`` if given, else the mode recorded on ``model`` (set when it was trained or loaded
    from a checkpoint), else :data:`LEGACY_FIT` for models that never had one (zoo models)."""
    return check_fit(fit if fit is not None else getattr(model, _MODEL_ATTR, LEGACY_FIT))


def set_model_fit(model: Any, fit: str) -> None:
    """Record on ``model`` the mode its inputs must be fitted with; it travels with the model
    object (``fuse``, ``deepcopy``, EMA) to every consumer that only receives the model."""
    setattr(model, _MODEL_ATTR, check_fit(fit))


@dataclass(frozen=True)
class Placement:
    """Where an original image sits in the ``size x size`` input:
    ``x_in = x_orig * sx + pad_left`` with ``sx = content_w / orig_w`` (same for y)."""

    orig_size: tuple[int, int]  # (h, w) of the original image
    content_size: tuple[int, int]  # (h, w) it was resized to inside the input
    pad: tuple[int, int] = (0, 0)  # (left, top)

    @classmethod
    def identity(cls, size: int) -> Placement:
        """An input that is its own original (a mosaic, a pre-fitted canvas)."""
        return cls((size, size), (size, size))

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)``, realised from the rounded content size, not the nominal ratio, so boxes
        land on the resized pixels exactly."""
        (h, w), (ch, cw) = self.orig_size, self.content_size
        return cw / w, ch / h

    def to_row(self) -> list[float]:
        """``[orig_h, orig_w, content_h, content_w, pad_left, pad_top]``: integers, exact in
        float32, so a tensor round trip (Triton) loses nothing."""
        return [float(v) for v in (*self.orig_size, *self.content_size, *self.pad)]

    @classmethod
    def from_row(cls, row: Any) -> Placement:
        """Inverse of :meth:`to_row`."""
        values = [int(round(float(v))) for v in row]
        if len(values) != PLACEMENT_WIDTH or min(values[:4]) <= 0:
            raise UserInputError(f"a placement row is [orig_h, orig_w, content_h, content_w, "
                             f"pad_left, pad_top] with positive sizes, got {list(row)}")
        oh, ow, ch, cw, left, top = values
        return cls((oh, ow), (ch, cw), (left, top))

    def _factors(self) -> tuple[list[float], list[float]]:
        sx, sy = self.scale
        left, top = self.pad
        return [sx, sy, sx, sy], [left, top, left, top]

    def to_input(self, boxes: Boxes) -> Boxes:
        """Map ``[..., 4]`` xyxy boxes from original pixels to input pixels."""
        factor, offset = self._factors()
        return boxes * _like(boxes, factor) + _like(boxes, offset)

    def to_original(self, boxes: Boxes, *, clip: bool = True) -> Boxes:
        """Map ``[..., 4]`` xyxy boxes from input pixels back to the original image; with
        ``clip`` they are clamped to it (predictions may spill into the padding, and ground
        truth never extends past the image)."""
        factor, offset = self._factors()
        out = (boxes - _like(boxes, offset)) / _like(boxes, factor)
        if not clip:
            return out
        h, w = self.orig_size
        limit = _like(out, [w, h, w, h])
        if isinstance(out, torch.Tensor):
            return torch.minimum(out.clamp(min=0), limit)
        return np.clip(out, 0, limit)


def _like(boxes: Boxes, values: list[float]) -> Boxes:
    """``values`` as an array of the kind, dtype (and device) of ``boxes``; integer numpy
    boxes compute in float32 so a scale of 0.5 is not truncated away."""
    if isinstance(boxes, torch.Tensor):
        return boxes.new_tensor(values)
    dtype = boxes.dtype if np.issubdtype(boxes.dtype, np.floating) else np.float32
    return np.asarray(values, dtype=dtype)


def fitted_size(orig_size: tuple[int, int], size: int, fit: FitMode) -> tuple[int, int]:
    """``(h, w)`` an ``orig_size`` image is resized to for a ``size`` input: the whole input
    when stretching; the longer side at ``size`` (the other rounded, at least 1) otherwise."""
    if size <= 0:
        raise UserInputError(f"input size must be positive, got {size}")
    if check_fit(fit) == "stretch":
        return size, size
    h, w = orig_size
    ratio = size / max(h, w)
    return min(size, max(1, round(h * ratio))), min(size, max(1, round(w * ratio)))


def resample(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of an ``HxWx3`` uint8 array, anti-aliased when shrinking (an ``HxWx3``
    view of :func:`_resampled_planes`; it may not be C-contiguous)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return _resampled_planes(image, width, height).permute(1, 2, 0).numpy()


def _resampled_planes(image: np.ndarray, width: int, height: int) -> torch.Tensor:
    """``image`` (``HxWx3`` uint8) resized to ``[3, height, width]`` uint8 planes.

    PyTorch's uint8 anti-aliased bilinear kernel computes Pillow's ``BILINEAR`` filter (the
    resize this project used before) to within 1 of 255 (rounding: 0.2-0.6 % of the pixels
    differ when shrinking a photo, up to a quarter where an axis is enlarged), and, fed the
    array's own channels-last layout, takes its vectorised path: 0.54 against 2.02 ms for
    640x480 to 416x312 (2-core Xeon; ``benchmarks/predict_path.py`` times the whole
    prediction path).
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if not image.flags.writeable:  # Pillow's arrays are read-only, which torch warns about
        image = image.copy()
    planes = torch.from_numpy(image).permute(2, 0, 1)
    if image.shape[1] == width and image.shape[0] == height:
        return planes
    return torch.nn.functional.interpolate(planes[None], size=(height, width), mode="bilinear",
                                           antialias=True, align_corners=False)[0]


def fit_planes(
    image: np.ndarray, size: int, fit: FitMode, pad_value: int = PAD_VALUE,
    dtype: torch.dtype = torch.uint8,
) -> tuple[torch.Tensor, Placement]:
    """Fit an ``HxWx3`` uint8 RGB array into contiguous ``[3, size, size]`` planes of
    ``dtype`` by ``fit``: what a network takes, built in one pass (a float input needs no
    separate transpose and conversion of an ``HxWx3`` canvas).

    Letterbox padding is split ``(size - content) // 2`` before and the rest after, so an odd
    remainder goes to the right/bottom. Returns the planes and the :class:`Placement` that
    maps boxes both ways.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise UserInputError(f"expected an HxWx3 RGB image array, got shape {image.shape}")
    orig = (int(image.shape[0]), int(image.shape[1]))
    ch, cw = fitted_size(orig, size, fit)
    content = _resampled_planes(image, cw, ch)
    left, top = (size - cw) // 2, (size - ch) // 2
    canvas = torch.empty((3, size, size), dtype=dtype)
    if (ch, cw) == (size, size):
        return canvas.copy_(content), Placement(orig, (ch, cw))
    canvas.fill_(pad_value)
    canvas[:, top : top + ch, left : left + cw] = content
    return canvas, Placement(orig, (ch, cw), (left, top))


def fit_image(
    image: np.ndarray, size: int, fit: FitMode, pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, Placement]:
    """:func:`fit_planes` as a contiguous ``size x size x 3`` uint8 array (the layout the
    training augmentations work in)."""
    planes, placement = fit_planes(image, size, fit, pad_value)
    return np.ascontiguousarray(planes.permute(1, 2, 0).numpy()), placement
