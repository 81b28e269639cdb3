"""Exponential moving average of the weights, the model that is evaluated and exported."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """EMA whose decay ramps up as ``decay * (1 - exp(-updates / tau))``.

    The ramp lets the average follow the fast early changes instead of dragging random initial
    weights along for thousands of steps; buffers (BN statistics) are averaged too.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, tau: float = 2000.0,
                 updates: int = 0) -> None:
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step: floating tensors move ``1 - decay`` of the way to the model's, the rest
        (BatchNorm's batch counter) is copied. The floating tensors go through
        ``torch._foreach_*`` in two calls for all of them, where a per-tensor loop made
        hundreds of small kernel launches per step (DAMO-YOLO-L has ~900 such tensors)."""
        self.updates += 1
        d = self.current_decay()
        source = unwrap(model).state_dict()
        averaged, targets = [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(value)
                targets.append(source[name].detach())
            else:
                value.copy_(source[name])
        if averaged:
            torch._foreach_mul_(averaged, d)
            torch._foreach_add_(averaged, targets, alpha=1 - d)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
