"""Post-processing: thresholding, multi-label candidates, top-k, class-aware NMS, caps."""

from __future__ import annotations

import pytest
import torch

from damo_core.eval.postprocess import Detections, nms_defaults, postprocess


def _one(scores: list[list[float]], boxes: list[list[float]], **kwargs: object) -> Detections:
    """Post-process a single image given as nested lists."""
    (det,) = postprocess(torch.tensor([scores]), torch.tensor([boxes]), **kwargs)
    return det


def test_multi_label_anchor_yields_one_detection_per_passing_class() -> None:
    det = _one([[0.9, 0.6, 0.01]], [[0.0, 0.0, 10.0, 10.0]], score_threshold=0.05)
    assert det.labels.tolist() == [0, 1]  # class 2 is below threshold
    assert det.scores.tolist() == pytest.approx([0.9, 0.6])
    assert det.boxes.tolist() == [[0.0, 0.0, 10.0, 10.0]] * 2


def test_threshold_is_strict() -> None:
    det = _one([[0.05], [0.0501]], [[0, 0, 1, 1], [5, 5, 6, 6]], score_threshold=0.05)
    assert det.scores.tolist() == pytest.approx([0.0501])


def test_nms_suppresses_overlap_within_a_class_only() -> None:
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [1, 0, 11, 10]]  # IoU(0, 1) = 9/11 ≈ 0.82
    scores = [[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]]
    det = _one(scores, boxes, iou_threshold=0.7)
    assert det.labels.tolist() == [0, 1]  # box 1 suppressed by box 0; box 2 is another class
    assert det.scores.tolist() == pytest.approx([0.9, 0.7])
    det = _one(scores, boxes, iou_threshold=0.85)  # overlap below threshold: all kept
    assert det.scores.tolist() == pytest.approx([0.9, 0.8, 0.7])


def test_pre_nms_topk_and_max_detections_keep_the_best() -> None:
    n = 50
    boxes = [[20.0 * i, 0.0, 20.0 * i + 10, 10.0] for i in range(n)]  # disjoint
    scores = [[0.1 + 0.8 * ((i * 7) % n) / n] for i in range(n)]  # shuffled distinct scores
    best = sorted((s[0] for s in scores), reverse=True)
    det = _one(scores, boxes, pre_nms_topk=10, max_detections=100)
    assert det.scores.tolist() == pytest.approx(best[:10])
    det = _one(scores, boxes, pre_nms_topk=1000, max_detections=5)
    assert det.scores.tolist() == pytest.approx(best[:5])
    det = _one(scores, boxes, pre_nms_topk=0, max_detections=0)  # caps disabled
    assert len(det) == n


def test_output_is_sorted_and_boxes_match_their_anchor() -> None:
    torch.manual_seed(0)
    xy = torch.rand(1, 200, 2) * 500
    boxes = torch.cat([xy, xy + 5 + torch.rand(1, 200, 2) * 50], dim=-1)
    scores = torch.rand(1, 200, 3)
    (det,) = postprocess(scores, boxes, score_threshold=0.2, iou_threshold=0.5)
    assert 0 < len(det) <= 100
    assert torch.all(det.scores[:-1] >= det.scores[1:])
    # Each kept (box, label, score) triple must come from the same input anchor.
    for box, label, score in zip(det.boxes, det.labels, det.scores, strict=True):
        anchor = (boxes[0] == box).all(dim=-1).nonzero().flatten()
        assert scores[0, anchor, label].tolist() == pytest.approx([score.item()])


def test_empty_and_batch_independence() -> None:
    scores = torch.zeros(2, 30, 4)
    scores[1, 3, 2] = 0.9
    boxes = torch.rand(2, 30, 4) * 10
    boxes[..., 2:] += boxes[..., :2]
    empty, one = postprocess(scores, boxes)
    assert empty.boxes.shape == (0, 4) and empty.scores.shape == (0,)
    assert empty.labels.shape == (0,) and empty.labels.dtype == torch.long
    assert one.labels.tolist() == [2] and torch.equal(one.boxes[0], boxes[1, 3])


def test_non_finite_boxes_are_dropped() -> None:
    det = _one([[0.9], [0.8]], [[0, 0, float("nan"), 5], [0, 0, 5, 5]])
    assert det.scores.tolist() == pytest.approx([0.8])


def test_shape_errors_are_explicit() -> None:
    with pytest.raises(ValueError, match=r"\[B, N, C\]"):
        postprocess(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="disagree"):
        postprocess(torch.zeros(1, 5, 3), torch.zeros(1, 6, 4))


def test_reference_thresholds_per_model_family() -> None:
    assert nms_defaults("damoyolo_ns") == (0.03, 0.65)
    assert nms_defaults("damoyolo_nl") == (0.03, 0.65)
    assert nms_defaults("damoyolo_s") == (0.05, 0.7)
    assert nms_defaults(None) == (0.05, 0.7)
