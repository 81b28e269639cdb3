"""QFL, DFL and GIoU losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from damo_core.losses import (
    LOSS_WEIGHTS,
    distribution_focal_loss,
    giou_loss,
    quality_focal_loss,
)
from damo_core.models.layers.box_ops import bbox2distance


def test_loss_weights_of_eq1() -> None:
    assert LOSS_WEIGHTS == {"qfl": 1.0, "dfl": 0.25, "giou": 2.0}


# ---------------------------------------------------------------------------------------- QFL


def test_qfl_hand_computed_positive_and_background() -> None:
    pred = torch.tensor([[0.5, 0.2], [0.3, 0.6]])
    labels = torch.tensor([0, 2])  # row 0 positive of class 0, row 1 background (== C)
    scores = torch.tensor([0.8, 0.0])
    # Row 0: class 0 has soft label 0.8 -> (0.8 - 0.5)^2 * BCE(0.5, 0.8) = 0.09 * ln 2;
    #        class 1 is a negative    -> 0.2^2 * -ln(0.8).
    row0 = 0.09 * math.log(2) + 0.04 * -math.log(0.8)
    # Row 1: both classes negative    -> 0.3^2 * -ln(0.7) + 0.6^2 * -ln(0.4).
    row1 = 0.09 * -math.log(0.7) + 0.36 * -math.log(0.4)
    per_anchor = quality_focal_loss(pred, (labels, scores), reduction="none")
    torch.testing.assert_close(per_anchor, torch.tensor([row0, row1]))
    torch.testing.assert_close(
        quality_focal_loss(pred, (labels, scores)), torch.tensor((row0 + row1) / 2)
    )


def test_qfl_is_zero_when_prediction_equals_soft_target() -> None:
    # |y - p|^beta vanishes when p == y, whatever BCE(p, y) is.
    labels = torch.tensor([1, 0, 3])
    scores = torch.tensor([0.7, 0.35, 0.0])
    pred = torch.zeros(3, 3)
    pred[0, 1], pred[1, 0] = 0.7, 0.35
    loss = quality_focal_loss(pred, (labels, scores), reduction="none")
    torch.testing.assert_close(loss, torch.zeros(3))


def test_qfl_gradient_points_towards_target() -> None:
    pred = torch.tensor([[0.5, 0.9]], requires_grad=True)
    quality_focal_loss(pred, (torch.tensor([0]), torch.tensor([0.8])), reduction="sum").backward()
    assert pred.grad is not None
    assert pred.grad[0, 0] < 0  # p=0.5 below its target 0.8: loss falls as p rises
    assert pred.grad[0, 1] > 0  # negative class at 0.9: loss falls as p drops


def test_reduction_weight_and_avg_factor() -> None:
    pred = torch.tensor([[0.5], [0.5]])
    target = (torch.tensor([1, 1]), torch.tensor([0.0, 0.0]))
    one = 0.25 * math.log(2)  # 0.5^2 * -ln(0.5)
    weight = torch.tensor([1.0, 3.0])
    total = quality_focal_loss(pred, target, weight=weight, reduction="sum")
    torch.testing.assert_close(total, torch.tensor(4 * one))
    torch.testing.assert_close(
        quality_focal_loss(pred, target, weight=weight, avg_factor=8.0), torch.tensor(one / 2)
    )
    with pytest.raises(ValueError):
        quality_focal_loss(pred, target, reduction="sum", avg_factor=2.0)
    with pytest.raises(ValueError):
        quality_focal_loss(pred, target, reduction="avg")


# ---------------------------------------------------------------------------------------- DFL


def _log_softmax(logits: list[float]) -> list[float]:
    norm = math.log(sum(math.exp(v) for v in logits))
    return [v - norm for v in logits]


LOGITS = [0.0, 1.0, 2.0, 0.5, -1.0]


def test_dfl_target_on_a_bin_is_plain_cross_entropy() -> None:
    pred = torch.tensor([LOGITS])
    loss = distribution_focal_loss(pred, torch.tensor([2.0]))
    torch.testing.assert_close(loss, torch.tensor(-_log_softmax(LOGITS)[2]))


def test_dfl_target_between_bins_splits_linearly() -> None:
    pred = torch.tensor([LOGITS])
    logp = _log_softmax(LOGITS)
    expected = -(0.75 * logp[1] + 0.25 * logp[2])  # target 1.25
    torch.testing.assert_close(
        distribution_focal_loss(pred, torch.tensor([1.25])), torch.tensor(expected)
    )


def test_dfl_top_bin_does_not_overflow() -> None:
    # The detection loss never sends the top bin itself (its targets stop at reg_max - 0.1, see
    # below); a direct caller may, and must get plain cross-entropy on that bin.
    pred = torch.tensor([LOGITS])
    loss = distribution_focal_loss(pred, torch.tensor([4.0]))
    torch.testing.assert_close(loss, torch.tensor(-_log_softmax(LOGITS)[4]))


def test_dfl_target_of_a_far_side_is_the_reference_clamp() -> None:
    # As in the reference ZeroHead, a side at or beyond reg_max strides is encoded as
    # reg_max - 0.1 (and a side behind the point as 0), so DFL puts 90% of its weight on the
    # top bin and 10% on the one below.
    reg_max = len(LOGITS) - 1
    points = torch.tensor([[10.0, 10.0]])
    boxes = torch.tensor([[-30.0, 12.0, 12.5, 14.0]])  # left 40 > reg_max, top behind the point
    target = bbox2distance(points, boxes, float(reg_max))
    torch.testing.assert_close(target, torch.tensor([[reg_max - 0.1, 0.0, 2.5, 4.0 - 0.1]]))
    logp = _log_softmax(LOGITS)
    loss = distribution_focal_loss(torch.tensor([LOGITS]), target[:, 0])
    torch.testing.assert_close(loss, torch.tensor(-(0.1 * logp[3] + 0.9 * logp[4])))


def test_dfl_minimum_is_at_the_two_bracketing_bins() -> None:
    # With all mass split 0.6 / 0.4 on bins 3 / 4 the loss equals the entropy of that split,
    # its minimum; putting mass anywhere else costs more.
    target = torch.tensor([3.4])
    best = torch.tensor([[-1e4, -1e4, -1e4, math.log(0.6), math.log(0.4)]])
    entropy = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
    torch.testing.assert_close(distribution_focal_loss(best, target), torch.tensor(entropy))
    assert distribution_focal_loss(torch.zeros(1, 5), target) > entropy


def test_dfl_weight_and_avg_factor() -> None:
    pred = torch.zeros(4, 3)  # uniform: every CE is ln 3
    target = torch.tensor([0.0, 0.5, 1.0, 2.0])
    weight = torch.tensor([1.0, 1.0, 0.0, 2.0])
    loss = distribution_focal_loss(pred, target, weight=weight, avg_factor=4.0)
    torch.testing.assert_close(loss, torch.tensor(math.log(3)))


# --------------------------------------------------------------------------------------- GIoU


def test_giou_loss_zero_for_identical_boxes() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 6.0, 9.0]])
    torch.testing.assert_close(giou_loss(boxes, boxes, reduction="none"), torch.zeros(2))


def test_giou_loss_disjoint_boxes() -> None:
    # GIoU = 0 - (3 - 2) / 3 -> loss 4 / 3.
    pred = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    target = torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    torch.testing.assert_close(giou_loss(pred, target), torch.tensor(4 / 3))


def test_giou_loss_has_gradient_when_disjoint() -> None:
    pred = torch.tensor([[0.0, 0.0, 1.0, 1.0]], requires_grad=True)
    target = torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    giou_loss(pred, target).backward()
    assert pred.grad is not None
    assert pred.grad[0, 2] < 0  # growing the right edge towards the target lowers the loss
