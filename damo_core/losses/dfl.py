"""Distribution Focal Loss (GFocal, Li et al. 2020): the first regression term of DAMO-YOLO.

ZeroHead predicts each box side as a discrete distribution over ``n_bins`` integer distances
(in stride units). DFL pushes probability mass onto the two bins that bracket the continuous
target, in proportion to how close each is, so that the distribution's expectation equals the
target and the distribution stays sharp around it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from damo_core.losses.qfl import weight_reduce_loss


def expected_bin(logits: Tensor) -> Tensor:
    """Expectation of the distribution ``softmax(logits)`` over bins ``0..n-1`` (last dim):
    the predicted distance in stride units, as the head decodes it and the losses see it."""
    bins = torch.arange(logits.shape[-1], device=logits.device, dtype=logits.dtype)
    return (logits.softmax(dim=-1) * bins).sum(dim=-1)


def distribution_focal_loss(
    pred: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | Tensor | None = None,
) -> Tensor:
    """Cross-entropy against the two bins bracketing ``target``, linearly weighted.

    Args:
        pred: ``[N, n_bins]`` raw logits (softmax is applied here, via cross-entropy).
        target: ``[N]`` continuous distances in ``[0, n_bins - 1]`` (the detection loss
            clamps them to ``n_bins - 1.1``, as the reference does, see
            :func:`~damo_core.models.layers.box_ops.bbox2distance`).
        weight: optional ``[N]`` weight (e.g. the quality score of each side's anchor).

    For ``target = l + f`` with integer ``l`` and ``0 <= f < 1`` the per-sample loss is
    ``(1 - f) * CE(pred, l) + f * CE(pred, l + 1)``. A target that sits exactly on a bin is a
    plain cross-entropy on that bin; the top bin ``n_bins - 1`` is handled by using the pair
    ``(n_bins - 2, n_bins - 1)`` with all weight on the right, so no index overflows.
    """
    n_bins = pred.shape[-1]
    target = target.to(pred.dtype).clamp(0, n_bins - 1)
    left = target.floor().long().clamp(max=n_bins - 2)
    right = left + 1
    w_left = right.to(pred.dtype) - target
    w_right = target - left.to(pred.dtype)
    loss = (
        F.cross_entropy(pred, left, reduction="none") * w_left
        + F.cross_entropy(pred, right, reduction="none") * w_right
    )
    return weight_reduce_loss(loss, weight, reduction, avg_factor)
