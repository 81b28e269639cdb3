"""Letterbox preprocessing for inference, and its inverse for mapping boxes back.

The detector wants a square input whose side is a multiple of 32, while photos come in any
aspect ratio. Letterboxing resizes the image so its longer side fits, keeping the aspect
ratio (so objects are not distorted relative to what the model was trained on), and centres
it on a canvas filled with grey 114. Predicted boxes then live in canvas pixels;
:func:`boxes_to_original` undoes the shift and the scale so detections can be scored against
the original annotations or drawn on the original image.

This module is deliberately self-contained (the evaluator and the predictor must not depend on
the training data loader); images are RGB, returned as raw 0..255 floats because the model
normalises internally.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from damo_core.data.images import load_rgb_array, to_rgb

PAD_VALUE = 114


class LetterboxInfo(NamedTuple):
    """How an image was placed on the canvas: ``canvas = original * scale + (pad_left,
    pad_top)``. A plain tuple, so ``scale, pad_left, pad_top = info`` works."""

    scale: float
    pad_left: int
    pad_top: int


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to an ``H×W×3`` uint8 RGB array (grey, RGBA and 16-bit images are
    converted; unreadable or oversized files are an :class:`ImageDecodeError` naming them)."""
    return load_rgb_array(path)


def letterbox(
    image: np.ndarray | Image.Image, size: int, pad_value: int = PAD_VALUE
) -> tuple[Tensor, LetterboxInfo]:
    """Resize ``image`` (``H×W×3`` uint8 RGB) to fit ``size×size`` and pad the rest.

    Returns a ``[3, size, size]`` float32 tensor of raw 0..255 values and the
    :class:`LetterboxInfo` needed to map boxes back.
    """
    if size <= 0:
        raise ValueError(f"letterbox size must be positive, got {size}")
    pil = to_rgb(image) if isinstance(image, Image.Image) else _to_pil(image)
    w, h = pil.size
    scale = size / max(h, w)
    new_w = min(size, max(1, round(w * scale)))
    new_h = min(size, max(1, round(h * scale)))
    if (new_w, new_h) != (w, h):
        pil = pil.resize((new_w, new_h), Image.Resampling.BILINEAR)
    pad_left, pad_top = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.full((size, size, 3), pad_value, dtype=np.uint8)
    canvas[pad_top : pad_top + new_h, pad_left : pad_left + new_w] = np.asarray(pil)
    tensor = torch.from_numpy(canvas).permute(2, 0, 1).float().contiguous()
    return tensor, LetterboxInfo(scale, pad_left, pad_top)


def _to_pil(array: np.ndarray) -> Image.Image:
    """Check the array layout up front: a transposed ``3×H×W`` array would otherwise be
    letterboxed as a 3-pixel-tall image and silently produce garbage detections."""
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image array, got shape {array.shape}")
    return Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="RGB")


def boxes_to_letterbox(boxes: Tensor, info: LetterboxInfo) -> Tensor:
    """Map xyxy boxes from original-image pixels to canvas pixels (the forward transform)."""
    scale, pad_left, pad_top = info
    offset = boxes.new_tensor([pad_left, pad_top, pad_left, pad_top])
    return boxes * scale + offset


def boxes_to_original(
    boxes: Tensor, info: LetterboxInfo, orig_size: tuple[int, int], *, clip: bool = True
) -> Tensor:
    """Map xyxy boxes from canvas pixels back to the original image (``orig_size = (h, w)``).

    With ``clip`` the boxes are clamped to the image: parts predicted over the grey padding
    are not part of any object, and COCO annotations never extend past the image either.
    """
    scale, pad_left, pad_top = info
    offset = boxes.new_tensor([pad_left, pad_top, pad_left, pad_top])
    out = (boxes - offset) / scale
    if clip:
        h, w = orig_size
        out = torch.stack(
            [
                out[..., 0].clamp(0, w),
                out[..., 1].clamp(0, h),
                out[..., 2].clamp(0, w),
                out[..., 3].clamp(0, h),
            ],
            dim=-1,
        )
    return out


@dataclass(frozen=True)
class PreparedImage:
    """A letterboxed image plus what is needed to map its detections back."""

    tensor: Tensor  # [3, S, S] float32, raw 0..255
    info: LetterboxInfo
    orig_size: tuple[int, int]  # (h, w) of the original image


def prepare_image(image: np.ndarray, size: int) -> PreparedImage:
    """Letterbox one ``H×W×3`` RGB array; cheap enough to run in a worker thread."""
    tensor, info = letterbox(image, size)
    return PreparedImage(tensor, info, (int(image.shape[0]), int(image.shape[1])))
