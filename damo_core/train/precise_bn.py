"""Recompute BatchNorm statistics of the model that gets evaluated and saved ("precise BN").

DAMO-YOLO feeds raw 0..255 pixels and its BatchNorms use momentum 0.03, tuned for 300 COCO
epochs: after a short run (a laptop, the local pipeline, a few fine-tune epochs) the running
statistics still lag far behind the weights, and the model that scores well in train mode
scores nothing in eval mode. Averaging the statistics afresh over a few batches of
un-augmented images, with the weights frozen, removes that lag at the cost of a few forwards.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable[torch.Tensor],
                       device: torch.device) -> int:
    """Reset every BatchNorm's running mean/var to the exact average over ``batches``.

    Returns the number of batches used; the model is left in eval mode. A model with no
    BatchNorm (fused) is left untouched.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        return 0
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    count = 0
    try:
        for images in batches:
            model(images.to(device))
            count += 1
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.eval()
    return count
