"""Every augmentation switch and range in one frozen, validated dataclass.

Why one object: the training recipe must be reproducible from a config file, and a typo such
as ``mixup_prop: 0.5`` must fail loudly instead of silently training with the default. So it is a
:class:`damo_core.settings.Settings`: loaded (alone, or nested as the training settings'
``augment``) by the one settings loader, which rejects unknown keys suggesting the closest valid
one, and type- and range-checked at construction, long before the first batch.

Defaults follow the reference DAMO-YOLO recipe: mosaic always on with a (0.1, 2.0) zoom,
mixup 0.15, +-10 degrees rotation, 0.2 translation, 2 degrees shear, flip 0.5, plain
(non-letterbox) resize, and SADA box-level augmentation with scale splits
(2048, 10240, 51200). The reference has no image-level colour jitter, so ``color_prob`` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from damo_core.settings import ConfigError, Settings

__all__ = ["AugmentConfig", "AugmentConfigError"]

# The settings error class under the name earlier callers import.
AugmentConfigError = ConfigError


@dataclass(frozen=True)
class AugmentConfig(Settings):
    """Augmentation recipe. Field groups: mosaic/mixup/affine, box filtering, resize and flip,
    image colour jitter, SADA box-level augmentation. When to switch to the no-mosaic tail
    (``no_aug_epochs``) is the trainer's schedule, not part of this recipe: it calls
    ``DetectionDataset.close_mosaic()``, which applies :meth:`without_mosaic`."""

    noun = "augmentation setting"

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

    def check(self) -> None:
        """Range checks that would otherwise surface as odd images or NaN boxes mid-training."""
        for f in fields(self):
            if f.name.endswith("_prob"):
                self.require(0.0 <= getattr(self, f.name) <= 1.0, f.name, "must be in [0, 1]")
        for name in ("mosaic_scale", "mixup_scale"):
            lo, hi = getattr(self, name)
            self.require(0.0 < lo <= hi, name, "must be a range (low, high) with 0 < low <= high")
        for name in ("degrees", "shear", "min_box_size", "brightness", "box_rotate_degrees"):
            self.require(getattr(self, name) >= 0.0, name, "must be >= 0")
        self.require(self.shear < 90.0, "shear", "must be < 90 degrees")
        self.require(0.0 <= self.translate <= 0.5, "translate", "must be in [0, 0.5]")
        self.require(0.0 <= self.contrast <= 1.0, "contrast", "must be in [0, 1]")
        self.require(0.0 <= self.min_area_ratio <= 1.0, "min_area_ratio", "must be in [0, 1]")
        self.require(self.max_aspect_ratio > 1.0, "max_aspect_ratio", "must be > 1")
        self.require(0 <= self.pad_value <= 255, "pad_value", "must be in [0, 255]")
        self.require(min(self.hsv_gains) >= 0.0, "hsv_gains", "must be non-negative")
        splits = self.scale_splits
        increasing = all(0.0 < a < b for a, b in zip(splits, splits[1:], strict=False))
        self.require(increasing and splits[0] > 0, "scale_splits",
                     "must be positive and increasing")
        for name in ("box_color_ratios", "box_geometric_ratios"):
            ratios = getattr(self, name)
            self.require(min(ratios) >= 0.0 and sum(ratios) > 0.0, name,
                         "must be non-negative with a positive sum")
        self.require(min(self.box_blend_areas) > 0.0, "box_blend_areas", "must be positive")
        self.require(self.box_ramp_epochs >= 0, "box_ramp_epochs", "must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (tuples as lists) that :meth:`from_dict` reads back unchanged."""
        return self.as_dict()

    def without_mosaic(self) -> AugmentConfig:
        """The recipe for the final no-augmentation epochs: mosaic, mixup (and so the random
        affine, which only runs on mosaics) and box-level augmentation off; resize, flip and
        colour jitter stay, as in the reference."""
        return replace(self, mosaic_prob=0.0, mixup_prob=0.0, box_level=False)
