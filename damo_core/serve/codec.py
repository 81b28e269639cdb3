"""Encoded image bytes in and out: what travels in the ensemble's ``IMAGE`` tensor.

Files are sent as their own bytes (:func:`read_image_bytes`); pictures that exist only in
memory, such as a video's decoded frames, are encoded first (:func:`encode_image`).

Decoding goes through the project's one decoder (:mod:`damo_core.data.images`: RGB and 16-bit
conversion, the pixel cap read from the header), so the server decodes exactly as ``damo
predict`` reads files and refuses an oversized image before spending time on its pixels.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from damo_core.data.images import ImageDecodeError, load_rgb_array
from damo_core.errors import InputNotFoundError, UserInputError
from damo_core.serve.errors import NotAnImageError


def decode_image(data: bytes | np.ndarray, name: str = "image") -> np.ndarray:
    """``H×W×3`` uint8 RGB from encoded bytes (trailing zero padding is ignored)."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else data
    try:
        return load_rgb_array(raw, name)
    except ImageDecodeError as err:
        raise NotAnImageError(str(err)) from None


def encode_image(image: np.ndarray, fmt: str = "PNG") -> bytes:
    """An ``H×W×3`` uint8 RGB array as image bytes: PNG by default, lossless, so the server
    detects on exactly these pixels (zlib level 1: several times faster than PIL's default
    level for a few percent more bytes); ``"JPEG"`` (quality 95) when bandwidth matters more.
    """
    if fmt not in ("PNG", "JPEG"):
        raise UserInputError(f"image format must be PNG or JPEG, got {fmt!r}")
    buf = io.BytesIO()
    options = {"compress_level": 1} if fmt == "PNG" else {"quality": 95}
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format=fmt, **options)
    return buf.getvalue()


def read_image_bytes(path: str | Path) -> bytes:
    """The file's bytes after checking that it is an image, so a bad file fails here, naming
    it, rather than as an anonymous error inside a server-side batch."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"image file {path} does not exist")
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise NotAnImageError(f"{path}: not an image file ({err})") from None
    return data


def pad_batch(encoded: Sequence[bytes]) -> np.ndarray:
    """``[B, L]`` uint8, each row one file's bytes padded with zeros to the longest.

    Triton batches only tensors of equal shape; decoders stop at the format's end marker.
    """
    if not encoded:
        raise UserInputError("no images to send")
    width = max(len(e) for e in encoded)
    batch = np.zeros((len(encoded), width), dtype=np.uint8)
    for row, data in zip(batch, encoded, strict=True):
        row[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return batch
