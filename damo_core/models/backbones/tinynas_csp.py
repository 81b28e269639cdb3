"""MAE-CSP backbone (DAMO-YOLO-M/L): TinyNAS residual blocks wrapped in CSP stages.

Each stride-2 structure entry opens a CSP stage (a 3×3 stride-2 downsampler, then half the
channels go through the residual blocks and half take a 1×1 shortcut); stride-1 entries extend
the current stage. The downsampler replaces the first block of a stride-2 entry, so it
contributes ``depth - 1`` blocks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from damo_core.models.backbones.base import StagedBackbone
from damo_core.models.backbones.structure import StageSpec, StructureError
from damo_core.models.backbones.tinynas_res import ResBlock, build_stem
from damo_core.models.layers.conv import ConvBNAct, SPPBottleneck
from damo_core.models.registry import register_backbone


class CSPStage(nn.Module):
    ref_names = {"downsample": "downsampler", "blocks": "convstem"}

    def __init__(
        self,
        specs: list[StageSpec],
        act: str,
        reparam: bool,
        with_spp: bool,
        wrapper_act: str = "relu",
    ) -> None:
        super().__init__()
        first, last = specs[0], specs[-1]
        hidden = last.out_channels // 2
        conv = {"act": wrapper_act, "ref_style": "nested_conv1_bn1"}
        self.downsample = ConvBNAct(first.in_channels, 2 * hidden, 3, 2, **conv)
        self.spp = SPPBottleneck(2 * hidden, 2 * hidden, act="silu") if with_spp else None
        self.blocks = nn.ModuleList()
        for spec in specs:
            repeats = spec.depth - 1 if spec.stride == 2 else spec.depth
            for _ in range(repeats):
                self.blocks.append(ResBlock(hidden, hidden, spec.btn, spec.kernel, 1, act,
                                            reparam, spec.block))
        if self.blocks:
            self.conv_start = ConvBNAct(2 * hidden, hidden, 1, **conv)
            self.conv_shortcut = ConvBNAct(2 * hidden, hidden, 1, **conv)
            self.conv_fuse = ConvBNAct(2 * hidden, last.out_channels, 1, **conv)

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x)
        if self.spp is not None:
            x = self.spp(x)
        if not self.blocks:
            return x
        shortcut = self.conv_shortcut(x)
        x = self.conv_start(x)
        for block in self.blocks:
            x = block(x)
        return self.conv_fuse(torch.cat((x, shortcut), dim=1))


def group_csp_stages(
    structure: list[StageSpec], source: str = "structure"
) -> list[list[StageSpec]]:
    """Split stages at every stride-2 entry: each group becomes one CSP stage."""
    groups: list[list[StageSpec]] = []
    for i, spec in enumerate(structure[1:], start=1):
        if spec.stride == 2:
            groups.append([spec])
        elif not groups:
            raise StructureError(f"{source}[{i}]: a CSP backbone's first stage must stride 2")
        else:
            if spec.out_channels != groups[-1][-1].out_channels:
                raise StructureError(
                    f"{source}[{i}]: a stride-1 stage inside a CSP stage keeps the width "
                    f"({groups[-1][-1].out_channels}), got out={spec.out_channels}"
                )
            groups[-1].append(spec)
    return groups


@register_backbone("tinynas_csp")
class TinyNASCSP(StagedBackbone):
    ref_names = {"stages": "csp_stage"}

    def __init__(
        self,
        structure: list[StageSpec],
        out_indices: tuple[int, ...] = (2, 3, 4),
        with_spp: bool = True,
        use_focus: bool = True,
        act: str = "silu",
        reparam: bool = True,
    ) -> None:
        super().__init__()
        self.out_indices = tuple(out_indices)
        groups = group_csp_stages(structure)
        self.stages = nn.ModuleList([build_stem(structure[0], use_focus, act)])
        for i, specs in enumerate(groups):
            self.stages.append(CSPStage(specs, act, reparam, with_spp and i == len(groups) - 1))
        widths = [structure[0].out_channels] + [g[-1].out_channels for g in groups]
        self.out_channels = [widths[i] for i in self.out_indices]
