"""Box geometry for the whole package: overlap measures, distance encoding and NMS.

Every box here is ``(x1, y1, x2, y2)`` in absolute pixels unless a function name says otherwise.
Keeping all box math in one module means the assigner, the losses, the head decoder and the
post-processor agree on conventions (no ``+1`` pixel offsets, same epsilons), which is what makes
the IoU used to build score targets equal to the IoU the loss and the evaluator see.

Everything is plain torch and works on any device and under autograd where that makes sense;
torchvision is deliberately not a dependency.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Added to unions and enclosing areas so that degenerate (zero-area) boxes yield IoU 0, not NaN.
_EPS = 1e-6


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``[..., 4]`` xyxy boxes; inverted boxes count as empty rather than negative."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def pairwise_iou(a: Tensor, b: Tensor, eps: float = _EPS) -> Tensor:
    """IoU of every box in ``a[N, 4]`` against every box in ``b[M, 4]``, shape ``[N, M]``.

    Used where each prediction must be compared with each ground truth (label assignment) and
    by NMS. Memory is O(N * M); callers bound N and M.
    """
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clamp(min=eps)


def _aligned_inter_union(a: Tensor, b: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Intersection and (clamped) union of row-aligned box pairs ``a[i]`` / ``b[i]``."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = (box_area(a) + box_area(b) - inter).clamp(min=eps)
    return inter, union


def aligned_iou(a: Tensor, b: Tensor, eps: float = _EPS) -> Tensor:
    """IoU of ``a[i]`` with ``b[i]`` for row-aligned ``[N, 4]`` inputs, shape ``[N]``.

    This is the quality target of QFL: the IoU of a positive prediction with its own gt only,
    which avoids building the full N x N matrix.
    """
    inter, union = _aligned_inter_union(a, b, eps)
    return inter / union


def aligned_giou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Generalised IoU of row-aligned box pairs, shape ``[N]``, in ``(-1, 1]``.

    GIoU subtracts the fraction of the smallest enclosing box not covered by the union, so it
    keeps a useful gradient when the boxes do not overlap (plain IoU is flat at 0 there). That
    is why the regression loss uses it rather than IoU.
    """
    inter, union = _aligned_inter_union(a, b, eps)
    iou = inter / union
    enclose_wh = (
        torch.maximum(a[..., 2:], b[..., 2:]) - torch.minimum(a[..., :2], b[..., :2])
    ).clamp(min=0)
    enclose = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return iou - (enclose - union) / enclose


def distance2bbox(points: Tensor, distance: Tensor) -> Tensor:
    """Decode ``(left, top, right, bottom)`` distances from anchor ``points`` into xyxy boxes.

    ``points[..., 2]`` and ``distance[..., 4]`` broadcast against each other, so a ``[A, 2]`` grid
    decodes a ``[B, A, 4]`` batch directly. No clipping to the image is done here: the loss must
    see the raw prediction, and post-processing clips explicitly if it wants to.
    """
    top_left = points[..., :2] - distance[..., :2]
    bottom_right = points[..., :2] + distance[..., 2:]
    return torch.cat([top_left, bottom_right], dim=-1)


# Gap kept below the top bin when clamping DFL targets: the reference ZeroHead clamps its
# targets to ``reg_max - 0.1`` (its ``bbox2distance`` default), which the released models were
# trained with.
DFL_TARGET_EPS = 0.1


def bbox2distance(
    points: Tensor, boxes: Tensor, max_dist: float | None = None, eps: float = DFL_TARGET_EPS
) -> Tensor:
    """Encode xyxy ``boxes[N, 4]`` as ``(l, t, r, b)`` distances from ``points[N, 2]``.

    This is the inverse of :func:`distance2bbox` and produces DFL targets. With ``max_dist`` the
    distances are clamped to ``[0, max_dist - eps]``: DFL spreads each target over the two bins
    around it, and the ``eps`` keeps the right-hand bin index inside the ``max_dist + 1`` bins.
    The default ``eps`` is the reference's 0.1, so a side at or beyond ``max_dist`` strides gets
    the target ``max_dist - 0.1``: 90% of its weight on the top bin, 10% on the one below.
    """
    lt = points - boxes[:, :2]
    rb = boxes[:, 2:] - points
    dist = torch.cat([lt, rb], dim=-1)
    if max_dist is not None:
        dist = dist.clamp(min=0, max=max_dist - eps)
    return dist


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Convert top-left ``(x, y, w, h)`` boxes (COCO annotation layout) to xyxy."""
    return torch.cat([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """Convert xyxy boxes to top-left ``(x, y, w, h)`` (the layout COCO results expect)."""
    return torch.cat([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], dim=-1)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression; returns kept indices sorted by decreasing score.

    A box is suppressed when its IoU with a higher-scoring *kept* box is strictly greater than
    ``iou_threshold`` (the torchvision convention). The ``[n, n]`` overlap matrix is computed
    once, vectorised, so memory and time are O(n^2): callers should cap ``n`` (top-k by score,
    a few thousand boxes at most) before calling. Greedy NMS is inherently sequential, since
    whether a box may suppress others depends on whether it was itself kept, so the walk over
    boxes in score order is a Python loop over rows of that precomputed matrix.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    ranked = boxes[order]
    # Only a higher-ranked box may suppress a lower-ranked one.
    over = (pairwise_iou(ranked, ranked) > iou_threshold).triu(diagonal=1).cpu()
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    keep_rank: list[int] = []
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep_rank.append(i)
        suppressed |= over[i]
    keep = torch.tensor(keep_rank, dtype=torch.long, device=boxes.device)
    return order[keep]


def batched_nms(boxes: Tensor, scores: Tensor, class_ids: Tensor, iou_threshold: float) -> Tensor:
    """Class-aware NMS: boxes only suppress boxes of the same class.

    Each class's boxes are shifted by ``class_id * (span + 1)`` along both axes, where ``span``
    covers the whole coordinate range, so boxes of different classes can never overlap and one
    ordinary :func:`nms` call handles every class at once.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    span = boxes.max() - boxes.min() + 1
    offsets = class_ids.to(boxes.dtype) * span
    return nms(boxes + offsets[:, None], scores, iou_threshold)
