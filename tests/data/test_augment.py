"""Tests for the augmentation ops: boxes must keep marking their content after every op.

Scenes are flat backgrounds with filled rectangles of unique saturated colours; after an op,
the pixels still close to a rectangle's colour must be tightly bounded by its box.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from damo_core.data.augment import (
    COLOR_OPS,
    Annotated,
    AugmentConfig,
    AugmentConfigError,
    apply_color_op,
    box_level_augment,
    box_sample_probs,
    color_jitter,
    fit_sample,
    hflip,
    mixup,
    mosaic,
    mosaic_canvas,
    random_affine,
    scale_buckets,
)

COLOURS = np.array(
    [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [255, 0, 255],
        [0, 255, 255],
        [255, 128, 0],
        [128, 0, 255],
    ],
    dtype=np.uint8,
)
BACKGROUND = 30
TOL = 2.0  # pixels of slack for interpolation blur at rectangle edges


def _scene(h: int, w: int, rects: list[tuple[float, float, float, float]], first: int = 0):
    """Annotated scene: rectangle ``i`` has colour ``COLOURS[first + i]`` and label
    ``first + i``; integer rectangle coordinates are exact pixel bounds."""
    image = np.full((h, w, 3), BACKGROUND, np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(rects):
        image[int(y1) : int(y2), int(x1) : int(x2)] = COLOURS[first + i]
    labels = np.arange(first, first + len(rects), dtype=np.int64)
    return Annotated(image, np.array(rects, np.float32).reshape(-1, 4), labels)


def _extent(image: np.ndarray, colour: np.ndarray, tol: int = 60) -> np.ndarray | None:
    """Continuous bounds (x1, y1, x2, y2) of pixels within ``tol`` of ``colour``, or None."""
    close = np.abs(image.astype(int) - colour.astype(int)).max(axis=-1) <= tol
    ys, xs = np.nonzero(close)
    if not len(xs):
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _assert_aligned(sample: Annotated, tol: float = TOL, colours: np.ndarray = COLOURS) -> None:
    """Every box tightly bounds the pixels of its label's colour."""
    for box, label in zip(sample.boxes, sample.labels, strict=True):
        extent = _extent(sample.image, colours[label])
        assert extent is not None, f"label {label}: colour vanished but box {box} kept"
        np.testing.assert_allclose(box, extent, atol=tol, err_msg=f"label {label}")


def _assert_well_formed(sample: Annotated, size: int) -> None:
    assert sample.image.shape == (size, size, 3) and sample.image.dtype == np.uint8
    assert sample.boxes.dtype == np.float32 and sample.boxes.shape == (len(sample.labels), 4)
    assert sample.labels.dtype == np.int64
    if len(sample.boxes):
        assert (sample.boxes >= 0).all() and (sample.boxes <= size).all()
        assert (sample.boxes[:, 2:] > sample.boxes[:, :2]).all()


RECTS = [(10, 12, 50, 40), (120, 30, 190, 110), (60, 70, 100, 95)]


# --- fit (letterbox / stretch) / flip ---------------------------------------------------


def test_letterbox_aligns_boxes_and_reports_placement() -> None:
    sample = _scene(120, 200, RECTS)
    out, placement = fit_sample(sample, 160, "letterbox")
    _assert_well_formed(out, 160)
    _assert_aligned(out)
    assert placement.orig_size == (120, 200)
    assert placement.scale == pytest.approx((0.8, 0.8))
    assert placement.pad == (0, 32)  # 200x120 -> 160x96, centred vertically
    assert (out.image[:32] == 114).all() and (out.image[128:] == 114).all()


def test_plain_resize_stretches_boxes_per_axis() -> None:
    sample = _scene(120, 200, RECTS)
    out, placement = fit_sample(sample, 160, "stretch")
    _assert_well_formed(out, 160)
    _assert_aligned(out)
    assert placement.scale == pytest.approx((0.8, 160 / 120)) and placement.pad == (0, 0)


