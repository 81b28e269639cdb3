"""The detection confusion matrix against one worked by hand.

Five images, three classes (category ids 3/7/11, so the label ↔ id mapping is exercised),
covering each way a detection or an object can end up: a hit, a class confusion, a miss, a
false positive on empty background, a duplicate, a detection on a crowd region of its own class
(ignored) and of another class (false positive), a box overlapping its object too little, and a
wrong-class detection scoring above the right one on the same object (the right one must keep
its hit).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from damo_core.eval import (
    ConfusionMatrix,
    Detections,
    SplitMatches,
    confusion_matrix,
    match_detections,
    plot_confusion_matrix,
    score_detections,
)

CAT_IDS = (3, 7, 11)  # labels 0, 1, 2 = a, b, c
A, B, C = 0, 1, 2
# per image: ground truth (x, y, w, h, category id, iscrowd)
TRUTH = {
    1: [(0, 0, 10, 10, 3, 0), (20, 20, 10, 10, 7, 0)],
    2: [(0, 0, 20, 20, 11, 0), (50, 50, 10, 10, 3, 0)],
    3: [(0, 0, 10, 10, 7, 0), (30, 30, 40, 40, 3, 1)],
    4: [(0, 0, 10, 10, 11, 0)],
    5: [(0, 0, 10, 10, 3, 0)],
}
# per image: detections (x1, y1, x2, y2, score, label)
DETECTIONS = {
    1: [(0, 0, 10, 10, 0.9, A),      # hit a
        (20, 20, 30, 30, 0.8, C)],   # the b object, called c: confusion
    2: [(1, 1, 21, 21, 0.7, C),      # IoU 361/439 = 0.82 with c: hit
        (80, 80, 90, 90, 0.6, B),    # nothing there: false positive
        (50, 50, 60, 60, 0.2, A)],   # the a object, but below 0.3: a miss at 0.3, a hit at 0.1
    3: [(0, 0, 10, 10, 0.95, B),     # hit b
        (0, 1, 10, 11, 0.5, B),      # duplicate of the b hit: false positive
        (35, 35, 45, 45, 0.9, A),    # inside the crowd of a: ignored
        (40, 40, 50, 50, 0.9, C)],   # inside the crowd of a, but c: false positive
    4: [(6, 0, 16, 10, 0.4, C)],     # IoU 0.25 with its c object: a false positive and a miss
    5: [(0, 0, 10, 10, 0.9, B),      # wrong class, higher score ...
        (0, 0, 10, 11, 0.6, A)],     # ... but the a detection (IoU 0.91) keeps the hit
}
# Worked by hand. Rows: predicted a, b, c, background; columns: true a, b, c, background.
EXPECTED_AT_03 = [
    [2, 0, 0, 0],  # a: hits in images 1 and 5 (the crowd one is ignored)
    [0, 1, 0, 3],  # b: hit in 3; false positives in 2, 3 (duplicate) and 5
    [0, 1, 1, 2],  # c: called the b of image 1; hit in 2; false positives in 3 and 4
    [1, 0, 1, 0],  # missed: the a of image 2, the c of image 4
]
EXPECTED_AT_01 = [
    [3, 0, 0, 0],  # the 0.2 detection of image 2 now counts: a hit
    [0, 1, 0, 3],
    [0, 1, 1, 2],
    [0, 0, 1, 0],
]


def hand_built_coco(truth: dict[int, list[tuple]] | None = None) -> COCO:
    truth = TRUTH if truth is None else truth
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in truth]
    anns = [{"id": n, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h],
             "area": w * h, "iscrowd": crowd}
            for n, (image_id, (x, y, w, h, cat, crowd)) in enumerate(
                ((i, box) for i, boxes in truth.items() for box in boxes), start=1)]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns,
                    "categories": [{"id": c, "name": n} for c, n in zip(CAT_IDS, "abc",
                                                                         strict=True)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def hand_built_detections(detections: dict[int, list[tuple]] | None = None
                          ) -> dict[int, Detections]:
    out = {}
    for image_id, rows in (DETECTIONS if detections is None else detections).items():
        table = torch.tensor(rows, dtype=torch.float64)
        out[image_id] = Detections(table[:, :4], table[:, 4], table[:, 5].long())
    return out


@pytest.fixture(scope="module")
def matches() -> SplitMatches:
    return match_detections(hand_built_coco(), hand_built_detections(), cat_ids=CAT_IDS)


@pytest.mark.parametrize(("conf", "expected"), [(0.3, EXPECTED_AT_03), (0.1, EXPECTED_AT_01)])
def test_matrix_equals_the_hand_computed_one(matches: SplitMatches, conf: float,
                                             expected: list[list[int]]) -> None:
    matrix = confusion_matrix(matches, conf=conf)
    assert matrix.labels == ["a", "b", "c", "background"]
    assert matrix.counts == expected


def test_threshold_is_strictly_above(matches: SplitMatches) -> None:
    # 0.2 is the a detection's own score: "strictly above", as the post-processor keeps them
    assert confusion_matrix(matches, conf=0.2).counts == EXPECTED_AT_03
    everything_dropped = confusion_matrix(matches, conf=0.95).counts
    assert everything_dropped == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [3, 2, 2, 0]]


def test_normalisations_and_counts_of_the_split(matches: SplitMatches) -> None:
    matrix = confusion_matrix(matches, conf=0.3)
    column = matrix.normalised("column")
    np.testing.assert_allclose(column[:, A], [2 / 3, 0, 0, 1 / 3])  # recall of a: 2 of 3
    np.testing.assert_allclose(column[:, 3], [0, 3 / 5, 2 / 5, 0])  # where false positives go
    row = matrix.normalised("row")
    np.testing.assert_allclose(row[B], [0, 1 / 4, 0, 3 / 4])  # precision of b: 1 of 4
    np.testing.assert_allclose(row[3], [1 / 2, 0, 1 / 2, 0])
    assert matches.instances().tolist() == [3, 2, 2]  # the crowd region is no object
    assert matches.images_with().tolist() == [3, 2, 2]


def test_json_round_trip_and_png(matches: SplitMatches, tmp_path: Path) -> None:
    matrix = confusion_matrix(matches, conf=0.3)
    path = matrix.to_json(tmp_path / "cm" / "confusion_matrix.json")
    data = json.loads(path.read_text())
    assert (data["rows"], data["columns"]) == ("predicted", "true")
    assert data["counts"] == EXPECTED_AT_03
    assert data["column_normalised"][0][0] == pytest.approx(2 / 3)
    assert data["row_normalised"][1][3] == pytest.approx(3 / 4)
    assert ConfusionMatrix.from_dict(data) == matrix
    for normalise in ("none", "column", "row"):
        png = plot_confusion_matrix(matrix, tmp_path / "cm" / f"{normalise}.png",
                                    normalise=normalise)
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 300
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in (tmp_path / "cm").iterdir()) == [
        "column.png", "confusion_matrix.json", "none.png", "row.png"]


def test_score_detections_carries_the_matrix_at_the_best_f1_threshold() -> None:
    result = score_detections(hand_built_coco(), hand_built_detections(), cat_ids=CAT_IDS)
    assert result.confusion is not None and result.curves is not None
    assert result.confusion.conf == result.curves.best_threshold
    recomputed = confusion_matrix(
        match_detections(hand_built_coco(), hand_built_detections(), cat_ids=CAT_IDS),
        conf=result.curves.best_threshold)
    assert result.confusion == recomputed
    assert result.per_class_instances == {"a": 3, "b": 2, "c": 2}


def test_no_detections_makes_every_object_a_miss() -> None:
    matrix = confusion_matrix(match_detections(hand_built_coco(), {}, cat_ids=CAT_IDS),
                              conf=0.0)
    assert matrix.counts[3] == [3, 2, 2, 0] and matrix.array()[:3].sum() == 0


def test_label_out_of_range_is_a_user_error() -> None:
    bad = {1: Detections(torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([0.9]),
                         torch.tensor([3]))}
    with pytest.raises(ValueError, match="label 3 out of range for 3 classes"):
        match_detections(hand_built_coco(), bad, cat_ids=CAT_IDS)


def test_equal_ious_go_to_the_object_annotated_last_as_in_cocoeval() -> None:
    """The first detection overlaps both a objects with IoU 2/3 exactly. Taking the later one
    (COCOeval's rule) leaves the earlier one for the second detection (IoU 1; 0.43 with the
    later one): two hits. Taking the earlier one would give a hit, a miss and a false
    positive."""
    coco = hand_built_coco({1: [(0, 0, 10, 10, 3, 0), (4, 0, 10, 10, 3, 0)]})
    dets = hand_built_detections({1: [(2, 0, 12, 10, 0.9, A), (0, 0, 10, 10, 0.8, A)]})
    [image] = match_detections(coco, dets, cat_ids=CAT_IDS).images
    assert image.truth.tolist() == [1, 0]
    assert score_detections(coco, dets, cat_ids=CAT_IDS).AP50 == pytest.approx(1.0)
