"""Same images, same boxes, same AP: a COCO ``dataset.yaml`` and an ultralytics ``data.yaml``
score the same pycocotools numbers (within 1e-6) read directly and through the manifest
they convert to (:mod:`damo_core.data.resolve`).

An untrained model scores about 0 either way, so agreement of its numbers proves little; the
same-AP checks therefore also score detections made from the ground truth (jittered boxes,
misses, false positives), whose AP lies well inside (0, 1). The COCO set is given segment
areas (COCOeval's small/medium/large split reads them, not the box) and a crowd region with a
detection on it, and a ground truth that lost either is shown to score differently, so the
agreement proves both survive the conversion. The ultralytics "direct" ground truth is built
here from the label files and the image headers, independent of the project's readers.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pycocotools.coco import COCO

from damo_core.data.coco import CocoDetection, load_dataset_yaml
from damo_core.data.resolve import manifest_for, open_split
from damo_core.data.synth import generate
from damo_core.eval import Detections, evaluate
from damo_core.eval.evaluator import EvalResult, score_detections
from damo_core.models import build_model

NUM_CLASSES, SIZE = 3, 96
BOX_TOL, STAT_TOL = 1e-3, 1e-6  # pixels; pycocotools numbers
SEGMENT_FILL = 0.6  # every other annotation gets a segment's area, 0.6 of its box's
CROWD_BOX = [56.0, 4.0, 36.0, 30.0]  # xywh, added to the first val image as iscrowd=1


# ----------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("manifest_equality")
    return generate(root / "coco", num_classes=NUM_CLASSES, num_images=40, image_size=SIZE,
                    seed=0)


@pytest.fixture(scope="module")
def coco_yaml(synth: Path) -> Path:
    """The synthetic set with COCO's own areas and a crowd region in its val JSON."""
    val_json = load_dataset_yaml(synth).val_json
    doc = json.loads(val_json.read_text(encoding="utf-8"))
    for k, ann in enumerate(doc["annotations"]):
        if k % 2 == 0:
            ann["area"] = SEGMENT_FILL * ann["bbox"][2] * ann["bbox"][3]
    doc["annotations"].append({
        "id": max(a["id"] for a in doc["annotations"]) + 1, "image_id": doc["images"][0]["id"],
        "category_id": 1, "bbox": CROWD_BOX, "area": 0.7 * CROWD_BOX[2] * CROWD_BOX[3],
        "iscrowd": 1})
    val_json.write_text(json.dumps(doc), encoding="utf-8")
    return synth


@pytest.fixture(scope="module")
def ultra_yaml(synth: Path) -> Path:
    """The synthetic set as an ultralytics dataset: copied images, ``class cx cy w h`` labels
    at full float precision, ``names`` a mapping."""
    spec = load_dataset_yaml(synth)
    root = synth.parent / "ultralytics"
    for split in ("train", "val"):
        ann_file, image_dir = spec.split(split)
        doc = json.loads(ann_file.read_text(encoding="utf-8"))
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for img in doc["images"]:
            shutil.copyfile(image_dir / img["file_name"],
                            root / "images" / split / img["file_name"])
            w, h = img["width"], img["height"]
            lines = []
            for a in doc["annotations"]:
                if a["image_id"] == img["id"] and not a.get("iscrowd", 0):
                    x, y, bw, bh = a["bbox"]
                    numbers = ((x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h)
                    lines.append(f"{a['category_id'] - 1} " + " ".join(map(repr, numbers)))
            label = root / "labels" / split / f"{Path(img['file_name']).stem}.txt"
            label.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val",
                                    "names": dict(enumerate(spec.names))}), encoding="utf-8")
    return data


