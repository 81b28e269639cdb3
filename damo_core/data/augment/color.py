"""Image-level colour jitter: HSV gains, then brightness/contrast.

Why lookup tables: each jitter is a per-channel function of the uint8 value, so it costs one
256-entry table and one gather per channel, far cheaper than float arithmetic on every
pixel. The HSV round trip uses Pillow's C conversion. Colour never moves content, so boxes
are untouched and these functions take and return the image only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["brightness_contrast", "color_jitter", "hsv_jitter"]

_LEVELS = np.arange(256, dtype=np.float32)


def _to_lut(values: np.ndarray) -> np.ndarray:
    """Round and clip a 256-entry float table to uint8."""
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def hsv_jitter(
    image: np.ndarray, rng: np.random.Generator, gains: Sequence[float] = (0.015, 0.7, 0.4)
) -> np.ndarray:
    """Shift hue by ``U(-gh, gh)`` of a full turn; scale saturation and value by
    ``1 + U(-g, g)``. Hue wraps around (it is an angle); the others saturate at 255."""
    gain_h, gain_s, gain_v = (float(g) for g in gains)
    r_h, r_s, r_v = rng.uniform(-1.0, 1.0, size=3) * np.array([gain_h, gain_s, gain_v])
    if r_h == 0.0 and r_s == 0.0 and r_v == 0.0:
        return image
    hsv = np.asarray(Image.fromarray(image).convert("HSV"))
    lut_h = (np.rint(_LEVELS + r_h * 256.0) % 256).astype(np.uint8)
    lut_s = _to_lut(_LEVELS * (1.0 + r_s))
    lut_v = _to_lut(_LEVELS * (1.0 + r_v))
    jittered = np.stack([lut_h[hsv[..., 0]], lut_s[hsv[..., 1]], lut_v[hsv[..., 2]]], axis=-1)
    return np.asarray(Image.fromarray(jittered, "HSV").convert("RGB"))


def brightness_contrast(
    image: np.ndarray, rng: np.random.Generator, brightness: float = 0.2, contrast: float = 0.2
) -> np.ndarray:
    """``(x - 127.5) * (1 + U(-c, c)) + 127.5 + U(-b, b) * 255``: contrast about mid-grey,
    then an additive brightness offset (a fraction of the full range)."""
    alpha = 1.0 + rng.uniform(-contrast, contrast)
    beta = rng.uniform(-brightness, brightness) * 255.0
    lut = _to_lut((_LEVELS - 127.5) * alpha + 127.5 + beta)
    return lut[image]


def color_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    prob: float,
    hsv_gains: Sequence[float] = (0.015, 0.7, 0.4),
    brightness: float = 0.2,
    contrast: float = 0.2,
) -> np.ndarray:
    """With probability ``prob``, :func:`hsv_jitter` then :func:`brightness_contrast`."""
    if rng.random() >= prob:
        return image
    image = hsv_jitter(image, rng, hsv_gains)
    return brightness_contrast(image, rng, brightness, contrast)
