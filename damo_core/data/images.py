"""Decoding image files to 8-bit RGB: the one place every reader, predictor and server goes.

Why one place: images reach the project through datasets, ``damo predict``, ``damo infer`` and
Triton's preprocess model, and each used to call PIL its own way. Three things must hold for
all of them. A file that is not an image (truncated, empty, text, a directory) is one error
naming it, not a decoder traceback. An image that is absurdly large for a detector is refused
from its header, before its pixels are decoded, so one 12000×12000 PNG cannot cost seconds of
CPU and a gigabyte of memory on a shared server. And 16-bit or float images are rescaled to
8 bits instead of being clipped (PIL's ``convert("RGB")`` saturates a 16-bit greyscale image to
almost pure white).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from damo_core.errors import InputNotFoundError, UserInputError

# 64 megapixels: above any camera or 8K frame a detector is fed (8K UHD is 33 MP), far below
# PIL's own decompression-bomb limit (~179 MP). Override with $DAMO_MAX_IMAGE_PIXELS.
DEFAULT_MAX_PIXELS = 64_000_000
MAX_PIXELS_ENV = "DAMO_MAX_IMAGE_PIXELS"

_T = TypeVar("_T")

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageDecodeError(UserInputError):
    """A file that cannot be used as an image; the message names it and says why."""


def max_pixels() -> int:
    """The pixel cap in force: ``$DAMO_MAX_IMAGE_PIXELS`` if set (a positive integer)."""
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise UserInputError(f"${MAX_PIXELS_ENV} must be a positive integer, got {raw!r}")
    return value


def open_rgb(source: str | Path | bytes | BinaryIO, name: str | None = None) -> Image.Image:
    """Decode ``source`` (a path, encoded bytes or a file object) to an 8-bit RGB PIL image.

    ``name`` is what errors call the input (default: the path, or "image").
    """
    return _decoded(source, name, to_rgb)


def load_rgb_array(source: str | Path | bytes | BinaryIO, name: str | None = None) -> np.ndarray:
    """:func:`open_rgb` as an ``H×W×3`` uint8 array (read-only, as NumPy gets it from PIL)."""
    return _decoded(source, name, _rgb_array)


def _rgb_array(im: Image.Image) -> np.ndarray:
    """An RGB image's pixels taken as they are: converting first would copy them once more
    (0.4 ms of a 640x480 JPEG's 2.6 ms)."""
    im.load()  # a truncated file fails here, as an OSError, not inside NumPy's conversion
    return np.asarray(im if im.mode == "RGB" else to_rgb(im))


def _decoded(source: str | Path | bytes | BinaryIO, name: str | None,
             finish: Callable[[Image.Image], _T]) -> _T:
    """``finish`` applied to the opened image, within the checks both readers share."""
    label = name or (str(source) if isinstance(source, str | Path) else "image")
    if isinstance(source, str | Path) and Path(source).is_dir():
        raise ImageDecodeError(f"{label}: is a directory, not an image file")
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    limit = max_pixels()
    over = f"over the {limit / 1e6:.0f} MP limit (set ${MAX_PIXELS_ENV} to allow more)"
    try:
        with Image.open(source) as im:
            width, height = im.size
            if width * height > limit:
                raise ImageDecodeError(
                    f"{label}: {width}x{height} is {width * height / 1e6:.0f} megapixels, {over}")
            return finish(im)
    except FileNotFoundError:
        raise InputNotFoundError(f"image file {label} does not exist") from None
    except Image.DecompressionBombError as err:  # PIL's own, far larger, limit tripped first
        raise ImageDecodeError(f"{label}: {err}; {over}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        if isinstance(err, ImageDecodeError):
            raise
        raise ImageDecodeError(f"{label}: not a decodable image ({err})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode, rescaling deep greyscale instead of clipping it."""
    if im.mode in _SIXTEEN_BIT or im.mode == "F":
        values = np.asarray(im, dtype=np.float64)
        # 16-bit integer images span 0..65535; float images are taken as 0..1 when they fit
        # in it (the usual convention), else as 0..255.
        if im.mode == "F":
            scale = 255.0 if values.size and float(np.nanmax(values)) <= 1.0 else 1.0
        else:
            scale = 255.0 / 65535.0
        grey = np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2), mode="RGB")
    return im.convert("RGB")
