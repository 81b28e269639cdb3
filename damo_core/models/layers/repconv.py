"""RepConv: a multi-branch conv for training that collapses into one 3×3 conv for deploy.

Training sees a 3×3 conv+BN, a 1×1 conv+BN and (optionally) an identity BN in parallel; their sum
is linear in the input, so after training the three branches fold into a single 3×3 kernel and
bias (RepVGG). Deploy latency is that of a plain conv while training keeps the richer gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from damo_core.errors import UserInputError
from damo_core.models.layers.conv import (
    ConvBNAct,
    batch_norm,
    bn_scale_shift,
    get_activation,
    set_conv_weights,
)


class RepConv(nn.Module):
    """3×3 + 1×1 (+ identity) branches, each with its own BatchNorm, then an activation.

    ``identity`` adds the BN-only skip branch; it needs ``in == out`` and stride 1. The released
    DAMO-YOLO checkpoints were trained without it, so the zoo configs leave it off.
    """

    ref_names = {"dense": "rbr_dense", "pointwise": "rbr_1x1", "identity": "rbr_identity",
                 "reparam": "rbr_reparam"}

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        act: str | None = "relu",
        identity: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size != 3:
            raise UserInputError(f"RepConv folds into a 3x3 kernel; got kernel_size={kernel_size}")
        if identity and (in_channels != out_channels or stride != 1):
            raise UserInputError(
                "RepConv identity branch needs in_channels == out_channels and stride 1, got "
                f"{in_channels}->{out_channels} stride {stride}"
            )
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.dense: ConvBNAct | None = ConvBNAct(in_channels, out_channels, 3, stride, act=None)
        self.pointwise: ConvBNAct | None = ConvBNAct(in_channels, out_channels, 1, stride, act=None)
        self.identity: nn.BatchNorm2d | None = batch_norm(in_channels) if identity else None
        self.reparam: nn.Conv2d | None = None
        self.act = get_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        if self.reparam is not None:
            return self.act(self.reparam(x))
        assert self.dense is not None and self.pointwise is not None
        y = self.dense(x) + self.pointwise(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return self.act(y)

    @property
    def fused(self) -> bool:
        return self.reparam is not None

    def equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        """The single 3×3 kernel and bias that reproduce all branches in eval mode."""
        assert self.dense is not None and self.pointwise is not None
        k3, b3 = _conv_bn_kernel_bias(self.dense)
        k1, b1 = _conv_bn_kernel_bias(self.pointwise)
        kernel, bias = k3 + F.pad(k1, [1, 1, 1, 1]), b3 + b1
        if self.identity is not None:
            eye = torch.zeros_like(k3)
            idx = torch.arange(self.in_channels, device=eye.device)
            eye[idx, idx, 1, 1] = 1.0
            ki, bi = bn_scale_shift(self.identity)
            kernel = kernel + eye * ki.reshape(-1, 1, 1, 1)
            bias = bias + bi
        return kernel, bias

    def fuse(self) -> None:
        if self.fused:
            return
        assert self.dense is not None
        with torch.no_grad():
            kernel, bias = self.equivalent_kernel_bias()
        # A new module (allocated on "meta", so no init cost): the branch convs may still be
        # referenced elsewhere and must not change under them.
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, self.stride, 1, device="meta")
        self.reparam = set_conv_weights(conv, kernel, bias)
        self.dense = self.pointwise = self.identity = None


def _conv_bn_kernel_bias(branch: ConvBNAct) -> tuple[Tensor, Tensor]:
    if branch.fused:
        return branch.conv.weight, branch.conv.bias
    assert isinstance(branch.bn, nn.BatchNorm2d)
    scale, shift = bn_scale_shift(branch.bn)
    return branch.conv.weight * scale.reshape(-1, 1, 1, 1), shift
