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

from damo_core.errors import UserInputError

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


# Candidates are resolved this many at a time, in score order (see :func:`batched_nms`): enough
# that the fixed cost of a block's few tensor ops is shared by many boxes, few enough that the
# block's ``[b, b]`` fixed-point steps stay small.
_NMS_BLOCK = 128
# Kept boxes are compared with a block at most this many at a time, so that (with the chunk no
# smaller than the block) no IoU matrix exceeds ``_NMS_BLOCK x _NMS_KEPT_CHUNK`` entries,
# whatever the candidate count.
_NMS_KEPT_CHUNK = 256


def nms(
    boxes: Tensor, scores: Tensor, iou_threshold: float, *, max_detections: int | None = None
) -> Tensor:
    """Greedy non-maximum suppression; returns kept indices sorted by decreasing score.

    A box is suppressed when its IoU with a higher-scoring *kept* box is strictly greater than
    ``iou_threshold`` (the torchvision convention). Equal scores rank by index (stable sort),
    so ties give the same answer on every run and device. With ``max_detections`` the result is
    the first ``max_detections`` indices of the uncapped result, and the work stops there.
    See :func:`batched_nms` for how this is computed and what it costs.
    """
    return _greedy_nms(boxes, scores, None, iou_threshold, max_detections)


def batched_nms(
    boxes: Tensor,
    scores: Tensor,
    class_ids: Tensor,
    iou_threshold: float,
    *,
    max_detections: int | None = None,
) -> Tensor:
    """Class-aware :func:`nms`: boxes only suppress boxes of the same class.

    The keep set is exactly greedy NMS run separately per class, merged by decreasing score;
    ``max_detections`` caps the merged list. Classes are kept apart by masking the overlap test
    with class equality rather than by shifting each class's boxes far apart, because such
    shifts add large offsets to float32 coordinates and perturb the IoU near the threshold.

    How: candidates are sorted by score and taken in blocks of ``_NMS_BLOCK``. A block's boxes
    that overlap an already kept box are dropped first (batched comparisons, one per chunk of
    ``_NMS_KEPT_CHUNK`` kept boxes); greedy order inside the block is then resolved by a
    fixed-point iteration on the block's overlap matrix (:func:`_resolve_block`), so Python
    loops over blocks and iterations, never over candidates. Besides O(n) score-sorted copies
    of the inputs, memory is bounded by ``_NMS_BLOCK x _NMS_KEPT_CHUNK`` IoU entries whatever
    the candidate count ``n``, so no pre-NMS cap is needed to stay within memory; time grows
    as candidates x kept boxes, which is why callers still cap candidates (postprocess's
    ``pre_nms_topk``) and pass ``max_detections``.
    """
    return _greedy_nms(boxes, scores, class_ids, iou_threshold, max_detections)


def _greedy_nms(
    boxes: Tensor,
    scores: Tensor,
    class_ids: Tensor | None,
    iou_threshold: float,
    max_detections: int | None,
) -> Tensor:
    """Shared body of :func:`nms` (``class_ids`` None) and :func:`batched_nms`."""
    if max_detections is not None and max_detections <= 0:
        raise UserInputError(f"max_detections must be positive or None, got {max_detections}")
    n = scores.numel()
    limit = n if max_detections is None else min(n, max_detections)
    order = torch.sort(scores, descending=True, stable=True).indices
    ranked = boxes[order]
    ranked_cls = None if class_ids is None else class_ids[order]
    kept_boxes = ranked[:0]
    kept_cls = None if ranked_cls is None else ranked_cls[:0]
    kept_ranks: list[Tensor] = []
    total = 0
    for start in range(0, n, _NMS_BLOCK):
        block = ranked[start : start + _NMS_BLOCK]
        block_cls = None if ranked_cls is None else ranked_cls[start : start + _NMS_BLOCK]
        alive = ~_suppressed_by(block, block_cls, kept_boxes, kept_cls, iou_threshold)
        if not bool(alive.any()):  # common late in clustered input: skip the block's own IoU
            continue
        over = _overlaps(block, block_cls, block, block_cls, iou_threshold)
        ranks = _resolve_block(over, alive).nonzero().squeeze(1)[: limit - total]
        if ranks.numel() == 0:
            continue
        kept_ranks.append(ranks + start)
        kept_boxes = torch.cat([kept_boxes, block[ranks]])
        if block_cls is not None and kept_cls is not None:
            kept_cls = torch.cat([kept_cls, block_cls[ranks]])
        total += ranks.numel()
        if total >= limit:
            break
    if not kept_ranks:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    return order[torch.cat(kept_ranks)]


def _overlaps(
    a: Tensor, a_cls: Tensor | None, b: Tensor, b_cls: Tensor | None, iou_threshold: float
) -> Tensor:
    """``[N, M]`` bool: box ``a[i]`` may suppress ``b[j]`` or vice versa (IoU over the
    threshold and, when classes are given, the same class)."""
    over = pairwise_iou(a, b) > iou_threshold
    if a_cls is not None and b_cls is not None:
        over &= a_cls[:, None] == b_cls[None, :]
    return over


def _suppressed_by(
    block: Tensor,
    block_cls: Tensor | None,
    kept: Tensor,
    kept_cls: Tensor | None,
    iou_threshold: float,
) -> Tensor:
    """``[b]`` bool: which ``block`` boxes overlap some already kept box.

    Kept boxes are taken ``_NMS_KEPT_CHUNK`` at a time so the IoU matrix stays bounded even
    when nothing is suppressed and every candidate is kept.
    """
    dead = torch.zeros(block.shape[0], dtype=torch.bool, device=block.device)
    for start in range(0, kept.shape[0], _NMS_KEPT_CHUNK):
        stop = start + _NMS_KEPT_CHUNK
        chunk_cls = None if kept_cls is None else kept_cls[start:stop]
        dead |= _overlaps(block, block_cls, kept[start:stop], chunk_cls, iou_threshold).any(1)
    return dead


def _resolve_block(over: Tensor, alive: Tensor) -> Tensor:
    """Greedy keep mask of one score-sorted block, from its symmetric ``[b, b]`` overlap matrix
    ``over`` and the boxes not already suppressed by earlier blocks (``alive``).

    Greedy NMS is the unique mask with ``keep[j] = alive[j] and no kept i < j overlaps j``
    (unique because ``keep[0]`` is fixed and each entry depends only on earlier ones). Applying
    that rule to the whole mask at once, starting from ``alive``, makes at least one more
    leading entry final per step, so it reaches the greedy mask within ``len(alive)`` steps; it
    stops as soon as a step changes nothing, since an unchanged mask satisfies the rule and so
    is the greedy mask. The step count follows the longest run of boxes each overlapping the
    next: a few in clustered detections, the whole block for boxes sliding in a line.
    """
    # suppressors[j, i]: box i ranks above box j and overlaps it. Row j is contiguous, so each
    # step reduces along rows. (A rank comparison rather than ``tril``, which starts a parallel
    # region even for tiny inputs and so stalls while other processes keep the cores busy.)
    rank = torch.arange(alive.numel(), device=alive.device)
    suppressors = over & (rank[None, :] < rank[:, None])
    keep = alive
    for _ in range(alive.numel()):
        nxt = alive & ~(suppressors & keep).any(dim=1)
        if torch.equal(nxt, keep):
            break
        keep = nxt
    return keep
