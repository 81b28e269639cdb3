"""MAE-Mob backbone (DAMO-YOLO-Ns/Nm/Nl): TinyNAS stages of MobileNetV3-style blocks.

Depthwise blocks are what makes the nano models fast on CPUs (paper 2.1). Deeper stages expand
more: the expansion ratio of structure entry ``i`` is ``3.5 + 0.5 * (i - 1)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from damo_core.models.backbones.base import StagedBackbone
from damo_core.models.backbones.structure import StageSpec
from damo_core.models.layers.conv import ConvBNAct, MobBlock, SPPBottleneck
from damo_core.models.registry import register_backbone


class MobStage(nn.Module):
    ref_names = {"blocks": "block_list"}

    def __init__(self, spec: StageSpec, position: int, act: str, with_spp: bool) -> None:
        super().__init__()
        ratio = 3.5 + 0.5 * (position - 1)
        self.blocks = nn.ModuleList()
        for i in range(spec.depth):
            cin = spec.in_channels if i == 0 else spec.out_channels
            self.blocks.append(MobBlock(cin, spec.out_channels, spec.stride if i == 0 else 1,
                                        ratio, act, ref_project_index=7))
            if i == 0 and with_spp:
                self.blocks.append(SPPBottleneck(spec.out_channels, spec.out_channels, act="silu"))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


@register_backbone("tinynas_mob")
class TinyNASMob(StagedBackbone):
    ref_names = {"stages": "block_list"}

    def __init__(
        self,
        structure: list[StageSpec],
        out_indices: tuple[int, ...] = (2, 4, 5),
        with_spp: bool = True,
        act: str = "silu",
    ) -> None:
        super().__init__()
        self.out_indices = tuple(out_indices)
        stem = structure[0]
        self.stages = nn.ModuleList([
            ConvBNAct(stem.in_channels, stem.out_channels, stem.kernel, 2, act=act,
                      ref_style="nested_conv1_bn1")
        ])
        last = len(structure) - 1
        for i, spec in enumerate(structure[1:], start=1):
            self.stages.append(MobStage(spec, i, act, with_spp and i == last))
        self.out_channels = [structure[i].out_channels for i in self.out_indices]
