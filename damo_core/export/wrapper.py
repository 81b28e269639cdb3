"""The graph every export format traces: fused detector + box decode, optionally + NMS.

Why a wrapper: the paper times the deploy graph (RepConv and BatchNorm folded) and its
numbers exclude post-processing, so the default export stops at dense ``scores`` and
``boxes``, exactly what ``head.decode`` gives in PyTorch. Deployments that want a
self-contained model can ask for ``end2end``: NMS is appended as the standard ONNX
``NonMaxSuppression`` op (which ONNX Runtime, OpenVINO and TensorRT all implement natively),
followed by a fixed-size top-K so the outputs have static shapes.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from damo_core.errors import UserInputError
from damo_core.eval.postprocess import nms_defaults
from damo_core.models import Detector
from damo_core.models.layers.box_ops import batched_nms

RAW_OUTPUTS = ("scores", "boxes")
END2END_OUTPUTS = ("num_dets", "det_boxes", "det_scores", "det_classes")


class NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` with an eager path that follows the same rules.

    Inputs: ``boxes [B, N, 4]`` xyxy and ``scores [B, C, N]``. Output: ``selected [M, 3]``
    int64 rows of ``(batch, class, box)``. Per image and class, a box is a candidate when its
    score is strictly above ``score_threshold``; it is suppressed when its IoU with a kept
    box of the same class is strictly above ``iou_threshold``; at most
    ``max_per_class`` boxes are kept per class. These are the ONNX Runtime semantics and also
    those of :func:`damo_core.eval.postprocess.postprocess`, so the two agree.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, boxes: Tensor, scores: Tensor, max_per_class: int,
        iou_threshold: float, score_threshold: float,
    ) -> Tensor:
        if torch.jit.is_tracing():
            # Exporting: ``symbolic`` replaces this op, and the rows' values do not shape the
            # graph downstream, so skip the eager NMS, whose ops the tracer would also record.
            return boxes.new_zeros((1, 3), dtype=torch.long)
        rows = [_select_one(i, b, s, max_per_class, iou_threshold, score_threshold)
                for i, (b, s) in enumerate(zip(boxes, scores, strict=True))]
        return torch.cat(rows) if rows else boxes.new_zeros((0, 3), dtype=torch.long)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, max_per_class: int, iou_threshold: float,
                 score_threshold: float) -> Any:
        """Emit the standard op; thresholds become constant inputs, as the spec requires."""
        return g.op(
            "NonMaxSuppression", boxes, scores,
            g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([score_threshold], dtype=torch.float32)),
        )


def _select_one(index: int, boxes: Tensor, scores: Tensor, max_per_class: int,
                iou_threshold: float, score_threshold: float) -> Tensor:
    """Eager NMS of one image: ``boxes [N, 4]``, ``scores [C, N]`` → ``[M, 3]`` rows.

    The op's cap is per class, so NMS runs without ``batched_nms``'s overall
    ``max_detections`` (which would drop a class's boxes once other classes fill the total)
    and the per-class cap is applied to its result.
    """
    classes, anchors = (scores > score_threshold).nonzero(as_tuple=True)
    cand_scores = scores[classes, anchors]
    keep = batched_nms(boxes[anchors], cand_scores, classes, iou_threshold)
    classes, anchors = classes[keep], anchors[keep]
    # keep is sorted by decreasing score, so a stable sort by class keeps that order inside
    # each class; the rank inside the class then enforces max_per_class.
    order = torch.sort(classes, stable=True).indices
    classes, anchors = classes[order], anchors[order]
    starts = torch.searchsorted(classes, classes, right=False)
    rank = torch.arange(classes.numel(), device=classes.device) - starts
    ok = rank < max_per_class
    batch = torch.full_like(classes[ok], index)
    return torch.stack([batch, classes[ok], anchors[ok]], dim=1)


def gather_detections(selected: Tensor, scores: Tensor, boxes: Tensor,
                      max_detections: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Turn NMS rows into fixed-size per-image outputs, best ``max_detections`` first.

    Built from ops every runtime has (Gather, TopK, Where), so shapes stay static: slots past
    ``num_dets`` hold zero boxes and scores and class ``-1``.
    """
    batch, num_classes, num_anchors = scores.shape
    b, c, n = selected[:, 0], selected[:, 1], selected[:, 2]
    det_scores = scores.reshape(-1)[(b * num_classes + c) * num_anchors + n]
    det_boxes = boxes.reshape(-1, 4)[b * num_anchors + n]
    k = max_detections
    owner = b.unsqueeze(0) == torch.arange(batch, device=b.device).unsqueeze(1)
    ranked = torch.where(owner, det_scores.unsqueeze(0), torch.full_like(det_scores, -1.0))
    ranked = torch.cat([ranked, scores.new_full((batch, k), -1.0)], dim=1)
    top_scores, top_idx = ranked.topk(k, dim=1)
    valid = top_scores > -0.5
    padded_boxes = torch.cat([det_boxes, boxes.new_zeros((k, 4))], dim=0)
    padded_classes = torch.cat([c, c.new_full((k,), -1)], dim=0)
    out_boxes = torch.where(valid.unsqueeze(-1), padded_boxes[top_idx], 0.0)
    out_classes = torch.where(valid, padded_classes[top_idx], -1)
    num_dets = valid.sum(dim=1, keepdim=True)
    return (num_dets.to(torch.int32), out_boxes,
            torch.where(valid, top_scores, 0.0), out_classes.to(torch.int32))


class ExportModel(nn.Module):
    """A fused copy of ``model`` whose forward returns ``(scores [B,N,C], boxes [B,N,4])``.

    With ``end2end`` it returns ``(num_dets [B,1] int32, det_boxes [B,K,4],
    det_scores [B,K], det_classes [B,K] int32)`` with ``K = max_detections``; thresholds
    default to what the reference evaluates this model with (:func:`nms_defaults`). The
    detections equal :func:`~damo_core.eval.postprocess.postprocess` with ``pre_nms_topk=0``
    on the same scores; with its default top-1000 pre-NMS cap they differ only on images
    where more than 1000 (anchor, class) pairs pass the score threshold.
    ``half`` runs the network in float16 but keeps the graph's inputs and outputs float32,
    and decodes boxes in float32 (float16 steps are ~0.5 px at 640 px).
    The caller's model is not modified (fusing happens on a deep copy).
    """

    def __init__(self, model: Detector, *, end2end: bool = False, half: bool = False,
                 score_threshold: float | None = None, iou_threshold: float | None = None,
                 max_detections: int = 100) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).fuse()
        if half:
            self.model.half()
        default_score, default_iou = nms_defaults(getattr(model.config, "name", None))
        self.end2end, self.half = end2end, half
        self.score_threshold = default_score if score_threshold is None else score_threshold
        self.iou_threshold = default_iou if iou_threshold is None else iou_threshold
        if max_detections <= 0:
            raise UserInputError(f"max_detections must be positive, got {max_detections}")
        self.max_detections = max_detections

    @property
    def output_names(self) -> tuple[str, ...]:
        return END2END_OUTPUTS if self.end2end else RAW_OUTPUTS

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(images.half() if self.half else images)
        if self.half:
            outputs = [o.float() for o in outputs]
        scores, boxes = self.model.head.decode(outputs)
        if not self.end2end:
            return scores, boxes
        scores_t = scores.transpose(1, 2).contiguous()
        selected = NonMaxSuppression.apply(boxes, scores_t, self.max_detections,
                                           self.iou_threshold, self.score_threshold)
        return gather_detections(selected, scores_t, boxes, self.max_detections)