def test_hflip_is_exact_and_an_involution() -> None:
    sample = _scene(120, 200, RECTS)
    flipped = hflip(sample)
    _assert_aligned(flipped, tol=0.0)
    back = hflip(flipped)
    np.testing.assert_array_equal(back.image, sample.image)
    np.testing.assert_array_equal(back.boxes, sample.boxes)


# --- random affine ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_affine_keeps_boxes_tight(seed: int) -> None:
    sample = _scene(200, 200, [(40, 50, 90, 80), (110, 100, 160, 170), (60, 120, 90, 150)])
    out = random_affine(
        sample,
        np.random.default_rng(seed),
        200,
        degrees=10.0,
        translate=0.05,
        scale_range=(0.8, 1.2),
        shear=2.0,
    )
    _assert_well_formed(out, 200)
    assert len(out.boxes) == 3  # all rectangles stay inside with these ranges
    _assert_aligned(out, tol=2.5)


def test_random_affine_drops_boxes_cropped_away() -> None:
    """No rotation/zoom/shift: the output is the central window of a 2x input, so a box in
    the corner is cut away entirely and one straddling the window edge is clipped."""
    sample = _scene(400, 400, [(5, 5, 40, 40), (150, 150, 250, 250), (80, 180, 120, 220)])
    out = random_affine(
        sample, np.random.default_rng(0), 200, degrees=0, translate=0, scale_range=(1, 1), shear=0
    )
    assert out.labels.tolist() == [1, 2]
    np.testing.assert_allclose(out.boxes, [[50, 50, 150, 150], [0, 80, 20, 120]], atol=1e-4)
    _assert_aligned(out, tol=0.5)


def test_random_affine_drops_slivers() -> None:
    """A box left only 1 px wide by the crop is dropped (min_box_size 2)."""
    sample = _scene(400, 400, [(60, 150, 101, 250)])
    out = random_affine(
        sample, np.random.default_rng(0), 200, degrees=0, translate=0, scale_range=(1, 1), shear=0
    )
    assert len(out.boxes) == 0


# --- mosaic and mixup ------------------------------------------------------------------


def _mosaic_inputs() -> list[Annotated]:
    return [
        _scene(160, 160, [(20, 20, 70, 60), (90, 100, 140, 150)], first=0),
        _scene(120, 200, [(30, 30, 90, 80)], first=2),
        _scene(200, 140, [(40, 60, 100, 130), (10, 150, 50, 190)], first=3),
        _scene(160, 160, [(50, 50, 110, 110)], first=5),
    ]


@pytest.mark.parametrize("fit", ["stretch", "letterbox"])
def test_mosaic_canvas_places_tiles_exactly(fit: str) -> None:
    canvas = mosaic_canvas(_mosaic_inputs(), 160, np.random.default_rng(3), fit=fit)
    _assert_well_formed(canvas, 320)
    assert set(canvas.labels.tolist()) <= set(range(6)) and len(canvas.labels) >= 4
    _assert_aligned(canvas, tol=1.0)


@pytest.mark.parametrize("seed", range(8))
def test_mosaic_boxes_track_their_tiles(seed: int) -> None:
    cfg = AugmentConfig(degrees=0.0, shear=0.0, mosaic_scale=(0.7, 1.3))
    out = mosaic(_mosaic_inputs(), 160, np.random.default_rng(seed), cfg)
    _assert_well_formed(out, 160)
    _assert_aligned(out)


@pytest.mark.parametrize("seed", range(4))
def test_mosaic_with_rotation_keeps_content_inside_boxes(seed: int) -> None:
    cfg = AugmentConfig(mosaic_scale=(0.7, 1.3))  # reference degrees/shear
    out = mosaic(_mosaic_inputs(), 160, np.random.default_rng(seed), cfg)
    _assert_well_formed(out, 160)
    for box, label in zip(out.boxes, out.labels, strict=True):
        extent = _extent(out.image, COLOURS[label])
        assert extent is not None
        assert (extent[:2] >= box[:2] - TOL).all() and (extent[2:] <= box[2:] + TOL).all()


def test_mosaic_is_deterministic_per_generator() -> None:
    cfg = AugmentConfig()
    a = mosaic(_mosaic_inputs(), 160, np.random.default_rng(11), cfg)
    b = mosaic(_mosaic_inputs(), 160, np.random.default_rng(11), cfg)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)


