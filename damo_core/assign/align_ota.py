"""AlignOTA label assignment (DAMO-YOLO report, section 2.3, eq. 2).

Dynamic assigners (OTA, SimOTA) choose positives by a cost mixing classification and
regression quality, but a plain cross-entropy classification cost and an IoU regression cost
live on different scales, so one of them dominates and the chosen anchors are good at one task
and poor at the other. AlignOTA puts the two on a common footing: the classification cost is a
focal-style BCE whose soft label is the IoU of the anchor's own predicted box,

    alpha  = IoU(gt, pred)
    C_reg  = -ln(alpha)
    C_cls  = (alpha - p)^2 * BCE(p, alpha)

so an anchor is cheap only when its score already agrees with how well its box fits. Anchors are
then matched with SimOTA's dynamic top-k: each gt takes as many positives as the (floored) sum
of its best candidate IoUs, and an anchor claimed by several gts goes to the cheapest one.

The function works on one image, takes detached inputs and returns plain tensors; batching
and loss computation are the head's business.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from damo_core.models.layers.box_ops import pairwise_iou

# Added to the IoU inside the log so a zero IoU yields a large, finite regression cost.
_LOG_EPS = 1e-7
# Cost added to (anchor, gt) pairs whose anchor is not both inside the gt box and within the
# centre radius. Such pairs stay eligible (a gt too small to contain any anchor still needs
# positives) but always rank behind every properly placed anchor. The matching runs in float64
# so that costs below this offset keep their ordering.
_OUTSIDE_COST = 1e8
# torch.nn.functional.binary_cross_entropy clamps log() here; mirror it so p in {0, 1} is finite.
_LOG_CLAMP = -100.0


@dataclass(frozen=True)
class Assignment:
    """Per-anchor training targets for one image (``A`` anchors).

    Attributes:
        fg_mask: ``[A]`` bool, True for positives.
        matched_gt: ``[A]`` long, index of the assigned gt, ``-1`` for background.
        labels: ``[A]`` long, class of the assigned gt, ``num_classes`` for background (the
            convention :func:`damo_core.losses.quality_focal_loss` expects).
        score_targets: ``[A]`` float, IoU of the anchor's predicted box with its gt for
            positives (the QFL soft label), 0 elsewhere.
        box_targets: ``[A, 4]`` xyxy gt box for positives, zeros elsewhere.
    """

    fg_mask: Tensor
    matched_gt: Tensor
    labels: Tensor
    score_targets: Tensor
    box_targets: Tensor

    @property
    def num_fg(self) -> int:
        """Number of positive anchors (forces a device sync)."""
        return int(self.fg_mask.sum())


def _background(num_anchors: int, num_classes: int, like: Tensor) -> Assignment:
    """Assignment with every anchor negative (no gts, or no anchor near any gt)."""
    device = like.device
    return Assignment(
        fg_mask=torch.zeros(num_anchors, dtype=torch.bool, device=device),
        matched_gt=torch.full((num_anchors,), -1, dtype=torch.long, device=device),
        labels=torch.full((num_anchors,), num_classes, dtype=torch.long, device=device),
        score_targets=torch.zeros(num_anchors, dtype=like.dtype, device=device),
        box_targets=torch.zeros(num_anchors, 4, dtype=like.dtype, device=device),
    )


def _centre_prior(priors: Tensor, gt_boxes: Tensor, center_radius: float) -> tuple[Tensor, Tensor]:
    """``[A, G]`` masks: anchor point strictly inside the gt box / inside its centre square.

    The centre square has half-side ``center_radius * stride`` of the anchor's own level, so a
    coarse level reaches further (in pixels) from a gt centre than a fine one.
    """
    points = priors[:, None, :2]  # [A, 1, 2]
    strides = priors[:, None, 2:4]  # [A, 1, 2]
    lt = points - gt_boxes[None, :, :2]
    rb = gt_boxes[None, :, 2:] - points
    in_box = torch.cat([lt, rb], dim=-1).amin(dim=-1) > 0
    centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    in_centre = ((points - centres[None]).abs() < center_radius * strides).all(dim=-1)
    return in_box, in_centre


def _classification_cost(scores: Tensor, ious: Tensor, gt_labels: Tensor) -> Tensor:
    """``[A, G]`` focal soft-label BCE cost, summed over classes.

    For pair (a, g) the soft label is ``iou[a, g]`` on g's class and 0 on every other class, and
    each class contributes ``|y - p| ** 2 * BCE(p, y)``: the gt-class term is eq. 2's C_cls, the
    others penalise anchors that fire on unrelated classes. Because the other-class terms do not
    depend on ``iou``, the sum is computed as (all classes treated as negatives) minus (the gt
    class as a negative) plus (the gt class with its soft label), which needs ``[A, C]`` and
    ``[A, G]`` memory instead of ``[A, G, C]``.
    """
    log_p = scores.log().clamp(min=_LOG_CLAMP)
    log_not_p = torch.log1p(-scores).clamp(min=_LOG_CLAMP)
    as_negative = scores.pow(2) * -log_not_p  # [A, C]
    all_negative = as_negative.sum(dim=1, keepdim=True)  # [A, 1]
    p = scores[:, gt_labels]  # [A, G]
    bce = -(ious * log_p[:, gt_labels] + (1 - ious) * log_not_p[:, gt_labels])
    return all_negative - as_negative[:, gt_labels] + (ious - p).pow(2) * bce


def _dynamic_k_matching(cost: Tensor, ious: Tensor, num_candidates: int, topk: int) -> Tensor:
    """``[A, G]`` bool matching: each gt takes its ``k_g`` cheapest anchors.

    ``k_g = max(1, floor(sum of g's top-``topk`` IoUs))``: a gt whose predictions already fit
    well across many anchors earns more positives. ``k_g`` is capped by the number of candidate
    anchors, so non-candidates (infinite cost) are never selected. All gts are handled at once
    by taking the top ``max_g k_g`` per column and masking ranks ``>= k_g``.
    """
    num_anchors = cost.shape[0]
    top_ious = ious.topk(min(topk, num_anchors), dim=0).values
    dynamic_k = top_ious.sum(dim=0).floor().long().clamp(min=1, max=num_candidates)
    max_k = int(dynamic_k.max())
    ranked = cost.topk(max_k, dim=0, largest=False).indices  # [max_k, G]
    rank = torch.arange(max_k, device=cost.device)[:, None]
    matching = torch.zeros_like(cost, dtype=torch.bool)
    matching.scatter_(0, ranked, rank < dynamic_k[None, :])
    return matching


@torch.no_grad()
def assign(
    pred_scores: Tensor,
    pred_boxes: Tensor,
    priors: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    num_classes: int | None = None,
    center_radius: float = 2.5,
    candidate_topk: int = 10,
    cls_weight: float = 1.0,
    iou_weight: float = 3.0,
) -> Assignment:
    """Assign gts to anchors of one image with AlignOTA.

    Args:
        pred_scores: ``[A, C]`` class probabilities (after sigmoid).
        pred_boxes: ``[A, 4]`` decoded xyxy predictions in pixels.
        priors: ``[A, 4]`` as ``(x, y, stride, stride)``, ``(x, y)`` the anchor point.
        gt_boxes: ``[G, 4]`` xyxy gt boxes in pixels; ``G`` may be 0.
        gt_labels: ``[G]`` long class ids in ``[0, C)``.
        num_classes: background label; defaults to ``C``.
        center_radius: half-side of the centre square, in strides.
        candidate_topk: how many best IoUs per gt are summed to get its dynamic ``k``.
        cls_weight, iou_weight: weights of C_cls and C_reg in the total cost.

    Candidate anchors are those inside some gt box or inside some gt's centre square; all other
    anchors are background without further cost. For a given gt, candidates not both inside
    its box and its centre square pay a large extra cost, so they are used only when the gt
    lacks enough well-placed anchors. In particular a gt too small to contain any anchor point
    is still matched, to the cheapest anchor(s) of its centre square, unless the conflict step
    hands those anchors to a gt for which they are cheaper. A gt with no anchor within reach
    at all (e.g. lying outside the anchor grid) gets no positives.

    Runs without autograd; gradients never flow through an assignment.
    """
    num_anchors = pred_scores.shape[0]
    if num_classes is None:
        num_classes = pred_scores.shape[1]
    out_dtype = pred_boxes.dtype if pred_boxes.is_floating_point() else torch.float32
    like = pred_boxes.new_empty(0, dtype=out_dtype)
    if gt_boxes.shape[0] == 0 or num_anchors == 0:
        return _background(num_anchors, num_classes, like)

    gt_boxes = gt_boxes.to(torch.float32)
    gt_labels = gt_labels.long()
    in_box, in_centre = _centre_prior(priors.float(), gt_boxes, center_radius)
    candidate = (in_box | in_centre).any(dim=1)
    num_candidates = int(candidate.sum())
    if num_candidates == 0:
        return _background(num_anchors, num_classes, like)

    ious = pairwise_iou(pred_boxes.float(), gt_boxes) * candidate[:, None]
    reg_cost = -(ious + _LOG_EPS).log()
    cls_cost = _classification_cost(pred_scores.float(), ious, gt_labels)
    cost = (cls_weight * cls_cost + iou_weight * reg_cost).double()
    cost = cost + (~(in_box & in_centre)).double() * _OUTSIDE_COST
    cost = cost.masked_fill(~candidate[:, None], float("inf"))

    matching = _dynamic_k_matching(cost, ious, num_candidates, candidate_topk)
    num_matches = matching.sum(dim=1)
    fg_mask = num_matches > 0
    # One gt per anchor: an anchor picked by several gts takes its lowest-cost gt. As in SimOTA
    # the argmin runs over all gts, not only those that picked the anchor.
    matched_gt = torch.where(
        num_matches > 1, cost.argmin(dim=1), matching.to(torch.uint8).argmax(dim=1)
    )
    matched_gt = torch.where(fg_mask, matched_gt, torch.full_like(matched_gt, -1))

    safe_gt = matched_gt.clamp(min=0)
    anchor_idx = torch.arange(num_anchors, device=ious.device)
    labels = torch.where(fg_mask, gt_labels[safe_gt], torch.full_like(safe_gt, num_classes))
    score_targets = torch.where(fg_mask, ious[anchor_idx, safe_gt], torch.zeros_like(ious[:, 0]))
    box_targets = gt_boxes[safe_gt] * fg_mask[:, None]
    return Assignment(
        fg_mask=fg_mask,
        matched_gt=matched_gt,
        labels=labels,
        score_targets=score_targets.to(out_dtype),
        box_targets=box_targets.to(out_dtype),
    )
