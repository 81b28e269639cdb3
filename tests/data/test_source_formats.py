"""Readers: COCO/Objects365 JSON, OpenImages CSV, YOLO txt, VOC XML; bad input is named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from damo_core.data.coco import CocoDetection
from damo_core.data.errors import DatasetError
from damo_core.data.formats import open_source, parse_source
from damo_core.data.formats.base import FLAG_CROWD, FLAG_DIFFICULT, FLAG_OCCLUDED
from damo_core.data.synth import generate

OI_HEADER = ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,"
             "IsGroupOf,IsDepiction,IsInside")


def write_oi(root: Path, rows: list[tuple], classes: list[tuple[str, str]],
             header: str = OI_HEADER, class_header: bool = False) -> str:
    """An OpenImages-style source: rows are (image, mid, x0, x1, y0, y1, occluded, group)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [header] + [f"{i},xclick,{m},1,{x0},{x1},{y0},{y1},{occ},0,{grp},0,0"
                        for i, m, x0, x1, y0, y1, occ, grp in rows]
    (root / "boxes.csv").write_text("\n".join(lines) + "\n")
    desc = ["LabelName,DisplayName"] if class_header else []
    (root / "classes.csv").write_text("\n".join(desc + [f"{m},{n}" for m, n in classes]) + "\n")
    return f"oi={root / 'boxes.csv'},classes={root / 'classes.csv'}"


def write_coco(path: Path, images: list[dict], anns: list[dict], cats: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return f"coco={path}"


def coco_box(aid: int, iid: int, cat: int, bbox: list[float]) -> dict:
    return {"id": aid, "image_id": iid, "category_id": cat, "bbox": bbox, "iscrowd": 0}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, num_classes=3, num_images=12, image_size=96, seed=1)
    return root


def test_coco_stream_matches_reference_reader(synth: Path) -> None:
    ann = synth / "annotations" / "instances_train.json"
    ref = CocoDetection(ann, synth / "images" / "train")
    reader = open_source(f"coco={ann},images={synth / 'images' / 'train'}")
    assert [c.name for c in reader.classes] == list(ref.class_names)
    records = list(reader)
    assert [int(r.image_id) for r in records] == ref.image_ids
    for i, rec in enumerate(records):
        sample = ref[i]
        scale = np.array([rec.width, rec.height] * 2, np.float32)
        np.testing.assert_allclose(rec.boxes * scale, sample.boxes, atol=1e-3)
        np.testing.assert_array_equal(rec.labels, sample.labels)
    assert reader.image_uri(records[0].file_name).startswith(str(synth / "images" / "train"))


def test_coco_duplicate_image_id_error_or_counted_skip(tmp_path: Path) -> None:
    images = [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
              {"id": 1, "file_name": "b.jpg", "width": 10, "height": 10}]
    spec = write_coco(tmp_path / "c.json", images, [coco_box(1, 1, 1, [1, 1, 2, 2])],
                      [{"id": 1, "name": "x"}])
    with pytest.raises(DatasetError, match=r"c\.json.*field 'id' value 1 is duplicated"):
        list(open_source(spec))
    reader = open_source(spec, skip_invalid=True)
    assert len(list(reader)) == 1 and reader.skipped == {"duplicate_image_id": 1}


