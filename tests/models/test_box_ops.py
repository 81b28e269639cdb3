"""Box math: overlap measures against hand-computed values, encodings round-trip, NMS."""

from __future__ import annotations

import pytest
import torch

from damo_core.models.layers.box_ops import (
    aligned_giou,
    aligned_iou,
    batched_nms,
    bbox2distance,
    box_area,
    distance2bbox,
    nms,
    pairwise_iou,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_box_area_clamps_inverted_boxes() -> None:
    boxes = _t([[0, 0, 2, 3], [5, 5, 4, 8]])
    assert box_area(boxes).tolist() == [6.0, 0.0]


def test_identical_boxes_have_iou_and_giou_one() -> None:
    boxes = _t([[0, 0, 10, 10], [3.5, 2, 7, 9]])
    torch.testing.assert_close(aligned_iou(boxes, boxes), torch.ones(2))
    torch.testing.assert_close(aligned_giou(boxes, boxes), torch.ones(2))
    torch.testing.assert_close(pairwise_iou(boxes, boxes).diagonal(), torch.ones(2))


def test_partial_overlap_known_values() -> None:
    # Intersection 1, union 4 + 4 - 1 = 7, enclosing box 3 x 3 = 9.
    a, b = _t([[0, 0, 2, 2]]), _t([[1, 1, 3, 3]])
    torch.testing.assert_close(aligned_iou(a, b), torch.tensor([1 / 7]))
    torch.testing.assert_close(aligned_giou(a, b), torch.tensor([1 / 7 - 2 / 9]))


def test_disjoint_boxes_known_giou() -> None:
    # IoU 0, union 2, enclosing box 3 x 1: GIoU = 0 - (3 - 2) / 3.
    a, b = _t([[0, 0, 1, 1]]), _t([[2, 0, 3, 1]])
    assert aligned_iou(a, b).item() == 0.0
    torch.testing.assert_close(aligned_giou(a, b), torch.tensor([-1 / 3]))


def test_degenerate_boxes_give_zero_not_nan() -> None:
    point = _t([[5, 5, 5, 5]])
    assert pairwise_iou(point, point).item() == 0.0
    assert torch.isfinite(aligned_giou(point, point)).all()


def test_pairwise_matches_aligned_on_every_pair() -> None:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(7, 2, generator=g) * 50
    a = torch.cat([xy, xy + torch.rand(7, 2, generator=g) * 30 + 1], dim=1)
    xy = torch.rand(5, 2, generator=g) * 50
    b = torch.cat([xy, xy + torch.rand(5, 2, generator=g) * 30 + 1], dim=1)
    full = pairwise_iou(a, b)
    assert full.shape == (7, 5)
    rows, cols = torch.meshgrid(torch.arange(7), torch.arange(5), indexing="ij")
    flat = aligned_iou(a[rows.flatten()], b[cols.flatten()]).view(7, 5)
    torch.testing.assert_close(full, flat)
    torch.testing.assert_close(full, pairwise_iou(b, a).T)


def test_distance_encoding_round_trip() -> None:
    points = _t([[10, 10], [0, 0]])
    boxes = _t([[4, 7, 13, 20], [-3, -1, 2, 5]])
    dist = bbox2distance(points, boxes)
    torch.testing.assert_close(dist, _t([[6, 3, 3, 10], [3, 1, 2, 5]]))
    torch.testing.assert_close(distance2bbox(points, dist), boxes)


def test_distance_decode_broadcasts_over_batch() -> None:
    points = _t([[8, 8], [16, 8]])
    dist = torch.ones(3, 2, 4)
    out = distance2bbox(points, dist)
    assert out.shape == (3, 2, 4)
    torch.testing.assert_close(out[2, 1], _t([[15, 7, 17, 9]])[0])


def test_bbox2distance_clamps_to_bin_range() -> None:
    points = _t([[10, 10]])
    boxes = _t([[12, -100, 11, 200]])  # left negative, top / bottom too far
    dist = bbox2distance(points, boxes, max_dist=16.0)  # the reference's reg_max - 0.1
    torch.testing.assert_close(dist, _t([[0, 15.9, 1, 15.9]]))


def test_xywh_round_trip() -> None:
    xywh = _t([[1, 2, 3, 4]])
    torch.testing.assert_close(xywh_to_xyxy(xywh), _t([[1, 2, 4, 6]]))
    torch.testing.assert_close(xyxy_to_xywh(xywh_to_xyxy(xywh)), xywh)


def _brute_force_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    """Textbook greedy NMS with scalar IoU, independent of the code under test."""

    def iou(p: list[float], q: list[float]) -> float:
        iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        inter = iw * ih
        union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
        return inter / union

    rows = boxes.tolist()
    kept: list[int] = []
    for i in sorted(range(len(rows)), key=lambda k: -scores[k].item()):
        if all(iou(rows[i], rows[j]) <= thr for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_brute_force(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(200, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(200, 2, generator=g) * 40 + 1], dim=1)
    scores = torch.rand(200, generator=g)
    keep = nms(boxes, scores, 0.5)
    assert keep.dtype == torch.long
    assert keep.tolist() == _brute_force_nms(boxes, scores, 0.5)


def test_nms_empty_input() -> None:
    keep = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.long


def test_batched_nms_is_class_aware() -> None:
    boxes = _t([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # Box 1 overlaps box 0 (same class): suppressed. Box 2 is identical to box 0 but of
    # another class: kept. Box 3 is far away: kept.
    classes = torch.tensor([0, 0, 1, 0])
    assert batched_nms(boxes, scores, classes, 0.5).tolist() == [0, 2, 3]
    # Class-agnostic NMS would drop box 2 as well.
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]


def test_batched_nms_matches_per_class_nms() -> None:
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(120, 2, generator=g) * 80 - 20  # negative coordinates too
    boxes = torch.cat([xy, xy + torch.rand(120, 2, generator=g) * 40 + 1], dim=1)
    scores = torch.rand(120, generator=g)
    classes = torch.randint(0, 4, (120,), generator=g)
    expected: list[int] = []
    for c in range(4):
        idx = (classes == c).nonzero(as_tuple=True)[0]
        expected += idx[nms(boxes[idx], scores[idx], 0.45)].tolist()
    got = batched_nms(boxes, scores, classes, 0.45)
    assert sorted(got.tolist()) == sorted(expected)
    assert (scores[got].diff() <= 0).all()
