"""Tests for the synthetic dataset generator (determinism, geometry, occlusion, atomicity)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from damo_core.data import synth
from damo_core.data.synth import (
    MIN_VISIBILITY,
    OBJECT_SCALES,
    SHAPES,
    SynthObject,
    annotate_visible,
    class_specs,
    generate,
    render_image,
    shape_mask,
)
from damo_core.errors import UserInputError

COCO_SMALL, COCO_MEDIUM = 32**2, 96**2  # COCOeval's absolute area thresholds


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default dataset (4 classes, 64 images, 256 px), generated once for the module."""
    return generate(tmp_path_factory.mktemp("synth") / "ds")


def _load(yaml_path: Path, split: str) -> dict:
    return json.loads((yaml_path.parent / f"annotations/instances_{split}.json").read_text())


def _file_bytes(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_layout_yaml_and_real_jpegs(default_set: Path) -> None:
    root = default_set.parent
    spec = yaml.safe_load(default_set.read_text())
    assert spec == {
        "path": ".",
        "train": "annotations/instances_train.json",
        "val": "annotations/instances_val.json",
        "train_images": "images/train",
        "val_images": "images/val",
        "names": ["circle", "square", "triangle", "cross"],
    }
    train, val = _load(default_set, "train"), _load(default_set, "val")
    assert (len(train["images"]), len(val["images"])) == (48, 16)
    assert [c["id"] for c in train["categories"]] == [1, 2, 3, 4]
    for split, data in (("train", train), ("val", val)):
        for entry in data["images"]:
            with Image.open(root / "images" / split / entry["file_name"]) as im:
                assert im.format == "JPEG" and im.size == (256, 256) and im.mode == "RGB"


def test_same_seed_identical_bytes_different_seed_differs(tmp_path: Path) -> None:
    kwargs = {"num_images": 12, "image_size": 96}
    a = generate(tmp_path / "a", seed=3, **kwargs).parent
    b = generate(tmp_path / "b", seed=3, **kwargs).parent
    c = generate(tmp_path / "c", seed=4, **kwargs).parent
    files_a, files_b, files_c = _file_bytes(a), _file_bytes(b), _file_bytes(c)
    assert files_a == files_b
    json_name = "annotations/instances_train.json"
    assert files_a[json_name] != files_c[json_name]
    jpgs_a = {Path(k).name: v for k, v in files_a.items() if k.endswith(".jpg")}
    jpgs_c = {Path(k).name: v for k, v in files_c.items() if k.endswith(".jpg")}
    assert all(jpgs_a[name] != jpgs_c[name] for name in jpgs_a)


def test_boxes_inside_image_and_non_degenerate(default_set: Path) -> None:
    for split in ("train", "val"):
        data = _load(default_set, split)
        sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
        assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            width, height = sizes[ann["image_id"]]
            assert w >= 1 and h >= 1, ann
            assert x >= 0 and y >= 0 and x + w <= width and y + h <= height, ann
            assert 0 < ann["area"] <= w * h and ann["iscrowd"] == 0


def test_all_classes_present_in_both_splits(default_set: Path) -> None:
    for split in ("train", "val"):
        anns = _load(default_set, split)["annotations"]
        assert set(Counter(a["category_id"] for a in anns)) == {1, 2, 3, 4}


def test_areas_span_coco_small_medium_large(default_set: Path) -> None:
    areas = [a["area"] for s in ("train", "val") for a in _load(default_set, s)["annotations"]]
    small = sum(a < COCO_SMALL for a in areas)
    medium = sum(COCO_SMALL <= a < COCO_MEDIUM for a in areas)
    large = sum(a >= COCO_MEDIUM for a in areas)
    assert small >= 20 and medium >= 20 and large >= 10, (small, medium, large)


def test_annotate_visible_uses_visible_pixels_only() -> None:
    inst = np.zeros((20, 20), np.int32)
    inst[0:10, 0:10] = 1  # object 1: 10x10 ...
    inst[0:10, 5:10] = 2  # ... right half covered by object 2 -> 50 % visible, box shrinks
    inst[12:20, 12:20] = 3  # object 3: 8x8 ...
    inst[12:20, 14:20] = -1  # ... 75 % covered by a distractor -> dropped
    objects = [SynthObject(0, 100), SynthObject(1, 50), SynthObject(2, 64)]
    annotate_visible(inst, objects)
    first = objects[0]
    assert (first.bbox, first.visible_area, first.annotated) == ((0, 0, 5, 10), 50, True)
    assert (objects[1].bbox, objects[1].annotated) == ((5, 0, 5, 10), True)
    assert objects[2].visibility == pytest.approx(0.25) and not objects[2].annotated


def test_rendered_scenes_drop_heavily_occluded_objects() -> None:
    classes = class_specs(4)
    dropped = kept = 0
    for seed in range(24):
        scene = render_image(np.random.default_rng(seed), classes, 128)
        for k, obj in enumerate(scene.objects, start=1):
            assert obj.visible_area == int((scene.instance_mask == k).sum())
            if obj.annotated:
                kept += 1
                ys, xs = np.nonzero(scene.instance_mask == k)
                x0, y0 = xs.min(), ys.min()
                assert obj.bbox == (x0, y0, xs.max() + 1 - x0, ys.max() + 1 - y0)
            else:
                dropped += 1
                assert obj.visibility < MIN_VISIBILITY
    assert dropped > 0 and kept > dropped


def _area_fractions(scale: str, size: int = 128) -> list[float]:
    """Every painted object's own area (before occlusion) over the image area."""
    classes = class_specs(4)
    return [obj.full_area / size**2 for seed in range(24)
            for obj in render_image(np.random.default_rng(seed), classes, size,
                                    scale=OBJECT_SCALES[scale]).objects]


def test_coarse_scale_draws_no_small_object_and_coco_does() -> None:
    coarse, coco = _area_fractions("coarse"), _area_fractions("coco")
    # a mask's pixel count misses its target area by a rounded side at most
    assert min(coarse) > 0.025 and max(coarse) < 0.3
    assert sum(f < 0.015 for f in coco) > len(coco) / 4


def test_unknown_object_scale_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="object_scale must be one of .*'huge'"):
        generate(tmp_path / "x", object_scale="huge")
    assert not (tmp_path / "x").exists()


def test_classes_have_distinct_shape_and_colour() -> None:
    specs = class_specs(72)
    assert len({(s.shape, s.colour) for s in specs}) == 72
    assert len({s.name for s in specs}) == 72
    assert len({s.colour for s in specs[:8]}) == 8 and [s.shape for s in specs[:8]] == list(SHAPES)
    with pytest.raises(ValueError):
        class_specs(73)
    masks = [shape_mask(s, 64, 64) for s in SHAPES]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.9, (SHAPES[i], SHAPES[j], iou)


def test_crash_mid_generation_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writer = synth._write_jpeg
    calls = {"n": 0}

    def flaky_writer(image: np.ndarray, path: Path) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("disk full (simulated)")
        real_writer(image, path)

    monkeypatch.setattr(synth, "_write_jpeg", flaky_writer)
    out = tmp_path / "ds"
    with pytest.raises(OSError, match="simulated"):
        generate(out, num_images=8, image_size=64)
    assert calls["n"] == 4
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # temp dir cleaned up too


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        generate(out, num_images=4, image_size=64)
    assert (out / "keep.txt").exists()
    generate(out, num_images=4, image_size=64, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "dataset.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.parametrize(
    "kwargs", [{"num_images": 1}, {"val_fraction": 0.0}, {"image_size": 16}, {"seed": -1}]
)
def test_bad_arguments_rejected(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()
