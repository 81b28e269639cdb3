"""Turn dense per-anchor scores and boxes into a short list of detections per image.

Steps, per image: keep every (anchor, class) pair whose score passes the threshold
(multi-label: one anchor may yield several classes, which is what the reference does and
what COCO mAP rewards), keep the ``pre_nms_topk`` best pairs so NMS cost stays bounded,
run class-aware NMS, and keep at most ``max_detections`` (COCO scores 100 per image).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from damo_core.models.layers.box_ops import batched_nms

# Thresholds the reference uses at evaluation time. Nano models are run with a lower score
# threshold and tighter NMS.
DEFAULT_SCORE_THRESHOLD, DEFAULT_IOU_THRESHOLD = 0.05, 0.7
NANO_SCORE_THRESHOLD, NANO_IOU_THRESHOLD = 0.03, 0.65
_NANO_PREFIX = "damoyolo_n"


@dataclass
class Detections:
    """Detections of one image: ``boxes [K, 4]`` xyxy, ``scores [K]``, ``labels [K]`` (long,
    contiguous ``0..C-1``), sorted by decreasing score."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.scores.numel())

    def to(self, device: torch.device | str) -> Detections:
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> Detections:
        return cls(
            torch.zeros(0, 4, device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.long, device=device),
        )


def nms_defaults(model_name: str | None) -> tuple[float, float]:
    """``(score_threshold, iou_threshold)`` the reference evaluates a model with."""
    if model_name and model_name.startswith(_NANO_PREFIX):
        return NANO_SCORE_THRESHOLD, NANO_IOU_THRESHOLD
    return DEFAULT_SCORE_THRESHOLD, DEFAULT_IOU_THRESHOLD


def postprocess(
    scores: Tensor,
    boxes: Tensor,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    max_detections: int = 100,
    pre_nms_topk: int = 1000,
) -> list[Detections]:
    """``scores [B, N, C]`` (probabilities) and ``boxes [B, N, 4]`` xyxy → one
    :class:`Detections` per image, in the same coordinates as ``boxes``.

    A pair is a candidate when its score is strictly above ``score_threshold``. Boxes with
    non-finite coordinates are dropped (a diverged model must not crash scoring).
    ``pre_nms_topk`` / ``max_detections`` ≤ 0 disable the respective cap.
    """
    if scores.ndim != 3 or boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise ValueError(
            f"expected scores [B, N, C] and boxes [B, N, 4], got {tuple(scores.shape)} "
            f"and {tuple(boxes.shape)}"
        )
    if scores.shape[:2] != boxes.shape[:2]:
        raise ValueError(
            f"scores {tuple(scores.shape)} and boxes {tuple(boxes.shape)} disagree on [B, N]"
        )
    return [
        _postprocess_one(s, b, score_threshold, iou_threshold, max_detections, pre_nms_topk)
        for s, b in zip(scores, boxes, strict=True)
    ]


def _postprocess_one(
    scores: Tensor,
    boxes: Tensor,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    pre_nms_topk: int,
) -> Detections:
    """One image: ``scores [N, C]``, ``boxes [N, 4]``."""
    anchors, labels = (scores > score_threshold).nonzero(as_tuple=True)
    # the finiteness test on the candidates only: the whole map is ~100x larger
    finite = torch.isfinite(boxes[anchors]).all(dim=-1)
    if not bool(finite.all()):
        anchors, labels = anchors[finite], labels[finite]
    cand_scores = scores[anchors, labels]
    if 0 < pre_nms_topk < cand_scores.numel():
        cand_scores, order = cand_scores.topk(pre_nms_topk)
        anchors, labels = anchors[order], labels[order]
    cand_boxes = boxes[anchors]
    # NMS stops once max_detections boxes are kept, so the cap saves work, not just output.
    keep = batched_nms(cand_boxes, cand_scores, labels, iou_threshold,
                       max_detections=max_detections if max_detections > 0 else None)
    return Detections(cand_boxes[keep], cand_scores[keep], labels[keep])