@pytest.mark.parametrize("seed", range(6))
def test_mixup_blends_and_keeps_both_box_sets(seed: int) -> None:
    base = _scene(160, 160, [(10, 10, 60, 50)], first=0)
    other = _scene(100, 140, [(40, 30, 100, 70)], first=1)
    out = mixup(base, other, np.random.default_rng(seed), scale_range=(0.7, 1.3))
    _assert_well_formed(out, 160)
    assert out.labels[0] == 0
    np.testing.assert_array_equal(out.boxes[0], base.boxes[0])
    # Blended colours: base content averaged with the other layer (background or pad).
    for label in out.labels:
        other_px = np.uint16(BACKGROUND)
        colour = ((COLOURS[label].astype(np.uint16) + other_px + 1) // 2).astype(np.uint8)
        box = out.boxes[out.labels == label][0]
        extent = _extent(out.image, colour, tol=20)
        assert extent is not None
        assert (extent[:2] >= box[:2] - TOL).all() and (extent[2:] <= box[2:] + TOL).all()


# --- colour and box-level --------------------------------------------------------------


def test_color_jitter_changes_colours_only_when_it_fires() -> None:
    sample = _scene(64, 64, [(10, 10, 40, 40)])
    same = color_jitter(sample.image, np.random.default_rng(0), prob=0.0)
    assert same is sample.image
    a = color_jitter(sample.image, np.random.default_rng(1), prob=1.0)
    b = color_jitter(sample.image, np.random.default_rng(1), prob=1.0)
    assert a.shape == sample.image.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sample.image)


@pytest.mark.parametrize("op", COLOR_OPS)
def test_color_ops_stay_in_range(op: str) -> None:
    image = np.random.default_rng(0).uniform(0, 255, (20, 30, 3)).astype(np.float32)
    out = apply_color_op(image, op, np.random.default_rng(1))
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, image)


def test_scale_buckets_and_probabilities_follow_splits() -> None:
    side = [(0, 0, w, h) for w, h in [(40, 40), (80, 80), (150, 150), (300, 300), (5, 0)]]
    boxes = np.array(side, np.float32)
    splits = (2048.0, 10240.0, 51200.0)
    np.testing.assert_array_equal(scale_buckets(boxes, (800, 800), splits), [0, 1, 2, 2, 0])
    # Splits are defined for an 800 px short side; at 400 px they are 1024 and 5120.
    np.testing.assert_array_equal(scale_buckets(boxes, (400, 600), splits), [1, 2, 2, 2, 0])
    probs = box_sample_probs(boxes, (800, 800), splits, (7.0, 5.0, 1.0), 0.3)
    np.testing.assert_allclose(probs, 0.3 * np.array([7, 5, 1, 1, 0]) / 13)


