"""Params and GFLOPs of a model, counted the way the paper and the reference README count them.

GFLOPs = 2 × multiply-accumulates of one forward pass at the model's input size (batch 1), where
only convolutions, linear layers and BatchNorms count (thop's convention, which the published
numbers use): a k×k conv costs ``out_h · out_w · out_c · (in_c / groups) · k²`` MACs (bias free),
a BatchNorm ``2 · numel`` (so it disappears once fused), activations, pooling, upsampling and
element-wise adds cost nothing.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from damo_core.errors import UserInputError
from damo_core.models.detector import Detector


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Every feature map is exactly (input / stride), so MACs scale with the input area: counting at
# a small probe size and scaling is exact for sizes that are multiples of 32, and 100× cheaper.
_PROBE = 64


def count_macs(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulates of one forward at ``image_size`` × ``image_size``, batch 1."""
    if image_size % 32:
        raise UserInputError(f"image_size must be a multiple of 32, got {image_size}")
    return _count_macs_at(model, _PROBE) * image_size**2 // _PROBE**2


@torch.no_grad()
def _count_macs_at(model: nn.Module, image_size: int) -> int:
    total = 0

    def on_conv(m: nn.Conv2d, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    def on_linear(m: nn.Linear, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    def on_bn(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * out.numel()

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(on_conv))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(on_linear))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(module.register_forward_hook(on_bn))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return total


@dataclass(frozen=True)
class ModelInfo:
    name: str
    image_size: int
    params_m: float
    gflops: float
    deploy_params_m: float
    deploy_gflops: float
    paper_params_m: float | None
    paper_gflops: float | None

    def as_dict(self) -> dict[str, float | str | int | None]:
        return asdict(self)


def model_info(model: Detector, image_size: int | None = None) -> ModelInfo:
    """Counts for the training graph and for a fused (deploy) copy; ``model`` is not changed."""
    cfg = model.config
    size = image_size or (cfg.image_size if cfg else 640)
    deploy = copy.deepcopy(model).fuse()
    expect = cfg.expect if cfg else {}
    return ModelInfo(
        name=model.name,
        image_size=size,
        params_m=count_params(model) / 1e6,
        gflops=2 * count_macs(model, size) / 1e9,
        deploy_params_m=count_params(deploy) / 1e6,
        deploy_gflops=2 * count_macs(deploy, size) / 1e9,
        paper_params_m=expect.get("params_m"),
        paper_gflops=expect.get("gflops"),
    )
