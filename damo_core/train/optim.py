"""Optimiser and learning-rate schedule of the paper (section 3).

SGD with momentum 0.9 and weight decay 5e-4 on conv and linear weights only (grouped weight
decay: decaying BatchNorm scales and biases only fights the normalisation), the learning rate
scaled linearly with the batch size from ``lr_per_image``, a linear warm-up, then cosine decay
to ``min_lr_ratio`` of the peak, held flat for the last ``no_aug_epochs`` (the
no-mosaic fine-tune).

The update runs in PyTorch's fused kernels (one pass over all tensors of a group) rather than
its default on CPU, a Python loop over every parameter (DAMO-YOLO-L trains 43 M of them).
``benchmarks/train_step.py --variants fp32-loop`` prints the looped step's images/s against
the fused one's. Both compute the same update up to float rounding (tests/train/test_optim.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from damo_core.errors import UserInputError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: conv/linear weights with decay, everything else (BN, biases, scales) without."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            is_weight = name == "weight" and isinstance(module, nn.Conv2d | nn.Linear)
            (decay if is_weight else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


# devices PyTorch ships fused SGD and AdamW kernels for (float parameters)
FUSED_DEVICES = frozenset({"cpu", "cuda"})


def fusable(groups: list[dict]) -> bool:
    """Whether every parameter can take the fused update: a floating tensor on a device with
    fused kernels (a model on another accelerator keeps PyTorch's default loop)."""
    params = [p for g in groups for p in g["params"]]
    return bool(params) and all(p.device.type in FUSED_DEVICES and p.is_floating_point()
                                for p in params)


def build_optimizer(model: nn.Module, *, lr: float, momentum: float, weight_decay: float,
                    name: str = "sgd", fused: bool | None = None) -> torch.optim.Optimizer:
    """``fused``: None picks the fused kernels wherever :func:`fusable` allows."""
    groups = param_groups(model, weight_decay)
    fused = fusable(groups) if fused is None else fused
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True, fused=fused)
    if name == "adamw":  # the nano recipes train with AdamW
        return torch.optim.AdamW(groups, lr=lr, fused=fused)
    raise UserInputError(f"optimizer must be 'sgd' or 'adamw', got {name!r}")


def lr_at(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    warmup_steps: int,
    no_aug_steps: int,
    min_lr_ratio: float,
) -> float:
    """Learning rate at optimiser step ``step`` (0-based)."""
    min_lr = base_lr * min_lr_ratio
    if step < warmup_steps:
        # Quadratic warm-up from 0 (YOLOX-style): gentler than linear in the first iterations.
        return base_lr * ((step + 1) / warmup_steps) ** 2
    cosine_end = max(total_steps - no_aug_steps, warmup_steps + 1)
    if step >= cosine_end:
        return min_lr
    progress = (step - warmup_steps) / (cosine_end - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
