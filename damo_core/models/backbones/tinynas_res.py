"""MAE-Res backbone (DAMO-YOLO-T/S): TinyNAS stages of residual bottleneck blocks."""

from __future__ import annotations

from torch import Tensor, nn

from damo_core.models.backbones.base import StagedBackbone
from damo_core.models.backbones.structure import StageSpec
from damo_core.models.layers.conv import ConvBNAct, Focus, SPPBottleneck, get_activation
from damo_core.models.layers.repconv import RepConv
from damo_core.models.registry import register_backbone


class ResBlock(nn.Module):
    """Bottleneck residual block: (1×1 | k×k) conv → k×k conv (RepConv when ``reparam``).

    A stride-2 block has no skip connection (shapes differ); a stride-1 block whose width changes
    gets a 1×1 projection on the skip path.
    """

    ref_names = {"shortcut": "residual_proj"}

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        btn: int,
        kernel: int,
        stride: int,
        act: str,
        reparam: bool,
        block: str,
    ) -> None:
        super().__init__()
        first_kernel = 1 if block == "res_k1kx" else kernel
        self.conv1 = ConvBNAct(in_channels, btn, first_kernel, act=None, ref_style="conv1_bn1")
        self.conv2: nn.Module
        if reparam:
            self.conv2 = RepConv(btn, out_channels, kernel, stride, act=None)
        else:
            self.conv2 = ConvBNAct(btn, out_channels, kernel, stride, act=None,
                                   ref_style="conv1_bn1")
        self.act = get_activation(act)
        self.residual = stride == 1
        self.shortcut: nn.Module | None = None
        if self.residual and in_channels != out_channels:
            self.shortcut = ConvBNAct(in_channels, out_channels, 1, act=None,
                                      ref_style="conv1_bn1")

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        if self.residual:
            y = y + (x if self.shortcut is None else self.shortcut(x))
        return self.act(y)


class ResStage(nn.Module):
    """``depth`` residual blocks; the first one strides. SPP follows the first block when asked."""

    ref_names = {"blocks": "block_list"}

    def __init__(self, spec: StageSpec, act: str, reparam: bool, with_spp: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(spec.depth):
            cin = spec.in_channels if i == 0 else spec.out_channels
            stride = spec.stride if i == 0 else 1
            self.blocks.append(ResBlock(cin, spec.out_channels, spec.btn, spec.kernel, stride,
                                        act, reparam, spec.block))
            if i == 0 and with_spp:
                # The reference's SPP always uses SiLU, whatever the backbone's activation.
                self.blocks.append(SPPBottleneck(spec.out_channels, spec.out_channels, act="silu"))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def build_stem(spec: StageSpec, use_focus: bool, act: str) -> nn.Module:
    """Focus (space-to-depth) or a stride-2 conv: either way the stem halves the resolution."""
    if use_focus:
        return Focus(spec.in_channels, spec.out_channels, spec.kernel, act=act)
    return ConvBNAct(spec.in_channels, spec.out_channels, spec.kernel, 2, act=act,
                     ref_style="nested_conv1_bn1")


@register_backbone("tinynas_res")
class TinyNASRes(StagedBackbone):
    """Stem then one :class:`ResStage` per structure entry; returns the ``out_indices`` maps."""

    ref_names = {"stages": "block_list"}

    def __init__(
        self,
        structure: list[StageSpec],
        out_indices: tuple[int, ...] = (2, 4, 5),
        with_spp: bool = True,
        use_focus: bool = True,
        act: str = "relu",
        reparam: bool = True,
    ) -> None:
        super().__init__()
        self.out_indices = tuple(out_indices)
        self.stages = nn.ModuleList([build_stem(structure[0], use_focus, act)])
        last = len(structure) - 1
        for i, spec in enumerate(structure[1:], start=1):
            self.stages.append(ResStage(spec, act, reparam, with_spp and i == last))
        self.out_channels = [structure[i].out_channels for i in self.out_indices]