def test_coco_missing_size_and_unknown_category(tmp_path: Path) -> None:
    spec = write_coco(tmp_path / "c.json", [{"id": 1, "file_name": "a.jpg", "width": 10}],
                      [], [{"id": 1, "name": "x"}])
    with pytest.raises(DatasetError, match="field 'height' has bad value None"):
        list(open_source(spec))
    spec = write_coco(tmp_path / "d.json",
                      [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
                      [coco_box(7, 1, 9, [1, 1, 2, 2])], [{"id": 1, "name": "x"}])
    with pytest.raises(DatasetError, match="annotation id 7: field 'category_id'.*9"):
        list(open_source(spec))
    (tmp_path / "bad.json").write_text('{"categories": [{"id": 1, "name": "x"}], "images": [')
    with pytest.raises(DatasetError, match="bad.json: cannot parse JSON"):
        list(open_source(f"o365={tmp_path / 'bad.json'}"))


def test_openimages_groups_boxes_and_flags(tmp_path: Path) -> None:
    rows = [("img2", "/m/b", 0.1, 0.5, 0.2, 0.6, 1, 0), ("img1", "/m/a", 0, 1, 0, 1, 0, 1),
            ("img2", "/m/a", 0.5, 0.9, 0.5, 0.9, 0, 0)]
    spec = write_oi(tmp_path, rows, [("/m/a", "Apple"), ("/m/b", "Ball")], class_header=True)
    reader = open_source(spec)
    assert [(c.key, c.name) for c in reader.classes] == [("/m/a", "Apple"), ("/m/b", "Ball")]
    records = {r.image_id: r for r in reader}
    assert set(records) == {"img1", "img2"}
    img2 = records["img2"]
    np.testing.assert_allclose(img2.boxes, [[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 0.9, 0.9]])
    assert img2.labels.tolist() == [1, 0] and img2.flags.tolist() == [FLAG_OCCLUDED, 0]
    assert records["img1"].flags.tolist() == [FLAG_CROWD]
    assert img2.width is None and records["img1"].file_name == "img1.jpg"


def test_openimages_missing_columns_and_unknown_mid(tmp_path: Path) -> None:
    header = OI_HEADER.replace("XMax", "XMaximum")
    spec = write_oi(tmp_path / "a", [("i", "/m/a", 0, 1, 0, 1, 0, 0)], [("/m/a", "A")], header)
    with pytest.raises(DatasetError, match=r"boxes\.csv: box CSV is missing column\(s\) "
                                           r"\['XMax'\]"):
        list(open_source(spec))
    rows = [("i", "/m/a", 0, 1, 0, 1, 0, 0), ("i", "/m/zz", 0, 1, 0, 1, 0, 0),
            ("j", "/m/zz", 0, 1, 0, 1, 0, 0)]
    spec = write_oi(tmp_path / "b", rows, [("/m/a", "A")])
    with pytest.raises(DatasetError, match="field 'LabelName' value '/m/zz'"):
        list(open_source(spec))
    reader = open_source(spec, skip_invalid=True)
    assert [r.image_id for r in reader] == ["i"] and reader.skipped == {"unknown_class": 2}


def test_yolo_reader(tmp_path: Path) -> None:
    (tmp_path / "images" / "sub").mkdir(parents=True)
    (tmp_path / "labels" / "sub").mkdir(parents=True)
    (tmp_path / "images" / "sub" / "a.jpg").write_bytes(b"x")
    (tmp_path / "images" / "b.png").write_bytes(b"x")
    (tmp_path / "labels" / "sub" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.2 0.2\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    reader = open_source(f"yolo={tmp_path}")
    records = {r.image_id: r for r in reader}
    assert set(records) == {"sub/a", "b"} and len(records["b"].labels) == 0
    np.testing.assert_allclose(records["sub/a"].boxes, [[0.4, 0.3, 0.6, 0.7], [0, 0, 0.2, 0.2]],
                               atol=1e-6)
    assert records["sub/a"].labels.tolist() == [1, 0]
    (tmp_path / "labels" / "b.txt").write_text("5 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match=r"b\.txt: line 1: field 'class' value 5"):
        list(open_source(f"mine:yolo={tmp_path}"))


def test_voc_reader(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    xml = ("<annotation><filename>x.jpg</filename><size><width>200</width><height>100</height>"
           "</size><object><name>dog</name><difficult>1</difficult><bndbox><xmin>11</xmin>"
           "<ymin>1</ymin><xmax>110</xmax><ymax>50</ymax></bndbox></object><object><name>cat"
           "</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox>"
           "</object></annotation>")
    (tmp_path / "Annotations" / "x.xml").write_text(xml)
    reader = open_source(f"voc={tmp_path}")
    assert [c.name for c in reader.classes] == ["cat", "dog"]
    (rec,) = list(reader)
    np.testing.assert_allclose(rec.boxes, [[0.05, 0, 0.55, 0.5], [0, 0, 0.1, 0.2]])
    assert rec.labels.tolist() == [1, 0] and rec.flags.tolist() == [FLAG_DIFFICULT, 0]
    assert reader.image_uri(rec.file_name) == f"{tmp_path}/JPEGImages/x.jpg"
    (tmp_path / "Annotations" / "y.xml").write_text("<annotation><filename>")
    with pytest.raises(DatasetError, match=r"y\.xml: cannot parse XML"):
        open_source(f"voc={tmp_path}")


@pytest.mark.parametrize("text, match", [
    ("coco", "expected NAME"), ("x=/a", "unknown format 'x'"), ("a:tf=/a", "unknown format"),
    ("oi=/a,labels=/b", "option 'labels=/b'"),
])
def test_parse_source_errors(text: str, match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        parse_source(text)


def test_parse_source_fields() -> None:
    spec = parse_source("objects:o365=s3://b/o365/train.json,images=s3://b/o365/img/")
    assert (spec.name, spec.format, spec.uri, spec.images) == (
        "objects", "o365", "s3://b/o365/train.json", "s3://b/o365/img/")
