"""Every augmentation switch and range in one frozen, validated dataclass.

Why one object: the training recipe must be reproducible from a config file, and a typo such
as ``mixup_prop: 0.5`` must fail loudly instead of silently training with the default. So
:meth:`AugmentConfig.from_dict` rejects unknown keys (suggesting the closest valid one) and
every value is type- and range-checked at construction, long before the first batch.

Defaults follow the reference DAMO-YOLO recipe: mosaic always on with a (0.1, 2.0) zoom,
mixup 0.15, +-10 degrees rotation, 0.2 translation, 2 degrees shear, flip 0.5, plain
(non-letterbox) resize, and SADA box-level augmentation with scale splits
(2048, 10240, 51200). The reference has no image-level colour jitter, so ``color_prob`` is 0.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["AugmentConfig", "AugmentConfigError"]


class AugmentConfigError(ValueError):
    """An augmentation config that cannot be used; the message names the source and field."""


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation recipe. Field groups: mosaic/mixup/affine, box filtering, resize and flip,
    image colour jitter, SADA box-level augmentation. When to switch to the no-mosaic tail
    (``no_aug_epochs``) is the trainer's schedule, not part of this recipe: it calls
    ``DetectionDataset.close_mosaic()``, which applies :meth:`without_mosaic`."""

    # Mosaic + random affine (applied to the 2S x 2S mosaic canvas) and mixup.
    mosaic_prob: float = 1.0
    mosaic_scale: tuple[float, float] = (0.1, 2.0)
    mixup_prob: float = 0.15
    mixup_scale: tuple[float, float] = (0.5, 1.5)
    degrees: float = 10.0
    translate: float = 0.2
    shear: float = 2.0
    # Boxes cut by the affine crop are kept only if still meaningful (reference thresholds).
    min_box_size: float = 2.0
    min_area_ratio: float = 0.1
    max_aspect_ratio: float = 20.0
    # Resize to the network input and horizontal flip.
    keep_ratio: bool = False
    pad_value: int = 114
    flip_prob: float = 0.5
    # Image-level colour jitter (off in the reference recipe).
    color_prob: float = 0.0
    hsv_gains: tuple[float, float, float] = (0.015, 0.7, 0.4)
    brightness: float = 0.2
    contrast: float = 0.2
    # SADA scale-aware box-level augmentation, after the image-level ops.
    box_level: bool = True
    box_image_prob: float = 0.3  # chance per image of the colour stage, and of the geometric
    box_prob: float = 0.3  # per-box pick chance, times the box's bucket weight below
    scale_splits: tuple[float, float, float] = (2048.0, 10240.0, 51200.0)  # at 800 px side
    box_color_ratios: tuple[float, float, float] = (7.0, 5.0, 1.0)  # small/medium/large
    box_geometric_ratios: tuple[float, float, float] = (3.0, 3.0, 3.0)
    box_blend_areas: tuple[float, float, float] = (6.0, 2.0, 0.4)  # blend-region size factors
    box_rotate_degrees: float = 6.0
    box_ramp_epochs: int = 0  # box_image_prob ramps up linearly over these epochs (0: off)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, default = getattr(self, f.name), _DEFAULTS[f.name]
            _check_type(f.name, value, default)
            # Normalise ints given for float fields so equal configs compare and hash equal.
            if isinstance(default, float):
                object.__setattr__(self, f.name, float(value))
            elif isinstance(default, tuple):
                object.__setattr__(self, f.name, tuple(float(v) for v in value))
        _check_ranges(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, source: str = "<dict>") -> AugmentConfig:
        """Build from a plain mapping (a YAML section); lists become tuples.

        Unknown keys raise :class:`AugmentConfigError` naming the key and the closest valid
        one; bad values raise naming ``source`` and the field.
        """
        if d is None:
            d = {}
        if not isinstance(d, Mapping):
            raise AugmentConfigError(f"{source}: expected a mapping, got {type(d).__name__}")
        names = sorted(_DEFAULTS)
        for key in d:
            if key not in _DEFAULTS:
                hint = difflib.get_close_matches(str(key), names, n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
                raise AugmentConfigError(
                    f"{source}: unknown augmentation field '{key}'{suggestion} valid: {names}"
                )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        try:
            return cls(**values)
        except AugmentConfigError as exc:
            raise AugmentConfigError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (tuples as lists) that :meth:`from_dict` reads back unchanged."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def without_mosaic(self) -> AugmentConfig:
        """The recipe for the final no-augmentation epochs: mosaic, mixup (and so the random
        affine, which only runs on mosaics) and box-level augmentation off; resize, flip and
        colour jitter stay, as in the reference."""
        return replace(self, mosaic_prob=0.0, mixup_prob=0.0, box_level=False)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_type(name: str, value: object, default: object) -> None:
    """The default's type is the field's type: bool, int, float or a fixed-length tuple."""
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "a boolean"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, want = _is_number(value), "a finite number"
    else:
        n = len(default)  # type: ignore[arg-type]
        ok = isinstance(value, tuple) and len(value) == n and all(map(_is_number, value))
        want = f"a list of {n} finite numbers"
    if not ok:
        raise AugmentConfigError(f"field '{name}' must be {want}, got {value!r}")


def _require(ok: bool, name: str, value: object, rule: str) -> None:
    if not ok:
        raise AugmentConfigError(f"field '{name}' = {value!r} must be {rule}")


def _check_ranges(cfg: AugmentConfig) -> None:
    """Range checks that would otherwise surface as odd images or NaN boxes mid-training."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name.endswith("_prob"):
            _require(0.0 <= value <= 1.0, f.name, value, "in [0, 1]")
    for name in ("mosaic_scale", "mixup_scale"):
        lo, hi = getattr(cfg, name)
        _require(0.0 < lo <= hi, name, (lo, hi), "a range (low, high) with 0 < low <= high")
    for name in ("degrees", "shear", "min_box_size", "brightness", "box_rotate_degrees"):
        _require(getattr(cfg, name) >= 0.0, name, getattr(cfg, name), ">= 0")
    _require(cfg.shear < 90.0, "shear", cfg.shear, "< 90 degrees")
    _require(0.0 <= cfg.translate <= 0.5, "translate", cfg.translate, "in [0, 0.5]")
    _require(0.0 <= cfg.contrast <= 1.0, "contrast", cfg.contrast, "in [0, 1]")
    _require(0.0 <= cfg.min_area_ratio <= 1.0, "min_area_ratio", cfg.min_area_ratio, "in [0, 1]")
    _require(cfg.max_aspect_ratio > 1.0, "max_aspect_ratio", cfg.max_aspect_ratio, "> 1")
    _require(0 <= cfg.pad_value <= 255, "pad_value", cfg.pad_value, "in [0, 255]")
    _require(min(cfg.hsv_gains) >= 0.0, "hsv_gains", cfg.hsv_gains, "non-negative")
    splits = cfg.scale_splits
    increasing = all(0.0 < a < b for a, b in zip(splits, splits[1:], strict=False))
    _require(increasing and splits[0] > 0, "scale_splits", splits, "positive and increasing")
    for name in ("box_color_ratios", "box_geometric_ratios"):
        ratios = getattr(cfg, name)
        _require(
            min(ratios) >= 0.0 and sum(ratios) > 0.0,
            name,
            ratios,
            "non-negative with a positive sum",
        )
    _require(min(cfg.box_blend_areas) > 0.0, "box_blend_areas", cfg.box_blend_areas, "positive")
    _require(cfg.box_ramp_epochs >= 0, "box_ramp_epochs", cfg.box_ramp_epochs, ">= 0")


# Field defaults double as the type schema used by ``_check_type``.
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(AugmentConfig)}
