"""An ultralytics ``data.yaml`` read unchanged: its layouts, splits, label rule and faults."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from damo_core.data.errors import DatasetError
from damo_core.data.formats import open_source
from damo_core.data.formats import ultralytics as ul
from damo_core.data.formats.ultralytics import label_key
from damo_core.data.unify import iter_manifest, unify
from damo_core.storage.base import check_key
from damo_core.storage.local import LocalStore

NAMES = ["person", "car"]


def image(path: Path, size: tuple[int, int] = (32, 24), **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (40, 90, 160)).save(path, **save)
    return path


def labels(path: Path, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ln}\n" for ln in lines))


def data_yaml(where: Path, **fields: object) -> str:
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(yaml.safe_dump({"names": NAMES, **fields}))
    return f"u:ultralytics={where}"


def xyxy(cx: float, cy: float, w: float, h: float) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


@pytest.fixture
def ds(tmp_path: Path) -> Path:
    """The standard layout: ``images/{train,val}`` beside ``labels/{train,val}``."""
    root = tmp_path / "ds"
    image(root / "images" / "train" / "a.jpg", (40, 30))
    image(root / "images" / "train" / "sub" / "b.png")
    image(root / "images" / "val" / "c.png", (20, 10))
    (root / "images" / "train" / "notes.md").write_text("not an image")
    labels(root / "labels" / "train" / "a.txt", "0 0.5 0.5 0.2 0.4", "", "1 0.1 0.2 0.2 0.3")
    labels(root / "labels" / "train" / "sub" / "b.txt", "1 0.9 0.9 0.4 0.4")
    return root  # val/c.png has no label file: a background image


def read(spec: str, skip: bool = False) -> dict[str, object]:
    reader = open_source(spec, skip_invalid=skip)
    return {r.image_id: r for r in reader}


def test_directory_layout(ds: Path) -> None:
    spec = data_yaml(ds / "data.yaml", path=str(ds), train="images/train", val="images/val",
                     nc=2)
    reader = open_source(spec)
    records = {r.image_id: r for r in reader}
    assert [c.name for c in reader.classes] == NAMES
    assert set(records) == {"images/train/a", "images/train/sub/b", "images/val/c"}
    a, c = records["images/train/a"], records["images/val/c"]
    np.testing.assert_allclose(a.boxes, [xyxy(0.5, 0.5, 0.2, 0.4), xyxy(0.1, 0.2, 0.2, 0.3)],
                               atol=1e-6)
    assert a.labels.tolist() == [0, 1] and (a.width, a.height) == (40, 30)
    assert len(c.labels) == 0 and (c.width, c.height) == (20, 10)
    assert {i: r.split for i, r in records.items()} == {
        "images/train/a": "train", "images/train/sub/b": "train", "images/val/c": "val"}
    assert reader.image_uri(a.file_name) == str(ds / "images" / "train" / "a.jpg")
    assert reader.missing_label_files == 1 and reader.skipped == {}


def test_list_of_dirs_names_mapping_and_default_root(tmp_path: Path) -> None:
    for part, n in (("p1", 2), ("p2", 1)):
        for i in range(n):
            image(tmp_path / part / "images" / f"{part}_{i}.png")
            labels(tmp_path / part / "labels" / f"{part}_{i}.txt", "1 0.5 0.5 0.5 0.5")
    image(tmp_path / "v" / "images" / "v.png")
    (tmp_path / "data.yaml").write_text(
        "train: [p1/images, p2/images]\nval: v/images\nnames: {0: person, 1: car}\n")
    reader = open_source(f"u:ultralytics={tmp_path / 'data.yaml'}")
    records = list(reader)
    assert [c.name for c in reader.classes] == NAMES
    assert [(r.image_id, r.split) for r in records] == [
        ("p1/images/p1_0", "train"), ("p1/images/p1_1", "train"), ("p2/images/p2_0", "train"),
        ("v/images/v", "val")]
    assert sum(len(r.labels) for r in records) == 3


def test_txt_lists_relative_path_and_dotdot_entry(tmp_path: Path) -> None:
    root = tmp_path / "data" / "ds"
    for name in ("a", "b", "c", "d"):
        image(root / "images" / f"{name}.jpg")
        labels(root / "labels" / f"{name}.txt", "0 0.5 0.5 0.1 0.1")
    (root / "lists").mkdir()
    (root / "lists" / "train.txt").write_text(
        f"./../images/a.jpg\nimages/b.jpg\n\n{root / 'images' / 'c.jpg'}\nreadme.md\n")
    (root / "val.txt").write_text("./images/d.jpg\n")
    spec = data_yaml(tmp_path / "cfg" / "data.yaml", path="../data/ds", train="lists/train.txt",
                     val="../val.txt")  # "../val.txt" is found as "val.txt", as ultralytics does
    records = read(spec)
    assert {i: r.split for i, r in records.items()} == {
        "images/a": "train", "images/b": "train", "images/c": "train", "images/d": "val"}


def test_label_rule_replaces_the_last_images_component() -> None:
    assert label_key("d/images/x/images/a.b.jpg") == "d/images/x/labels/a.b.txt"
    assert label_key("d/pics/a.png") == "d/pics/a.txt"


def test_polygon_lines_give_their_bounding_box(ds: Path) -> None:
    labels(ds / "labels" / "val" / "c.txt", "1 0.1 0.2 0.5 0.1 0.3 0.6")
    spec = data_yaml(ds / "data.yaml", train="images/train", val="images/val")
    np.testing.assert_allclose(read(spec)["images/val/c"].boxes, [[0.1, 0.1, 0.5, 0.6]],
                               atol=1e-6)


def test_boxes_outside_the_image_are_passed_unclipped(ds: Path) -> None:
    labels(ds / "labels" / "val" / "c.txt", "0 0.95 0.5 0.2 1.4")
    spec = data_yaml(ds / "data.yaml", train="images/train", val="images/val")
    np.testing.assert_allclose(read(spec)["images/val/c"].boxes, [[0.85, -0.2, 1.05, 1.2]],
                               atol=1e-6)


@pytest.mark.parametrize("line", ["0 0.5 0.5 0.2", "0 0.5 0.5 0.2 0.2 0.1"])
def test_bad_line_error_or_counted_skip(ds: Path, line: str) -> None:
    labels(ds / "labels" / "val" / "c.txt", "1 0.5 0.5 0.1 0.1", line)
    spec = data_yaml(ds / "data.yaml", train="images/train", val="images/val")
    with pytest.raises(DatasetError, match=rf"labels/val/c\.txt: line 2: expected 'class cx "
                                           rf"cy w h', got '{line}'"):
        read(spec)
    reader = open_source(spec, skip_invalid=True)
    records = {r.image_id: r for r in reader}
    assert len(records["images/val/c"].labels) == 1 and reader.skipped == {"bad_line": 1}


@pytest.mark.parametrize("cls", ["2", "-1"])
def test_class_index_out_of_range(ds: Path, cls: str) -> None:
    labels(ds / "labels" / "val" / "c.txt", f"{cls} 0.5 0.5 0.1 0.1")
    spec = data_yaml(ds / "data.yaml", train="images/train", val="images/val")
    with pytest.raises(DatasetError, match=rf"c\.txt: line 1: field 'class' value {cls} is not "
                                           r"in 0\.\.1"):
        read(spec)
    reader = open_source(spec, skip_invalid=True)
    assert len(list(reader)) == 3 and reader.skipped == {"unknown_category": 1}


@pytest.mark.parametrize("text, match", [
    ("train: images/train\nval: images/val\n", "field 'names' is missing"),
    ("names: person\ntrain: a\nval: b\n", "field 'names' must be a list or a mapping"),
    ("names: {0: person, 2: car}\ntrain: a\nval: b\n", r"field 'names' keys must be 0\.\.1"),
    ("names: [person, car]\nnc: 3\ntrain: a\nval: b\n", "field 'nc' is 3 but 'names' has 2"),
    ("- train\n- val\n", "top level must be a mapping"),
    ("names: [person\ntrain: a\n", "cannot parse YAML: line 2, column 6: expected ','"),
    ("names: [person]\nval: images/val\n", "field 'train' must be a directory of images"),
])
def test_bad_yaml(ds: Path, text: str, match: str) -> None:
    (ds / "data.yaml").write_text(text)
    with pytest.raises(DatasetError, match=rf"data\.yaml: {match}"):
        open_source(f"u:ultralytics={ds / 'data.yaml'}")


def test_missing_train_dir_and_missing_yaml(ds: Path) -> None:
    spec = data_yaml(ds / "data.yaml", train="images/nope", val="images/val")
    with pytest.raises(DatasetError, match=r"field 'train' entry 'images/nope': .*images/nope "
                                           "does not exist"):
        read(spec)
    with pytest.raises(DatasetError, match=r"other\.yaml: no such file"):
        open_source(f"u:ultralytics={ds / 'other.yaml'}")


def test_image_in_train_and_val_is_an_error_naming_both(ds: Path) -> None:
    spec = data_yaml(ds / "data.yaml", train="images", val="images/val")
    with pytest.raises(DatasetError, match=r"val/c\.png is listed in both field 'train' entry "
                                           r"'images' and field 'val' entry 'images/val'"):
        read(spec, skip=True)


def test_duplicate_image_id_and_missing_or_broken_images(ds: Path) -> None:
    image(ds / "images" / "val" / "c.jpg")
    (ds / "images" / "val" / "z.png").write_bytes(b"not a png")
    (ds / "val.txt").write_text("images/val/c.png\nimages/val/gone.png\n")
    spec = data_yaml(ds / "data.yaml", train="images/train", val="images/val")
    with pytest.raises(DatasetError, match=r"c\.jpg .* and .*c\.png .* share image id "
                                           r"'images/val/c' and label file .*labels/val/c\.txt"):
        read(spec)
    reader = open_source(spec, skip_invalid=True)
    assert len(list(reader)) == 3
    assert reader.skipped == {"duplicate_image_id": 1, "bad_image": 1}
    spec = data_yaml(ds / "data.yaml", train="images/train", val="val.txt")
    with pytest.raises(DatasetError, match=r"gone\.png: image not found \(listed as .*line 2 "
                                           r"of .*val\.txt\)"):
        read(spec)
    reader = open_source(spec, skip_invalid=True)
    assert len(list(reader)) == 3 and reader.skipped == {"missing_image": 1}


def test_unify_reads_the_yaml_and_keeps_its_splits(ds: Path, tmp_path: Path) -> None:
    labels(ds / "labels" / "val" / "c.txt", "0 0.5 0.5 0.2 0.2", "1 0.5 0.5 0.2")
    (tmp_path / "space.csv").write_text("name,u\nhuman,person\nvehicle,car\n")
    spec = data_yaml(ds / "data.yaml", path=str(ds), train="images/train", val="images/val")
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=r"c\.txt: line 2"):
        unify([spec], str(tmp_path / "space.csv"), out, progress=False)
    result = unify([spec], str(tmp_path / "space.csv"), out, progress=False, skip_invalid=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["splits"] == {"train": 2, "val": 1}
    assert summary["sources"]["u"]["skipped"] == {"bad_line": 1}
    assert "skipped {'bad_line': 1}" in result.report_lines()[1]
    rows = [row for b in iter_manifest(out) for row in b.to_pylist()]
    assert {r["image_id"]: (r["split"], r["classes"]) for r in rows} == {
        "images/train/a": ("train", [0, 1]), "images/train/sub/b": ("train", [1]),
        "images/val/c": ("val", [0])}
    assert all(Path(r["path"]).is_file() and r["width"] > 0 for r in rows)


class _Unseekable(io.BytesIO):
    def seekable(self) -> bool:
        return False


class _FakeS3(LocalStore):
    """A bucket in a directory: ``s3://`` URIs and unseekable streams, as S3Store has."""

    def uri(self, key: str = "") -> str:
        return f"s3://bkt/{check_key(key)}" if key else "s3://bkt"

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[io.BytesIO]:
        yield _Unseekable(self._existing(key).read_bytes())


def test_dataset_on_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = tmp_path / "bkt"
    root = bucket / "sets" / "ds"
    image(root / "images" / "train" / "a.png", (33, 17))
    # an ICC profile larger than the first bytes read pushes the JPEG's size marker past them
    image(root / "images" / "val" / "b.jpg", (50, 60), icc_profile=bytes(200_000))
    labels(root / "labels" / "train" / "a.txt", "1 0.5 0.5 0.2 0.2")
    data_yaml(bucket / "cfg" / "data.yaml", path="../sets/ds", train="images/train",
              val="images/val")

    def fake_open_store(uri: str) -> LocalStore:
        assert uri == "s3://bkt"
        return _FakeS3(bucket)

    monkeypatch.setattr(ul, "open_store", fake_open_store)
    reader = open_source("u:ultralytics=s3://bkt/cfg/data.yaml")
    records = {r.image_id: r for r in reader}
    assert {i: (r.width, r.height, r.split) for i, r in records.items()} == {
        "images/train/a": (33, 17, "train"), "images/val/b": (50, 60, "val")}
    assert reader.image_uri(records["images/val/b"].file_name) == (
        "s3://bkt/sets/ds/images/val/b.jpg")
