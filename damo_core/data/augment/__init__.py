"""Training augmentations: geometry (fit to the input/affine/flip), mosaic and mixup, colour
jitter and scale-aware box-level augmentation, plus the :class:`AugmentConfig` that drives them.

Every random op takes an explicit ``np.random.Generator``; nothing here touches global random
state, so one seed reproduces an epoch exactly.
"""

from damo_core.data.augment.box_level import (
    COLOR_OPS,
    GEOMETRIC_OPS,
    apply_color_op,
    box_level_augment,
    box_sample_probs,
    scale_buckets,
)
from damo_core.data.augment.color import brightness_contrast, color_jitter, hsv_jitter
from damo_core.data.augment.config import AugmentConfig, AugmentConfigError
from damo_core.data.augment.geometric import (
    Annotated,
    Placement,
    affine_matrix,
    clip_boxes,
    drop_small,
    fit_sample,
    hflip,
    random_affine,
    random_hflip,
    transform_boxes,
    warp_affine,
)
from damo_core.data.augment.mosaic import mixup, mosaic, mosaic_canvas

__all__ = [
    "COLOR_OPS",
    "GEOMETRIC_OPS",
    "Annotated",
    "AugmentConfig",
    "AugmentConfigError",
    "Placement",
    "affine_matrix",
    "apply_color_op",
    "box_level_augment",
    "box_sample_probs",
    "brightness_contrast",
    "clip_boxes",
    "color_jitter",
    "drop_small",
    "fit_sample",
    "hflip",
    "hsv_jitter",
    "mixup",
    "mosaic",
    "mosaic_canvas",
    "random_affine",
    "random_hflip",
    "scale_buckets",
    "transform_boxes",
    "warp_affine",
]
