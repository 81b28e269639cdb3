"""GIoU loss: the second regression term of DAMO-YOLO, on decoded xyxy boxes."""

from __future__ import annotations

from torch import Tensor

from damo_core.losses.qfl import weight_reduce_loss
from damo_core.models.layers.box_ops import aligned_giou


def giou_loss(
    pred: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    reduction: str = "mean",
    avg_factor: float | Tensor | None = None,
    eps: float = 1e-6,
) -> Tensor:
    """``1 - GIoU(pred[i], target[i])`` for row-aligned ``[N, 4]`` xyxy boxes.

    DFL alone only supervises each side independently; GIoU couples the four sides through the
    overlap, and unlike ``1 - IoU`` it still has a gradient for non-overlapping boxes. Values
    lie in ``[0, 2)``: 0 for identical boxes, approaching 2 for far-apart small boxes.
    ``eps`` floors the union and enclosing areas; 1e-6 is the reference's GIoU loss setting
    (it only matters for boxes of near-zero area).
    """
    loss = 1.0 - aligned_giou(pred, target, eps=eps)
    return weight_reduce_loss(loss, weight, reduction, avg_factor)