def test_box_level_geometric_changes_stay_inside_boxes() -> None:
    """Only the geometric stage can pick these boxes (both in the medium bucket at 200 px),
    and it edits box interiors only."""
    cfg = AugmentConfig(
        box_image_prob=1.0,
        box_prob=1.0,
        box_color_ratios=(1.0, 0.0, 1.0),
        box_geometric_ratios=(0.0, 1.0, 0.0),
    )
    image = np.full((200, 200, 3), BACKGROUND, np.uint8)
    boxes = np.array([[20, 20, 60, 50], [100, 120, 140, 160]], np.float32)
    for x1, y1, x2, y2 in boxes.astype(int):  # left half red, right half blue
        image[y1:y2, x1 : (x1 + x2) // 2] = COLOURS[0]
        image[y1:y2, (x1 + x2) // 2 : x2] = COLOURS[2]
    inside = np.zeros((200, 200), bool)
    for x1, y1, x2, y2 in boxes.astype(int):
        inside[y1:y2, x1:x2] = True
    for seed in range(4):
        out = box_level_augment(image, boxes, np.random.default_rng(seed), cfg)
        changed = (out != image).any(axis=-1)
        assert changed.any() and not (changed & ~inside).any()


def test_box_level_colour_is_local_and_boxes_unchanged() -> None:
    cfg = AugmentConfig(
        box_image_prob=1.0,
        box_prob=1.0,
        box_color_ratios=(1.0, 0.0, 0.0),
        box_geometric_ratios=(0.0, 0.0, 1.0),
    )
    sample = _scene(400, 400, [(20, 20, 40, 40)])
    boxes_before = sample.boxes.copy()
    changed_any = False
    for seed in range(6):
        out = box_level_augment(sample.image, sample.boxes, np.random.default_rng(seed), cfg)
        changed = (out != sample.image).any(axis=-1)
        changed_any |= bool(changed.any())
        assert not changed[200:, :].any() and not changed[:, 200:].any()
    assert changed_any
    np.testing.assert_array_equal(sample.boxes, boxes_before)


def test_box_level_off_returns_the_input() -> None:
    sample = _scene(64, 64, [(10, 10, 40, 40)])
    cfg = AugmentConfig(box_level=False, box_image_prob=1.0)
    assert box_level_augment(sample.image, sample.boxes, np.random.default_rng(0), cfg) is (
        sample.image
    )


# --- empty annotations -----------------------------------------------------------------


def test_empty_annotation_images_survive_every_op() -> None:
    empty = _scene(90, 130, [])
    rng = np.random.default_rng(0)
    cfg = AugmentConfig(box_image_prob=1.0, color_prob=1.0)
    outs = [
        fit_sample(empty, 96, "letterbox")[0],
        fit_sample(empty, 96, "stretch")[0],
        hflip(empty),
        random_affine(empty, rng, 96),
        mosaic([empty] * 4, 96, rng, cfg),
        mixup(fit_sample(empty, 96, "stretch")[0], empty, rng),
    ]
    for out in outs:
        assert out.boxes.shape == (0, 4) and out.boxes.dtype == np.float32
        assert out.labels.shape == (0,) and out.labels.dtype == np.int64
    image = outs[0].image
    assert color_jitter(image, rng, prob=1.0).shape == image.shape
    assert box_level_augment(image, outs[0].boxes, rng, cfg) is image


# --- config ----------------------------------------------------------------------------


def test_config_unknown_key_names_it_and_suggests() -> None:
    with pytest.raises(AugmentConfigError) as err:
        AugmentConfig.from_dict({"mixup_prop": 0.5}, source="train.yaml")
    message = str(err.value)
    assert "train.yaml" in message and "'mixup_prop'" in message and "'mixup_prob'" in message


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"mosaic_prob": 1.5}, "mosaic_prob"),
        ({"mosaic_scale": [2.0, 1.0]}, "mosaic_scale"),
        ({"mixup_scale": [0.5]}, "mixup_scale"),
        ({"keep_ratio": "yes"}, "keep_ratio"),
        ({"degrees": True}, "degrees"),
        ({"scale_splits": [100, 50, 200]}, "scale_splits"),
        ({"box_ramp_epochs": 1.5}, "box_ramp_epochs"),
    ],
)
def test_config_rejects_bad_values(values: dict, field: str) -> None:
    with pytest.raises(AugmentConfigError, match=f"cfg.yaml: augmentation setting '{field}'"):
        AugmentConfig.from_dict(values, source="cfg.yaml")


def test_config_round_trip_and_defaults() -> None:
    cfg = AugmentConfig.from_dict({"mosaic_scale": [0.5, 1.5], "degrees": 5, "keep_ratio": True})
    assert cfg.mosaic_scale == (0.5, 1.5) and isinstance(cfg.degrees, float)
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    default = AugmentConfig()
    assert (default.mosaic_prob, default.mixup_prob, default.flip_prob) == (1.0, 0.15, 0.5)
    assert (default.degrees, default.translate, default.shear) == (10.0, 0.2, 2.0)
    assert default.scale_splits == (2048.0, 10240.0, 51200.0) and default.box_prob == 0.3
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.mosaic_prob = 0.0  # type: ignore[misc]
    closed = default.without_mosaic()
    assert (closed.mosaic_prob, closed.mixup_prob, closed.box_level) == (0.0, 0.0, False)
