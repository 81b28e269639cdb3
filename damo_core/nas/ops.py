"""The deploy-graph operations a backbone structure becomes, without building it.

A search prices thousands of candidates; building each as a torch module costs ~100 ms, listing
its convs costs microseconds. The list mirrors exactly what ``tinynas_res``, ``tinynas_csp`` and
``tinynas_mob`` build once fused (BatchNorms folded into biased convs, RepConv folded into one
3×3), so params and MACs summed from it equal ``damo_core.models.profile`` on the built model
(``tests/nas/test_ops.py`` holds that), and the latency table times the same convs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from damo_core.models.backbones.structure import StageSpec, StructureError
from damo_core.models.backbones.tinynas_csp import group_csp_stages
from damo_core.models.layers.conv import make_divisible

SPP_KERNELS = (5, 9, 13)
MOB_KERNEL = 5
BACKBONE_TYPES = ("tinynas_res", "tinynas_csp", "tinynas_mob")


@dataclass(frozen=True)
class ConvOp:
    """One biased conv of the deploy graph; ``res`` is the input side (square maps)."""

    cin: int
    cout: int
    kernel: int
    stride: int
    res: int
    groups: int = 1

    @property
    def res_out(self) -> int:
        return (self.res - 1) // self.stride + 1

    @property
    def params(self) -> int:
        return self.cin // self.groups * self.cout * self.kernel**2 + self.cout

    @property
    def macs(self) -> int:
        return self.res_out**2 * self.cin // self.groups * self.cout * self.kernel**2

    @property
    def depthwise(self) -> bool:
        return self.groups > 1


@dataclass(frozen=True)
class EltOp:
    """A parameter-free op whose cost grows with its output size: ``act`` (in-place
    activation), ``add`` (residual), ``copy`` (concat, Focus space-to-depth), ``pool``
    (stride-1 max-pool of ``kernel``)."""

    kind: str
    numel: int
    kernel: int = 1


Op = ConvOp | EltOp


def backbone_ops(backbone_type: str, stages: list[StageSpec], image_size: int,
                 **kwargs: Any) -> list[Op]:
    """Deploy ops of a backbone built from ``stages`` with the config's backbone ``kwargs``
    (``use_focus``, ``with_spp``, ``reparam``; others do not change the graph's cost)."""
    if backbone_type == "tinynas_res":
        return _res_ops(stages, image_size, kwargs.get("use_focus", True),
                        kwargs.get("with_spp", True), kwargs.get("reparam", True))
    if backbone_type == "tinynas_csp":
        return _csp_ops(stages, image_size, kwargs.get("use_focus", True),
                        kwargs.get("with_spp", True), kwargs.get("reparam", True))
    if backbone_type == "tinynas_mob":
        return _mob_ops(stages, image_size, kwargs.get("with_spp", True))
    raise StructureError(f"backbone type {backbone_type!r} is not one of {BACKBONE_TYPES}")


def conv_act(cin: int, cout: int, kernel: int, stride: int, res: int, groups: int = 1,
             act: bool = True) -> list[Op]:
    conv = ConvOp(cin, cout, kernel, stride, res, groups)
    return [conv, EltOp("act", cout * conv.res_out**2)] if act else [conv]


def _stem_ops(spec: StageSpec, image_size: int, use_focus: bool) -> tuple[list[Op], int]:
    res = image_size // 2
    if use_focus:
        ops: list[Op] = [EltOp("copy", 4 * spec.in_channels * res**2)]
        return ops + conv_act(4 * spec.in_channels, spec.out_channels, spec.kernel, 1, res), res
    return conv_act(spec.in_channels, spec.out_channels, spec.kernel, 2, image_size), res


def _spp_ops(channels: int, res: int) -> list[Op]:
    hidden = channels // 2
    ops = conv_act(channels, hidden, 1, 1, res)
    ops += [EltOp("pool", hidden * res**2, k) for k in SPP_KERNELS]
    ops.append(EltOp("copy", hidden * (len(SPP_KERNELS) + 1) * res**2))
    return ops + conv_act(hidden * (len(SPP_KERNELS) + 1), channels, 1, 1, res)


def res_block_ops(cin: int, cout: int, btn: int, kernel: int, stride: int, res: int,
                  block: str, reparam: bool) -> list[Op]:
    """``ResBlock``: (1×1 | k×k) → k×k (a fused RepConv is 3×3), skip when stride 1."""
    first = 1 if block == "res_k1kx" else kernel
    ops = conv_act(cin, btn, first, 1, res)
    ops += conv_act(btn, cout, 3 if reparam else kernel, stride, res, act=False)
    out_numel = cout * ((res - 1) // stride + 1) ** 2
    if stride == 1:
        if cin != cout:
            ops += conv_act(cin, cout, 1, 1, res, act=False)
        ops.append(EltOp("add", out_numel))
    ops.append(EltOp("act", out_numel))
    return ops


def _res_ops(stages: list[StageSpec], image_size: int, use_focus: bool, with_spp: bool,
             reparam: bool) -> list[Op]:
    ops, res = _stem_ops(stages[0], image_size, use_focus)
    last = len(stages) - 1
    for i, spec in enumerate(stages[1:], start=1):
        for j in range(spec.depth):
            cin = spec.in_channels if j == 0 else spec.out_channels
            stride = spec.stride if j == 0 else 1
            ops += res_block_ops(cin, spec.out_channels, spec.btn, spec.kernel, stride, res,
                                 spec.block, reparam)
            res = (res - 1) // stride + 1
            if j == 0 and with_spp and i == last:
                ops += _spp_ops(spec.out_channels, res)
    return ops


def _csp_ops(stages: list[StageSpec], image_size: int, use_focus: bool, with_spp: bool,
             reparam: bool) -> list[Op]:
    ops, res = _stem_ops(stages[0], image_size, use_focus)
    groups = group_csp_stages(stages)
    for g, specs in enumerate(groups):
        first, last = specs[0], specs[-1]
        hidden = last.out_channels // 2
        ops += conv_act(first.in_channels, 2 * hidden, 3, 2, res)
        res = (res - 1) // 2 + 1
        if with_spp and g == len(groups) - 1:
            ops += _spp_ops(2 * hidden, res)
        blocks = [s for s in specs for _ in range(s.depth - 1 if s.stride == 2 else s.depth)]
        if not blocks:
            continue
        ops += conv_act(2 * hidden, hidden, 1, 1, res) * 2  # shortcut and start (same shape)
        for spec in blocks:
            ops += res_block_ops(hidden, hidden, spec.btn, spec.kernel, 1, res, spec.block,
                                 reparam)
        ops.append(EltOp("copy", 2 * hidden * res**2))
        ops += conv_act(2 * hidden, last.out_channels, 1, 1, res)
    return ops


def mob_ratio(position: int) -> float:
    """Expansion ratio of structure entry ``position`` in ``tinynas_mob``."""
    return 3.5 + 0.5 * (position - 1)


def _mob_ops(stages: list[StageSpec], image_size: int, with_spp: bool) -> list[Op]:
    ops, res = _stem_ops(stages[0], image_size, use_focus=False)
    last = len(stages) - 1
    for i, spec in enumerate(stages[1:], start=1):
        hidden = make_divisible(math.ceil(spec.out_channels * mob_ratio(i)))
        for j in range(spec.depth):
            cin = spec.in_channels if j == 0 else spec.out_channels
            stride = spec.stride if j == 0 else 1
            ops += conv_act(cin, hidden, 1, 1, res)
            ops += conv_act(hidden, hidden, MOB_KERNEL, stride, res, groups=hidden)
            res = (res - 1) // stride + 1
            ops += conv_act(hidden, spec.out_channels, 1, 1, res, act=False)
            if stride == 1 and cin == spec.out_channels:
                ops.append(EltOp("add", spec.out_channels * res**2))
            if j == 0 and with_spp and i == last:
                ops += _spp_ops(spec.out_channels, res)
    return ops


def count_layers(backbone_type: str, stages: list[StageSpec]) -> int:
    """TinyNAS's depth budget: the stem is 1 layer, a residual block 2, a mobile block 3."""
    per_block = 3 if backbone_type == "tinynas_mob" else 2
    return 1 + per_block * sum(s.depth for s in stages[1:])


def totals(ops: list[Op]) -> tuple[int, int]:
    """(params, MACs) of the conv ops."""
    convs = [op for op in ops if isinstance(op, ConvOp)]
    return sum(op.params for op in convs), sum(op.macs for op in convs)
