"""What the format modules share: the missing-backend error, file naming, calibration images,
and the default score threshold an export records for its model.

Kept apart from :mod:`damo_core.export.formats` so that format modules can import it without
a cycle (``formats`` imports every format module).
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from damo_core.data.fit import FitMode
from damo_core.errors import UnavailableError, UserInputError
from damo_core.eval.preprocess import prepare_image
from damo_core.models import Detector

INPUT_NAME = "images"
# Metadata key (and Triton parameter) of the score threshold a model is used at by default: the
# best-F1 confidence its training measured on the val split, as ``damo predict`` defaults to.
DEFAULT_THRESHOLD_KEY = "default_score_threshold"
_THRESHOLD_ATTR = DEFAULT_THRESHOLD_KEY  # where a model loaded for export carries it


class BackendUnavailableError(UnavailableError):
    """An export or runtime backend cannot run on this machine (package or GPU missing).

    A ``RuntimeError`` rather than a ``ValueError``: the request is valid, the machine is not.
    The message always says what is missing and how to get it.
    """


def require(module: str, package: str, purpose: str) -> ModuleType:
    """Import an optional backend, or fail with the pip command that fixes it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise BackendUnavailableError(
            f"{purpose} needs the '{package}' package, which is not installed "
            f"({err}); install it with: pip install {package}"
        ) from None


def output_stem(model: Detector, image_size: int, *, end2end: bool = False,
                precision: str = "fp32") -> str:
    """``damoyolo_s_640_fp32`` (+ ``_e2e``): the name says what is inside the file."""
    stem = f"{model.name}_{image_size}_{precision}"
    return f"{stem}_e2e" if end2end else stem


def check_image_size(image_size: int) -> int:
    if image_size <= 0 or image_size % 32:
        raise UserInputError(f"image_size must be a positive multiple of 32, got {image_size}")
    return image_size


def calibration_images(data: str | Path, image_size: int, *, fit: FitMode, count: int = 300,
                       split: str = "train") -> list[np.ndarray]:
    """Up to ``count`` fitted images ``[1, 3, S, S]`` float32 (raw 0..255) for INT8 PTQ.

    Images are preprocessed exactly as at inference (``fit``, the model's own mode, to
    ``image_size``), because the quantiser picks activation ranges from them; a different
    resize would pick wrong ranges. They are the first ``count`` images of ``split`` of
    ``data`` (any dataset training accepts, read through its manifest), in manifest order, so
    that calibration is reproducible.
    """
    from damo_core.data.resolve import open_split

    if count <= 0:
        raise UserInputError(f"calibration count must be positive, got {count}")
    dataset = open_split(data, split)
    return [prepare_image(dataset[i].image, image_size, fit).tensor.unsqueeze(0).numpy()
            for i in range(min(count, len(dataset)))]


def score_threshold_or_none(value: Any) -> float | None:
    """``value`` (a number or its text) as a score threshold in [0, 1], else ``None``.

    A recorded default travels through files and servers this code did not write (a foreign
    deployment, an edited config), so it is only used when it is a real threshold: NaN would
    keep nothing (every comparison with it is false), and a value outside [0, 1] is no
    threshold at all; neither is clipped into one.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and 0.0 <= number <= 1.0 else None


def set_default_threshold(model: Detector, threshold: float | None) -> None:
    """Record on ``model`` the score threshold it is used at by default (``None``: none was
    measured). Like the input fit (:func:`damo_core.data.fit.set_model_fit`) it travels with
    the model object, through the exporters' deep copy, to the metadata they embed, so every
    format records it without an extra option on each exporter."""
    setattr(model, _THRESHOLD_ATTR, score_threshold_or_none(threshold))


def model_default_threshold(model: Detector) -> float | None:
    """The default score threshold recorded on ``model`` (by :func:`set_default_threshold`),
    or ``None`` for a model that has none (reference weights, random init)."""
    return score_threshold_or_none(getattr(model, _THRESHOLD_ATTR, None))
