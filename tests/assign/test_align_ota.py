"""AlignOTA: hand-built scenes with known outcomes, plus a loop-based reference on random scenes."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from damo_core.assign import Assignment, assign
from damo_core.losses import giou_loss
from damo_core.models.layers.box_ops import aligned_iou, pairwise_iou

STRIDE = 8.0
NUM_CLASSES = 3


def _grid(size: int = 64, stride: float = STRIDE) -> torch.Tensor:
    """``(x, y, stride, stride)`` priors with anchor points at cell centres."""
    centres = torch.arange(0, size, stride) + stride / 2
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    n = xs.numel()
    return torch.stack(
        [xs.flatten(), ys.flatten(), torch.full((n,), stride), torch.full((n,), stride)], 1
    )


def _small_boxes(priors: torch.Tensor, half: float = 2.0) -> torch.Tensor:
    """Poor predictions: a 4 x 4 box around every anchor point."""
    return torch.cat([priors[:, :2] - half, priors[:, :2] + half], dim=1)


def _anchor_at(priors: torch.Tensor, x: float, y: float) -> int:
    return int(((priors[:, 0] == x) & (priors[:, 1] == y)).nonzero().item())


def test_assignment_is_frozen() -> None:
    priors = _grid()
    out = assign(
        torch.full((64, 3), 0.1),
        _small_boxes(priors),
        priors,
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.long),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.fg_mask = out.fg_mask  # type: ignore[misc]


def test_empty_image_is_all_background() -> None:
    priors = _grid()
    out = assign(
        torch.rand(64, NUM_CLASSES),
        _small_boxes(priors),
        priors,
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.long),
    )
    assert not out.fg_mask.any() and out.num_fg == 0
    assert (out.matched_gt == -1).all()
    assert (out.labels == NUM_CLASSES).all()
    assert (out.score_targets == 0).all()
    assert out.box_targets.shape == (64, 4) and (out.box_targets == 0).all()


def test_perfect_prediction_is_the_positive() -> None:
    priors = _grid()
    gt = torch.tensor([[16.0, 16.0, 48.0, 48.0]])
    label = torch.tensor([1])
    boxes = _small_boxes(priors)
    scores = torch.full((64, NUM_CLASSES), 0.1)
    best = _anchor_at(priors, 28.0, 28.0)
    boxes[best] = gt[0]
    scores[best] = torch.tensor([0.0, 1.0, 0.0])
    out = assign(scores, boxes, priors, gt, label)
    # Top-10 IoUs sum to 1 + 9 * (16 / 1024) -> dynamic k = 1: only the perfect anchor.
    assert out.fg_mask.nonzero().flatten().tolist() == [best]
    assert out.matched_gt[best] == 0 and out.labels[best] == 1
    torch.testing.assert_close(out.score_targets[best], torch.tensor(1.0))
    torch.testing.assert_close(out.box_targets[best], gt[0])
    fg = out.fg_mask
    torch.testing.assert_close(giou_loss(boxes[fg], out.box_targets[fg]), torch.tensor(0.0))
    assert (out.labels[~fg] == NUM_CLASSES).all() and (out.matched_gt[~fg] == -1).all()


def test_dynamic_k_grows_with_prediction_quality() -> None:
    priors = _grid()
    gt = torch.tensor([[0.0, 0.0, 64.0, 64.0]])
    boxes = gt.repeat(64, 1)  # every anchor predicts the gt exactly
    scores = torch.full((64, NUM_CLASSES), 0.5)
    out = assign(scores, boxes, priors, gt, torch.tensor([2]), candidate_topk=10)
    assert out.num_fg == 10  # sum of the top-10 IoUs = 10
    # Positives must be anchors inside both the box and the 2.5-stride centre square.
    centre_ok = ((priors[:, :2] - 32.0).abs() < 2.5 * STRIDE).all(dim=1)
    assert centre_ok[out.fg_mask].all()


def test_gt_without_anchor_inside_uses_centre_radius() -> None:
    priors = _grid()
    # Anchor points sit at 4, 12, 20, ...: none strictly inside [9, 11].
    gt = torch.tensor([[9.0, 9.0, 11.0, 11.0]])
    assert not ((priors[:, 0] > 9) & (priors[:, 0] < 11)).any()
    out = assign(
        torch.full((64, NUM_CLASSES), 0.2), _small_boxes(priors), priors, gt, torch.tensor([0])
    )
    # Documented behaviour: it is still matched, to anchor(s) of its centre square.
    assert out.num_fg >= 1
    near = ((priors[:, :2] - 10.0).abs() < 2.5 * STRIDE).all(dim=1)
    assert near[out.fg_mask].all()
    assert (out.labels[out.fg_mask] == 0).all()


def test_gt_out_of_reach_gets_no_positive() -> None:
    priors = _grid()
    far = torch.tensor([[500.0, 500.0, 520.0, 520.0]])
    out = assign(torch.rand(64, NUM_CLASSES), _small_boxes(priors), priors, far, torch.tensor([0]))
    assert out.num_fg == 0 and (out.labels == NUM_CLASSES).all()

    gts = torch.cat([torch.tensor([[16.0, 16.0, 48.0, 48.0]]), far])
    out = assign(
        torch.rand(64, NUM_CLASSES), _small_boxes(priors), priors, gts, torch.tensor([1, 0])
    )
    assert out.num_fg >= 1
    assert (out.matched_gt[out.fg_mask] == 0).all()


def test_targets_are_consistent_with_matches() -> None:
    g = torch.Generator().manual_seed(5)
    priors, boxes, scores, gts, labels = _random_scene(g, num_gts=4)
    out = assign(scores, boxes, priors, gts, labels)
    fg = out.fg_mask
    assert out.num_fg > 0
    torch.testing.assert_close(out.labels[fg], labels[out.matched_gt[fg]])
    torch.testing.assert_close(out.box_targets[fg], gts[out.matched_gt[fg]])
    torch.testing.assert_close(out.score_targets[fg], aligned_iou(boxes[fg], out.box_targets[fg]))
    assert (out.score_targets[~fg] == 0).all()


def test_does_not_track_gradients() -> None:
    g = torch.Generator().manual_seed(6)
    priors, boxes, scores, gts, labels = _random_scene(g, num_gts=2)
    out = assign(scores.requires_grad_(), boxes.requires_grad_(), priors, gts, labels)
    assert not out.score_targets.requires_grad and not out.box_targets.requires_grad


# ------------------------------------------------------------- loop-based reference comparison


def _random_scene(
    g: torch.Generator, num_gts: int, crowded: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two pyramid levels over a 64 x 64 image with random gts and predictions.

    By default predictions are small boxes near their anchors (low IoUs, dynamic k = 1).
    ``crowded`` makes every anchor predict a jittered copy of some gt and adds a gt too small
    to contain an anchor point, which exercises larger k, anchors claimed by several gts and
    matches that rely on the centre-radius fallback.
    """
    priors = torch.cat([_grid(64, 8.0), _grid(64, 16.0)])
    num_anchors = priors.shape[0]
    xy = torch.rand(num_gts, 2, generator=g) * 40
    gts = torch.cat([xy, xy + torch.rand(num_gts, 2, generator=g) * 30 + 4], dim=1)
    labels = torch.randint(0, NUM_CLASSES, (num_gts,), generator=g)
    centre = priors[:, :2] + (torch.rand(num_anchors, 2, generator=g) - 0.5) * 4
    half = torch.rand(num_anchors, 2, generator=g) * 16 + 2
    boxes = torch.cat([centre - half, centre + half], dim=1)
    scores = torch.rand(num_anchors, NUM_CLASSES, generator=g) * 0.98 + 0.01
    if crowded:
        gts[0] = torch.tensor([9.0, 9.0, 11.0, 11.0])
        pick = torch.randint(0, num_gts, (num_anchors,), generator=g)
        boxes = gts[pick] + torch.randn(num_anchors, 4, generator=g) * 3
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    return priors, boxes, scores, gts, labels


