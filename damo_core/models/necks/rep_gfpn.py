"""Efficient RepGFPN (paper 2.2): the heavy neck of DAMO-YOLO.

Compared with GFPN it (1) gives each scale its own width, (2) keeps queen-fusion's extra
*downsampling* edges but drops its extra upsampling nodes (0.6 ms for 0.3 AP was not worth it,
Table 4), and (3) fuses with a CSP block whose bottlenecks are RepConvs and whose every
intermediate output is concatenated (ELAN), Table 5.

Node graph for backbone maps c3 (stride 8), c4 (16), c5 (32)::

    p5  = fuse(c5, down(c4))                      # top, stride 32
    p4  = fuse(c4, down(c3), up(p5))              # stride 16
    o3  = fuse(c3, up(p4))                        # output, stride 8
    o4  = fuse(p4, down(o3))                      # output, stride 16
    o5  = fuse(p5, down(p4), down(o4))            # output, stride 32 (queen-fusion)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from damo_core.errors import UserInputError
from damo_core.models.layers.conv import ConvBNAct, DepthwiseSeparable, MobBlock
from damo_core.models.layers.repconv import RepConv
from damo_core.models.registry import register_neck


class RepBottleneck(nn.Module):
    """RepConv (width ``hidden``) → 3×3 conv back to ``channels``, plus identity skip."""

    ref_names = {"rep": "conv2", "conv": "conv1"}

    def __init__(self, channels: int, hidden_ratio: float, act: str) -> None:
        super().__init__()
        hidden = int(channels * hidden_ratio)
        self.rep = RepConv(channels, hidden, 3, act=act)
        self.conv = ConvBNAct(hidden, channels, 3, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(self.rep(x))


class DepthwiseBottleneck(nn.Module):
    """The nano models' bottleneck: an inverted mobile block (expansion 3) instead of RepConv."""

    ref_names = {"block": "conv"}

    def __init__(self, channels: int, act: str) -> None:
        super().__init__()
        self.block = MobBlock(channels, channels, 1, 3.0, act, ref_project_index=6)

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class FusionBlock(nn.Module):
    """CSP + RepConv + ELAN fusion: split into a shortcut half and a chain of ``depth``
    bottlenecks, then concatenate the shortcut with *every* bottleneck output and project."""

    ref_names = {"shortcut": "conv1", "entry": "conv2", "bottlenecks": "convs", "project": "conv3"}

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int,
        hidden_ratio: float,
        act: str,
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        short = out_channels // 2
        mid = out_channels - short
        self.shortcut = ConvBNAct(in_channels, short, 1, act=act)
        self.entry = ConvBNAct(in_channels, mid, 1, act=act)
        self.bottlenecks = nn.ModuleList(
            DepthwiseBottleneck(mid, act) if depthwise else RepBottleneck(mid, hidden_ratio, act)
            for _ in range(depth)
        )
        self.project = ConvBNAct(short + mid * depth, out_channels, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.shortcut(x)]
        y = self.entry(x)
        for block in self.bottlenecks:
            y = block(y)
            outs.append(y)
        return self.project(torch.cat(outs, dim=1))


@register_neck("rep_gfpn")
class RepGFPN(nn.Module):
    """Three inputs (strides 8/16/32) → three outputs of ``out_channels``."""

    ref_names = {
        "down_c4_p5": "bu_conv13", "fuse_p5": "merge_3",
        "down_c3_p4": "bu_conv24", "fuse_p4": "merge_4",
        "fuse_o3": "merge_5",
        "down_o3_o4": "bu_conv57", "fuse_o4": "merge_7",
        "down_p4_o5": "bu_conv46", "down_o4_o5": "bu_conv76", "fuse_o5": "merge_6",
    }

    def __init__(
        self,
        in_channels: list[int],
        out_channels: list[int],
        depth: int = 3,
        hidden_ratio: float = 1.0,
        act: str = "relu",
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        if len(in_channels) != 3 or len(out_channels) != 3:
            raise UserInputError(
                f"RepGFPN fuses exactly 3 levels; got in_channels={in_channels}, "
                f"out_channels={out_channels}"
            )
        c3, c4, c5 = in_channels
        o3, o4, o5 = out_channels
        self.in_channels, self.out_channels = list(in_channels), list(out_channels)

        def down(channels: int) -> nn.Module:
            if depthwise:
                return DepthwiseSeparable(channels, channels, 3, 2, act)
            return ConvBNAct(channels, channels, 3, 2, act=act)

        def fuse(cin: int, cout: int) -> FusionBlock:
            return FusionBlock(cin, cout, depth, hidden_ratio, act, depthwise)

        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.down_c4_p5 = down(c4)
        self.fuse_p5 = fuse(c5 + c4, c5)
        self.down_c3_p4 = down(c3)
        self.fuse_p4 = fuse(c3 + c4 + c5, c4)
        self.fuse_o3 = fuse(c4 + c3, o3)
        self.down_o3_o4 = down(o3)
        self.fuse_o4 = fuse(o3 + c4, o4)
        self.down_p4_o5 = down(c4)
        self.down_o4_o5 = down(o4)
        self.fuse_o5 = fuse(c4 + o4 + c5, o5)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        c3, c4, c5 = features
        p5 = self.fuse_p5(torch.cat([c5, self.down_c4_p5(c4)], dim=1))
        p4 = self.fuse_p4(torch.cat([c4, self.down_c3_p4(c3), self.upsample(p5)], dim=1))
        o3 = self.fuse_o3(torch.cat([c3, self.upsample(p4)], dim=1))
        o4 = self.fuse_o4(torch.cat([p4, self.down_o3_o4(o3)], dim=1))
        o5 = self.fuse_o5(torch.cat([p5, self.down_p4_o5(p4), self.down_o4_o5(o4)], dim=1))
        return [o3, o4, o5]
