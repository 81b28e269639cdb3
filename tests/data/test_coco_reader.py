"""Tests for the COCO reader, its validation errors, skip mode and the dataset.yaml loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from damo_core.data import CocoDetection, DatasetError, load_dataset_yaml
from damo_core.data.synth import generate

ANN_NAME = "instances_bad.json"


@pytest.fixture(scope="module")
def synth_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("reader") / "ds", num_images=12, image_size=96)


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    """Two real 32x24 JPEGs: a.jpg and b.jpg."""
    d = tmp_path / "images"
    d.mkdir()
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(np.full((24, 32, 3), 128, np.uint8)).save(d / name, quality=90)
    return d


def _write_coco(tmp_path: Path, images: list | None = None, anns: list | None = None) -> Path:
    """A small valid COCO file (images 7 and 8, categories 3 and 5) with overrides."""
    data: dict[str, Any] = {
        "images": images
        if images is not None
        else [
            {"id": 7, "file_name": "a.jpg", "width": 32, "height": 24},
            {"id": 8, "file_name": "b.jpg", "width": 32, "height": 24},
        ],
        "annotations": anns
        if anns is not None
        else [
            {**_ann(1, 7, 3, [1, 2, 10, 5]), "area": 50},
            {**_ann(2, 8, 5, [0, 0, 4, 4]), "area": 16},
        ],
        "categories": [{"id": 5, "name": "square"}, {"id": 3, "name": "circle"}],
    }
    path = tmp_path / ANN_NAME
    path.write_text(json.dumps(data))
    return path


def _ann(aid: int, image_id: int, cat: int, bbox: list) -> dict:
    return {"id": aid, "image_id": image_id, "category_id": cat, "bbox": bbox, "iscrowd": 0}


@pytest.mark.parametrize("split", ["train", "val"])
def test_round_trip_generated_set(synth_yaml: Path, split: str) -> None:
    spec = load_dataset_yaml(synth_yaml)
    ds = CocoDetection.from_spec(spec, split)
    ann_file, _ = spec.split(split)
    data = json.loads(ann_file.read_text())
    assert len(ds) == len(data["images"]) and ds.skipped == {}
    assert ds.class_names == ("circle", "square", "triangle", "cross")
    assert ds.cat_ids == (1, 2, 3, 4) and ds.cat_id_to_label == {1: 0, 2: 1, 3: 2, 4: 3}
    total = 0
    for i in range(len(ds)):
        sample = ds[i]
        assert sample.image.shape == (96, 96, 3) and sample.image.dtype == np.uint8
        assert sample.boxes.dtype == np.float32 and sample.labels.dtype == np.int64
        anns = [a for a in data["annotations"] if a["image_id"] == sample.image_id]
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        np.testing.assert_array_equal(sample.boxes, expected.reshape(-1, 4))
        np.testing.assert_array_equal(sample.labels, [a["category_id"] - 1 for a in anns])
        total += len(sample.labels)
    assert total == len(data["annotations"])


def test_contiguous_labels_follow_category_id_order(tmp_path: Path, image_dir: Path) -> None:
    ds = CocoDetection(_write_coco(tmp_path), image_dir)
    assert ds.cat_ids == (3, 5) and ds.class_names == ("circle", "square")
    first, last = ds[0], ds[-1]
    np.testing.assert_array_equal(first.boxes, [[1, 2, 11, 7]])
    assert first.labels.tolist() == [0] and last.labels.tolist() == [1]
    assert (first.image_id, first.file_name) == (7, "a.jpg")
    first.boxes[:] = 0  # samples are copies
    np.testing.assert_array_equal(ds[0].boxes, [[1, 2, 11, 7]])
    with pytest.raises(IndexError):
        ds[2]


@pytest.mark.parametrize(
    ("anns", "needles"),
    [
        ([_ann(1, 7, 3, [1, 1, 0, 5])], ["image id 7", "'bbox'", "[1, 1, 0, 5]"]),
        ([_ann(1, 8, 3, [1, 1, 4, -2])], ["image id 8", "'bbox'", "-2"]),
        ([_ann(1, 7, 3, [1, 1, 4])], ["image id 7", "'bbox'", "[1, 1, 4]"]),
        ([_ann(1, 7, 99, [1, 1, 4, 4])], ["image id 7", "'category_id'", "99"]),
        ([_ann(1, 42, 3, [1, 1, 4, 4])], ["image id 42", "'image_id'", "42"]),
    ],
)
def test_bad_annotation_raises(
    tmp_path: Path, image_dir: Path, anns: list, needles: list[str]
) -> None:
    with pytest.raises(DatasetError) as info:
        CocoDetection(_write_coco(tmp_path, anns=anns), image_dir)
    message = str(info.value)
    assert ANN_NAME in message
    for needle in needles:
        assert needle in message, message


def test_missing_image_file_raises(tmp_path: Path, image_dir: Path) -> None:
    images = [{"id": 7, "file_name": "a.jpg"}, {"id": 9, "file_name": "nope.jpg"}]
    with pytest.raises(DatasetError) as info:
        CocoDetection(_write_coco(tmp_path, images=images, anns=[]), image_dir)
    message = str(info.value)
    for needle in (ANN_NAME, "image id 9", "'file_name'", "nope.jpg"):
        assert needle in message, message


def test_empty_dataset_raises(tmp_path: Path, image_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"instances_bad\.json.*'images'.*no images"):
        CocoDetection(_write_coco(tmp_path, images=[], anns=[]), image_dir)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_raises_on_read(tmp_path: Path, image_dir: Path, damage: str) -> None:
    target = image_dir / "b.jpg"
    payload = target.read_bytes()
    target.write_bytes(b"not a jpeg" * 10 if damage == "garbage" else payload[: len(payload) // 2])
    ds = CocoDetection(_write_coco(tmp_path), image_dir)  # load-time checks cannot see this
    assert ds[0].image.shape == (24, 32, 3)
    with pytest.raises(DatasetError) as info:
        ds[1]
    assert "b.jpg" in str(info.value) and "image id 8" in str(info.value)


def test_image_size_mismatch_raises_on_read(tmp_path: Path, image_dir: Path) -> None:
    images = [{"id": 7, "file_name": "a.jpg", "width": 64, "height": 24}]
    ds = CocoDetection(_write_coco(tmp_path, images=images, anns=[]), image_dir)
    with pytest.raises(DatasetError, match=r"image id 7.*'width' says 64 but the file has 32"):
        ds[0]


def test_skip_mode_counts_what_was_dropped(tmp_path: Path, image_dir: Path) -> None:
    images = [
        {"id": 7, "file_name": "a.jpg"},
        {"id": 8, "file_name": "b.jpg"},
        {"id": 9, "file_name": "missing.jpg"},
    ]
    anns = [
        _ann(1, 7, 3, [1, 1, 4, 4]),
        _ann(2, 7, 3, [1, 1, 0, 4]),
        _ann(3, 8, 5, [1, 1, 4, -1]),
        _ann(4, 8, 77, [1, 1, 4, 4]),
        _ann(5, 9, 3, [1, 1, 4, 4]),
        _ann(6, 8, 5, [2, 2, 3, 3]),
    ]
    ds = CocoDetection(_write_coco(tmp_path, images, anns), image_dir, skip_invalid=True)
    assert ds.skipped == {
        "missing_image": 1,
        "bad_bbox": 2,
        "unknown_category": 1,
        "annotation_of_skipped_image": 1,
    }
    assert len(ds) == 2 and ds.image_ids == [7, 8]
    assert [ds[i].labels.tolist() for i in range(2)] == [[0], [1]]
    assert sorted(ds.coco.getAnnIds()) == [1, 6]


def test_skip_mode_still_refuses_empty_result(tmp_path: Path, image_dir: Path) -> None:
    images = [{"id": 9, "file_name": "missing.jpg"}]
    with pytest.raises(DatasetError, match="no images after skipping"):
        CocoDetection(_write_coco(tmp_path, images, []), image_dir, skip_invalid=True)


def test_crowd_boxes_are_not_training_targets(tmp_path: Path, image_dir: Path) -> None:
    crowd = {**_ann(3, 7, 3, [0, 0, 8, 8]), "iscrowd": 1}
    ds = CocoDetection(_write_coco(tmp_path, anns=[_ann(1, 7, 3, [1, 1, 4, 4]), crowd]), image_dir)
    assert ds[0].boxes.shape == (1, 4) and len(ds.coco.getAnnIds(imgIds=[7])) == 2
    assert ds.coco.anns[1]["area"] == 16  # filled in for COCOeval when absent


def test_missing_annotation_file_names_it(tmp_path: Path, image_dir: Path) -> None:
    with pytest.raises(DatasetError, match="absent.json"):
        CocoDetection(tmp_path / "absent.json", image_dir)


def test_load_dataset_yaml_resolves_paths(synth_yaml: Path) -> None:
    spec = load_dataset_yaml(synth_yaml)
    root = synth_yaml.parent.resolve()
    assert spec.root == root and spec.names == ("circle", "square", "triangle", "cross")
    assert spec.train_json == root / "annotations/instances_train.json"
    assert spec.val_images == root / "images/val" and spec.val_images.is_absolute()
    with pytest.raises(ValueError):
        spec.split("test")


@pytest.mark.parametrize("field", ["train", "val", "train_images", "val_images", "names"])
def test_load_dataset_yaml_missing_field(synth_yaml: Path, tmp_path: Path, field: str) -> None:
    raw = yaml.safe_load(synth_yaml.read_text())
    del raw[field]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(DatasetError, match=rf"broken\.yaml: missing required field '{field}'"):
        load_dataset_yaml(path)


def test_names_mismatch_with_json_is_reported(synth_yaml: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(synth_yaml.read_text())
    raw["path"] = str(synth_yaml.parent)
    raw["names"] = ["a", "b", "c", "d"]
    path = tmp_path / "renamed.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(DatasetError, match=r"renamed\.yaml: field 'names'"):
        CocoDetection.from_spec(load_dataset_yaml(path), "val")
