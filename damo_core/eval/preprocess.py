"""Inference inputs: decode an image, fit it to the network input the way the model was
trained, and keep the :class:`~damo_core.data.fit.Placement` that maps detections back.

The fit itself (letterbox or stretch, rounding, padding) is :func:`damo_core.data.fit.fit_planes`,
which the training loader (through ``fit_image``), INT8 calibration and Triton's preprocess
model call too; here it writes the float planes the detector takes directly. Images are RGB,
returned as raw 0..255 floats because the model normalises internally.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from damo_core.data.fit import LEGACY_FIT, FitMode, Placement, fit_planes
from damo_core.data.images import load_rgb_array

__all__ = ["PreparedImage", "load_image", "prepare_image"]


def load_image(path: str | Path) -> np.ndarray:
    """Decode an image file to an ``H×W×3`` uint8 RGB array (grey, RGBA and 16-bit images are
    converted; unreadable or oversized files are an :class:`ImageDecodeError` naming them)."""
    return load_rgb_array(path)


@dataclass(frozen=True)
class PreparedImage:
    """A fitted image plus what is needed to map its detections back."""

    tensor: Tensor  # [3, S, S] float32, raw 0..255
    placement: Placement

    @property
    def orig_size(self) -> tuple[int, int]:
        """``(h, w)`` of the original image."""
        return self.placement.orig_size


def prepare_image(image: np.ndarray, size: int, fit: FitMode = LEGACY_FIT) -> PreparedImage:
    """Fit one ``H×W×3`` RGB array into a ``size`` input by ``fit``; cheap enough to run in a
    worker thread. ``fit`` defaults to the mode of models that never recorded one."""
    planes, placement = fit_planes(image, size, fit, dtype=torch.float32)
    return PreparedImage(planes, placement)