def _coco(images: list[dict], anns: list[dict], names: Sequence[str]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _direct_ultralytics(data: Path, split: str) -> COCO:
    """pycocotools ground truth straight from the label files (ids 1.. in file-name order,
    ``file_name`` the image's stem)."""
    root = data.parent
    names = yaml.safe_load(data.read_text(encoding="utf-8"))["names"]
    images, anns = [], []
    for iid, path in enumerate(sorted((root / "images" / split).glob("*.jpg")), start=1):
        with Image.open(path) as im:
            w, h = im.size
        images.append({"id": iid, "file_name": path.stem, "width": w, "height": h})
        for line in (root / "labels" / split / f"{path.stem}.txt").read_text().splitlines():
            cls, cx, cy, bw, bh = line.split()
            bw, bh = float(bw) * w, float(bh) * h
            x, y = float(cx) * w - bw / 2, float(cy) * h - bh / 2
            anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": int(cls) + 1,
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
    return _coco(images, anns, [names[i] for i in range(len(names))])


# ----------------------------------------------------------------------------- detections


def _jittered(coco: COCO, image_ids: Sequence[int], seed: int) -> list[Detections]:
    """Detections of each image in ``image_ids`` order, made from its ground truth: a box
    missed one time in six, else jittered by ~8 % of its size; up to two false positives an
    image; and a confident detection inside every crowd region (COCO ignores it)."""
    rng = np.random.default_rng(seed)
    cat_ids = sorted(coco.getCatIds())
    found = []
    for iid in image_ids:
        w, h = coco.imgs[iid]["width"], coco.imgs[iid]["height"]
        rows: list[tuple[list[float], float, int]] = []
        for a in coco.imgToAnns.get(iid, []):
            x, y, bw, bh = a["bbox"]
            label = cat_ids.index(a["category_id"])
            if a["iscrowd"]:
                rows.append(([x + 4, y + 4, x + bw - 4, y + bh - 4], 0.95, label))
            elif rng.random() >= 1 / 6:
                box = np.array([x, y, x + bw, y + bh]) + rng.normal(0, 0.08, 4) * [bw, bh, bw, bh]
                rows.append((box.tolist(), float(rng.uniform(0.2, 1.0)), label))
        for _ in range(int(rng.integers(0, 3))):
            x0, y0, side = rng.uniform(0, w - 16), rng.uniform(0, h - 16), rng.uniform(8, 30)
            rows.append(([x0, y0, min(x0 + side, w), min(y0 + side, h)],
                         float(rng.uniform(0.05, 0.9)), int(rng.integers(len(cat_ids)))))
        rows.sort(key=lambda r: -r[1])
        found.append(Detections(torch.tensor([r[0] for r in rows]).reshape(-1, 4),
                                torch.tensor([r[1] for r in rows]),
                                torch.tensor([r[2] for r in rows], dtype=torch.long)))
    return found


def _assert_same(direct: EvalResult, via: EvalResult) -> None:
    assert len(direct.stats) == len(via.stats) == 12
    for k, (a, b) in enumerate(zip(direct.stats, via.stats, strict=True)):
        assert abs(a - b) <= STAT_TOL, f"stat {k}: direct {a!r}, via the manifest {b!r}"
    assert direct.per_class_ap.keys() == via.per_class_ap.keys()
    for name, ap in direct.per_class_ap.items():
        assert abs(ap - via.per_class_ap[name]) <= STAT_TOL, name
    assert (direct.num_images, direct.num_detections) == (via.num_images, via.num_detections)


# ----------------------------------------------------------------------------- COCO


def test_coco_same_images_and_boxes(coco_yaml: Path) -> None:
    direct = CocoDetection.from_spec(load_dataset_yaml(coco_yaml), "val")
    via = open_split(coco_yaml, "val")
    assert len(direct) == len(via) == 10
    for i in range(len(direct)):
        a, b = direct[i], via[i]
        assert Path(b.file_name) == direct.image_dir / a.file_name
        assert np.array_equal(a.image, b.image)
        assert a.boxes.shape == b.boxes.shape and len(a.boxes) > 0
        np.testing.assert_allclose(b.boxes, a.boxes, rtol=0, atol=BOX_TOL)
        assert np.array_equal(a.labels, b.labels)


def test_coco_areas_and_crowd_survive(coco_yaml: Path) -> None:
    """Every annotation, crowd ones included, keeps its category, box, area and crowd flag."""
    direct = CocoDetection.from_spec(load_dataset_yaml(coco_yaml), "val")
    via = open_split(coco_yaml, "val")
    crowd = 0
    for a_id, b_id in zip(direct.image_ids, via.image_ids, strict=True):
        a_anns, b_anns = direct.coco.imgToAnns.get(a_id, []), via.coco.imgToAnns.get(b_id, [])
        assert len(a_anns) == len(b_anns)
        for a, b in zip(a_anns, b_anns, strict=True):
            assert (a["category_id"], a["iscrowd"]) == (b["category_id"], b["iscrowd"])
            np.testing.assert_allclose(b["bbox"], a["bbox"], rtol=0, atol=BOX_TOL)
            assert b["area"] == pytest.approx(a["area"], rel=1e-6)
            crowd += a["iscrowd"]
    assert crowd == 1


def test_coco_same_ap(coco_yaml: Path) -> None:
    direct = CocoDetection.from_spec(load_dataset_yaml(coco_yaml), "val")
    via = open_split(coco_yaml, "val")
    found = _jittered(direct.coco, direct.image_ids, seed=0)
    a = score_detections(direct.coco, dict(zip(direct.image_ids, found, strict=True)),
                         cat_ids=direct.cat_ids)
    b = score_detections(via.coco, dict(zip(via.image_ids, found, strict=True)),
                         cat_ids=via.cat_ids)
    _assert_same(a, b)
    assert 0.05 < a.AP < 0.95, a.summary()
    # the check has teeth: box areas for COCO's and no crowd flag score differently
    lossy = copy.deepcopy(direct.coco.dataset)
    for ann in lossy["annotations"]:
        ann.update(area=ann["bbox"][2] * ann["bbox"][3], iscrowd=0)
    lost = score_detections(_coco(lossy["images"], lossy["annotations"], direct.class_names),
                            dict(zip(direct.image_ids, found, strict=True)),
                            cat_ids=direct.cat_ids)
    assert max(abs(x - y) for x, y in zip(a.stats, lost.stats, strict=True)) > 1e-3


def test_coco_same_ap_through_model(coco_yaml: Path) -> None:
    torch.manual_seed(0)
    model = build_model("damoyolo_ns", num_classes=NUM_CLASSES)
    # an untrained head scores ~0.01 (its prior): a threshold under that keeps detections
    options = {"image_size": SIZE, "workers": 0, "progress": False, "score_threshold": 1e-3}
    direct = evaluate(model, CocoDetection.from_spec(load_dataset_yaml(coco_yaml), "val"),
                      **options)
    via = evaluate(model, coco_yaml, **options)
    _assert_same(direct, via)
    assert direct.num_detections > 0  # something was scored, if only badly


# ----------------------------------------------------------------------------- ultralytics


def test_ultralytics_same_boxes(ultra_yaml: Path) -> None:
    gt = _direct_ultralytics(ultra_yaml, "val")
    via = open_split(ultra_yaml, "val")
    by_stem = {info["file_name"]: iid for iid, info in gt.imgs.items()}
    assert sorted(Path(via.path(i)).stem for i in range(len(via))) == sorted(by_stem)
    for i in range(len(via)):
        sample = via[i]
        anns = gt.imgToAnns.get(by_stem[Path(via.path(i)).stem], [])
        xyxy = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        xyxy[:, 2:] += xyxy[:, :2]
        assert sample.boxes.shape == xyxy.shape
        np.testing.assert_allclose(sample.boxes, xyxy, rtol=0, atol=BOX_TOL)
        assert sample.labels.tolist() == [a["category_id"] - 1 for a in anns]


def test_ultralytics_same_ap(ultra_yaml: Path) -> None:
    gt = _direct_ultralytics(ultra_yaml, "val")
    via = open_split(ultra_yaml, "val")
    ids = sorted(gt.getImgIds())
    found = dict(zip((gt.imgs[i]["file_name"] for i in ids), _jittered(gt, ids, seed=1),
                     strict=True))
    a = score_detections(gt, {i: found[gt.imgs[i]["file_name"]] for i in ids},
                         cat_ids=sorted(gt.getCatIds()))
    b = score_detections(via.coco, {i + 1: found[Path(via.path(i)).stem]
                                    for i in range(len(via))}, cat_ids=via.cat_ids)
    _assert_same(a, b)
    assert 0.05 < a.AP < 0.95, a.summary()


@pytest.fixture
def ultra_copy(ultra_yaml: Path, tmp_path: Path) -> Path:
    """A private copy to edit (another path is another conversion)."""
    return shutil.copytree(ultra_yaml.parent, tmp_path / "u") / "data.yaml"


def test_ultralytics_converted_once(ultra_copy: Path) -> None:
    first = manifest_for(ultra_copy)
    summary = Path(first) / "summary.json"
    stamp = summary.stat().st_mtime_ns
    assert manifest_for(ultra_copy) == first
    assert summary.stat().st_mtime_ns == stamp
    ultra_copy.write_text(ultra_copy.read_text(encoding="utf-8") + "# edited\n",
                          encoding="utf-8")
    assert manifest_for(ultra_copy) != first  # the yaml's bytes are fingerprinted
    assert summary.stat().st_mtime_ns == stamp


def test_ultralytics_label_edit_reconverts(ultra_copy: Path) -> None:
    before = open_split(ultra_copy, "val")
    stem = Path(before.path(0)).stem
    label = ultra_copy.parent / "labels" / "val" / f"{stem}.txt"
    lines = label.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) > 1
    label.write_text("".join(lines[1:]), encoding="utf-8")
    after = open_split(ultra_copy, "val")
    assert len(after[0].boxes) == len(lines) - 1
