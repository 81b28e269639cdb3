"""Training losses of DAMO-YOLO (report section 2.3, eq. 1).

    Loss = alpha * loss_QFL + beta * loss_DFL + gamma * loss_GIoU

QFL supervises the joint class/quality score, DFL the per-side distance distributions and GIoU
the decoded boxes. All three share the signature
``(pred, target, weight=None, reduction="mean", avg_factor=None)``.
"""

from damo_core.losses.dfl import distribution_focal_loss
from damo_core.losses.giou import giou_loss
from damo_core.losses.qfl import quality_focal_loss, weight_reduce_loss

# alpha, beta and gamma of eq. 1. The report gives no numbers; these are the weights the
# reference ZeroHead trains its released models with.
LOSS_WEIGHTS: dict[str, float] = {"qfl": 1.0, "dfl": 0.25, "giou": 2.0}

__all__ = [
    "LOSS_WEIGHTS",
    "distribution_focal_loss",
    "giou_loss",
    "quality_focal_loss",
    "weight_reduce_loss",
]