def _reference_assign(
    scores: torch.Tensor,
    boxes: torch.Tensor,
    priors: torch.Tensor,
    gts: torch.Tensor,
    labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Straightforward per-gt AlignOTA (full [A, G, C] BCE, explicit loops), float64."""
    num_anchors, num_gts = boxes.shape[0], gts.shape[0]
    in_box = torch.zeros(num_anchors, num_gts, dtype=torch.bool)
    in_centre = torch.zeros_like(in_box)
    for j in range(num_gts):
        x, y, s = priors[:, 0], priors[:, 1], priors[:, 2]
        x1, y1, x2, y2 = gts[j]
        in_box[:, j] = (x > x1) & (x < x2) & (y > y1) & (y < y2)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        in_centre[:, j] = ((x - cx).abs() < 2.5 * s) & ((y - cy).abs() < 2.5 * s)
    valid = (in_box | in_centre).any(dim=1)
    idx = valid.nonzero().flatten()
    ious = pairwise_iou(boxes[idx], gts).double()
    p = scores[idx].double()[:, None, :].expand(-1, num_gts, -1)
    soft = F.one_hot(labels, NUM_CLASSES).double()[None] * ious[..., None]
    cls_cost = (F.binary_cross_entropy(p, soft, reduction="none") * (soft - p) ** 2).sum(-1)
    cost = cls_cost + 3.0 * -torch.log(ious + 1e-7)
    cost = cost + (~(in_box & in_centre)[idx]).double() * 1e8
    matching = torch.zeros_like(cost)
    k_all = ious.topk(min(10, idx.numel()), dim=0).values.sum(0).floor().clamp(min=1)
    for j in range(num_gts):
        matching[cost[:, j].topk(int(k_all[j]), largest=False).indices, j] = 1
    matched = torch.full((num_anchors,), -1, dtype=torch.long)
    for row in range(idx.numel()):
        hits = matching[row].nonzero().flatten()
        if hits.numel() == 1:
            matched[idx[row]] = hits[0]
        elif hits.numel() > 1:
            matched[idx[row]] = cost[row].argmin()
    return matched >= 0, matched


@pytest.mark.parametrize(
    "seed,num_gts,crowded",
    [
        (0, 1, False),
        (1, 3, False),
        (2, 6, False),
        (3, 10, False),
        (4, 4, True),
        (5, 8, True),
        (6, 12, True),
    ],
)
def test_matches_loop_reference(seed: int, num_gts: int, crowded: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    priors, boxes, scores, gts, labels = _random_scene(g, num_gts, crowded)
    out: Assignment = assign(scores, boxes, priors, gts, labels, num_classes=NUM_CLASSES)
    ref_fg, ref_matched = _reference_assign(scores, boxes, priors, gts, labels)
    assert torch.equal(out.fg_mask, ref_fg)
    assert torch.equal(out.matched_gt, ref_matched)
    if crowded:
        assert out.num_fg > num_gts  # some gt earned k > 1
