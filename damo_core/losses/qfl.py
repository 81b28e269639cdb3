"""Quality Focal Loss (GFocal, Li et al. 2020): the classification term of DAMO-YOLO's loss.

ZeroHead emits one sigmoid score per class that doubles as a localisation-quality estimate, so
the positive class is trained towards the IoU of the predicted box with its gt (a soft label),
not towards 1. This module also hosts :func:`weight_reduce_loss`, the weighting/reduction shared
by all three losses, so that they agree on how ``weight`` and ``avg_factor`` are applied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_REDUCTIONS = ("none", "mean", "sum")


def weight_reduce_loss(
    loss: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | Tensor | None = None,
) -> Tensor:
    """Apply an element-wise ``weight``, then reduce.

    ``avg_factor`` replaces the element count as the divisor of ``"mean"``: the detector divides
    by the number of positives (or the summed quality weights) across the batch rather than by
    the number of anchors, which would make the loss scale with image size. A custom divisor
    with ``"sum"`` is contradictory and rejected; with ``"none"`` it is ignored.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if avg_factor is None:
        return loss.mean() if reduction == "mean" else loss.sum()
    if reduction == "sum":
        raise ValueError('avg_factor cannot be combined with reduction="sum"')
    return loss.sum() / avg_factor


def quality_focal_loss(
    pred: Tensor,
    target: tuple[Tensor, Tensor],
    weight: Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | Tensor | None = None,
    beta: float = 2.0,
) -> Tensor:
    """QFL on probabilities: ``|y - p| ** beta * BCE(p, y)`` summed over classes, per anchor.

    Args:
        pred: ``[N, C]`` class probabilities (already sigmoid-ed, as ZeroHead outputs them).
        target: ``(labels[N], scores[N])``; ``labels == C`` (or any value outside ``[0, C)``)
            marks background, ``scores`` is the IoU quality target of positives.
        weight: optional per-anchor weight ``[N]``, applied after the class sum.
        beta: focusing exponent; 2.0 in GFocal and DAMO-YOLO.

    Every class of every anchor has target ``y = 0`` except the gt class of a positive, whose
    target is its IoU score. The ``|y - p| ** beta`` factor down-weights entries that are
    already close to their target, so easy negatives (the vast majority) barely contribute and
    the loss is exactly zero when ``p == y`` everywhere.

    Returns:
        Reduced loss, or the ``[N]`` per-anchor loss with ``reduction="none"``.
    """
    labels, scores = target
    num_classes = pred.shape[1]
    soft = torch.zeros_like(pred)
    pos = (labels >= 0) & (labels < num_classes)
    pos_idx = pos.nonzero(as_tuple=True)[0]
    soft[pos_idx, labels[pos_idx]] = scores[pos_idx].to(pred.dtype)
    soft = soft.detach()
    # binary_cross_entropy clamps log() at -100, so p in {0, 1} stays finite.
    bce = F.binary_cross_entropy(pred, soft, reduction="none")
    loss = (soft - pred).abs().pow(beta) * bce
    return weight_reduce_loss(loss.sum(dim=1), weight, reduction, avg_factor)
