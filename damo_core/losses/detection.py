"""The detector's training loss: AlignOTA targets, then QFL + DFL + GIoU (report eq. 1).

Kept apart from the head module so the head stays a pure function of features, and so the
distillation trainer can reuse the same task loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from damo_core.assign import assign
from damo_core.losses.dfl import distribution_focal_loss, expected_bin
from damo_core.losses.giou import giou_loss
from damo_core.losses.qfl import quality_focal_loss
from damo_core.models.layers.box_ops import bbox2distance, distance2bbox

LOSS_KEYS = ("loss_qfl", "loss_dfl", "loss_giou")


def _normaliser(value: float, device: torch.device) -> float:
    """``max(global sum, 1) / world_size``: divided by it, each rank's loss averages (as DDP
    averages gradients) to exactly the loss of the whole global batch in one process, the
    floor of 1 included (clamping each rank's mean instead would halve small sums on 2 ranks)."""
    if not (dist.is_available() and dist.is_initialized()):
        return max(value, 1.0)
    t = torch.tensor(value, device=device, dtype=torch.float64)
    dist.all_reduce(t)
    return max(float(t), 1.0) / dist.get_world_size()


def detection_loss(
    cls_logits: Tensor,
    reg_logits: Tensor,
    priors: Tensor,
    targets: list[dict[str, Tensor]],
    *,
    reg_max: int,
    weights: dict[str, float],
) -> dict[str, Tensor]:
    """Losses for a batch of flattened head outputs.

    Args:
        cls_logits: ``[B, N, C]``; reg_logits: ``[B, N, 4, reg_max + 1]``.
        priors: ``[N, 4]`` anchor points as ``(x, y, stride, stride)``.
        targets: per image ``{"boxes": [G, 4] xyxy input pixels, "labels": [G]}``.
        weights: ``{"qfl", "dfl", "giou"}`` multipliers (alpha, beta, gamma of eq. 1).

    Returns ``loss_qfl``, ``loss_dfl``, ``loss_giou`` (each already weighted) and their sum
    ``loss``.
    """
    batch, _, num_classes = cls_logits.shape
    scores = cls_logits.sigmoid()
    distances = expected_bin(reg_logits)
    boxes = distance2bbox(priors[:, :2], distances * priors[:, 2:3])

    assignments = [
        assign(scores[b].detach(), boxes[b].detach(), priors,
               t["boxes"].to(priors.device), t["labels"].to(priors.device),
               num_classes=num_classes)
        for b, t in enumerate(targets)
    ]
    labels = torch.cat([a.labels for a in assignments])
    score_targets = torch.cat([a.score_targets for a in assignments])
    box_targets = torch.cat([a.box_targets for a in assignments])
    fg = torch.cat([a.fg_mask for a in assignments])
    flat_priors = priors.repeat(batch, 1)

    num_pos = _normaliser(float(fg.sum()), cls_logits.device)
    flat_scores = scores.reshape(-1, num_classes)
    loss_qfl = quality_focal_loss(flat_scores, (labels, score_targets), avg_factor=num_pos)

    if fg.any():
        # Positives are weighted by the model's own confidence, so boxes it already finds
        # count more than ones it has not learnt to score yet (GFocal).
        quality = flat_scores.detach()[fg].max(dim=1).values
        norm = _normaliser(float(quality.sum()), cls_logits.device)
        pos_priors = flat_priors[fg]
        loss_giou = giou_loss(boxes.reshape(-1, 4)[fg], box_targets[fg], weight=quality,
                              avg_factor=norm)
        dfl_targets = bbox2distance(pos_priors[:, :2] / pos_priors[:, 2:3],
                                    box_targets[fg] / pos_priors[:, 2:3], float(reg_max))
        loss_dfl = distribution_focal_loss(
            reg_logits.reshape(-1, 4, reg_max + 1)[fg].reshape(-1, reg_max + 1),
            dfl_targets.reshape(-1), weight=quality[:, None].expand(-1, 4).reshape(-1),
            avg_factor=4.0 * norm,
        )
    else:  # keep the graph connected so DDP sees gradients for every parameter
        loss_giou = loss_dfl = reg_logits.sum() * 0.0

    losses = {
        "loss_qfl": weights["qfl"] * loss_qfl,
        "loss_dfl": weights["dfl"] * loss_dfl,
        "loss_giou": weights["giou"] * loss_giou,
    }
    losses["loss"] = sum(losses.values())  # type: ignore[assignment]
    return losses
