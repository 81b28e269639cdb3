"""Convolution building blocks shared by every backbone, neck and head.

Everything convolutional in the zoo is composed from :class:`ConvBNAct`, so that fusing a model
for deploy is one generic walk (``fuse_conv_bn`` on every ``ConvBNAct``) instead of a fuse method
per block type.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from damo_core.errors import UserInputError

# The reference code sets these on every BatchNorm; matching them keeps released checkpoints
# numerically faithful after loading (running statistics are normalised with this eps).
BN_EPS = 1e-3
BN_MOMENTUM = 0.03

ACTIVATIONS = ("relu", "silu", "lrelu", "identity")


def get_activation(name: str | None) -> nn.Module:
    """Map a config string to an activation module; ``None`` means no non-linearity."""
    if name is None or name == "identity":
        return nn.Identity()
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "lrelu":
        return nn.LeakyReLU(0.1, inplace=True)
    raise UserInputError(f"unknown activation {name!r}; expected one of {ACTIVATIONS}")


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``x * scale + shift`` per channel."""
    scale = bn.weight / (bn.running_var + bn.eps).sqrt()
    return scale, bn.bias - bn.running_mean * scale


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Make ``conv`` (in place) compute what ``bn(conv(x))`` computes in eval mode."""
    scale, shift = bn_scale_shift(bn)
    bias = shift if conv.bias is None else shift + conv.bias * scale
    return set_conv_weights(conv, conv.weight * scale.reshape(-1, 1, 1, 1), bias)


def set_conv_weights(conv: nn.Conv2d, weight: Tensor, bias: Tensor) -> nn.Conv2d:
    """Replace a conv's weight and bias in place; reusing the module avoids a random init."""
    conv.weight = nn.Parameter(weight.detach().clone())
    conv.bias = nn.Parameter(bias.detach().clone())
    return conv


class ConvBNAct(nn.Module):
    """Conv2d (same padding, no bias) → BatchNorm → activation.

    ``ref_style`` only records how the reference implementation named this pair of layers in the
    place it is used (``conv``/``bn``, ``conv1``/``bn1``, or nested under ``conv``), so released
    checkpoints can be mapped onto this module; it has no effect on computation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu",
        ref_style: str = "conv_bn",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        )
        self.bn: nn.Module = batch_norm(out_channels)
        self.act = get_activation(act)
        self.ref_names = _CONV_REF_STYLES[ref_style]

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))

    @property
    def fused(self) -> bool:
        return isinstance(self.bn, nn.Identity)

    def fuse(self) -> None:
        """Fold the BatchNorm into the conv (eval statistics); idempotent."""
        if not self.fused:
            self.conv = fold_bn_into_conv(self.conv, self.bn)
            self.bn = nn.Identity()


_CONV_REF_STYLES: dict[str, dict[str, str]] = {
    "conv_bn": {"conv": "conv", "bn": "bn"},
    "conv1_bn1": {"conv": "conv1", "bn": "bn1"},
    "nested_conv1_bn1": {"conv": "conv.conv1", "bn": "conv.bn1"},
}


class Focus(nn.Module):
    """Space-to-depth stem: every 2×2 pixel patch becomes 4 channels, then one conv.

    Halves resolution without losing information, which is why the paper's backbones use it as
    their first layer.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, act: str = "relu"
    ) -> None:
        super().__init__()
        self.conv = ConvBNAct(in_channels * 4, out_channels, kernel_size, act=act)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise UserInputError(f"Focus needs even height and width, got {tuple(x.shape[-2:])}")
        # Channel order (tl, bl, tr, br) matches the reference so its weights load unchanged.
        x = torch.cat(
            (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1
        )
        return self.conv(x)


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: parallel max-pools widen the receptive field at no param cost."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: tuple[int, ...] = (5, 9, 13),
        act: str = "silu",
    ) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = ConvBNAct(in_channels, hidden, 1, act=act)
        self.pools = nn.ModuleList(
            nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2) for k in kernel_sizes
        )
        self.conv2 = ConvBNAct(hidden * (len(kernel_sizes) + 1), out_channels, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.pools)], dim=1))


class DepthwiseSeparable(nn.Module):
    """Depthwise k×k conv then pointwise 1×1, each with BN and activation (nano necks)."""

    ref_names = {
        "dw.conv": "depthwise",
        "dw.bn": "dwnorm",
        "pw.conv": "pointwise",
        "pw.bn": "pwnorm",
    }

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, act: str
    ) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_channels, in_channels, kernel_size, stride, in_channels, act)
        self.pw = ConvBNAct(in_channels, out_channels, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


class MobBlock(nn.Module):
    """MobileNetV3-style inverted bottleneck: 1×1 expand, 5×5 depthwise, 1×1 linear project.

    The expansion width is rounded to a multiple of 8 like MobileNet does, because the
    reference's channel counts (and so its checkpoints) depend on that rounding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expand_ratio: float,
        act: str = "silu",
        kernel_size: int = 5,
        ref_project_index: int = 7,
    ) -> None:
        super().__init__()
        hidden = make_divisible(math.ceil(out_channels * expand_ratio))
        self.expand = ConvBNAct(in_channels, hidden, 1, act=act)
        self.dw = ConvBNAct(hidden, hidden, kernel_size, stride, groups=hidden, act=act)
        self.project = ConvBNAct(hidden, out_channels, 1, act=None)
        self.shortcut = stride == 1 and in_channels == out_channels
        p = ref_project_index
        self.ref_names = {
            "expand.conv": "conv.0",
            "expand.bn": "conv.1",
            "dw.conv": "conv.3",
            "dw.bn": "conv.4",
            "project.conv": f"conv.{p}",
            "project.bn": f"conv.{p + 1}",
        }

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.shortcut else y


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor`` without dropping more than 10%."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)
