"""Budgets of a searched model: params, FLOPs, layers and latency, priced without training.

Params and FLOPs are those of the whole detector's deploy graph (RepConv and BN fused), the way
the paper's tables count them, because that is what a "T-sized" budget means. The backbone part
comes from :mod:`damo_core.nas.ops` (exact, microseconds). The neck and head depend on the
backbone only through the three widths they read, as a polynomial of degree two (convs whose
in and out widths both follow a backbone width); the model is built for ten width triples on
PyTorch's meta device (no memory, no init), the quadratic is solved exactly in rationals, and
an eleventh build checks it. Layers follow TinyNAS's count; latency is the backbone's, from the
device's latency table.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor, nn

from damo_core.errors import UserInputError
from damo_core.models.backbones.structure import StageSpec, stages_from_config
from damo_core.models.config import ModelConfig, kwargs_for
from damo_core.models.detector import Detector
from damo_core.models.layers.repconv import RepConv
from damo_core.models.profile import count_params
from damo_core.models.registry import HEADS, NECKS
from damo_core.nas.latency_lut import LatencyTable
from damo_core.nas.ops import backbone_ops, count_layers, totals

_BACKBONE_GRAPH_KEYS = ("use_focus", "with_spp", "reparam")
_SUFFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


class BudgetError(UserInputError):
    """A budget no structure of the space can meet (names the budget and what is reachable)."""


def parse_count(text: str, field: str) -> float:
    """``18G`` → 18e9, ``8.5M`` → 8.5e6, ``1200`` → 1200."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*([kKmMgGtT]?)\s*", str(text))
    if not match:
        raise BudgetError(f"{field} = {text!r}: expected a number with an optional K/M/G/T "
                          "suffix, e.g. 18G or 8.5M")
    return float(match.group(1)) * _SUFFIX[match.group(2).upper()]


@dataclass(frozen=True)
class Budgets:
    """Upper bounds; ``None`` is unbounded. Params in millions, FLOPs in GFLOPs (2 × MACs)."""

    params_m: float | None = None
    gflops: float | None = None
    layers: int | None = None
    latency_ms: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"params_m": self.params_m, "gflops": self.gflops, "layers": self.layers,
                "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class Costs:
    params_m: float
    gflops: float
    layers: int
    latency_ms: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {"params_m": self.params_m, "gflops": self.gflops, "layers": self.layers,
                "latency_ms": self.latency_ms}


_NAMES = {"params_m": ("--budget-params-m", "M params"),
          "gflops": ("--budget-gflops", " GFLOPs"),
          "layers": ("--budget-layers", " layers"), "latency_ms": ("--budget-latency-ms", " ms")}


def violations(costs: Costs, budgets: Budgets) -> list[str]:
    out = []
    for key, limit in budgets.as_dict().items():
        value = costs.as_dict()[key]
        if limit is not None and value is not None and value > limit:
            out.append(key)
    return out


def check_reachable(minimal: Costs, budgets: Budgets, space_name: str) -> None:
    """Raise :class:`BudgetError` when even the cheapest structure breaks a budget."""
    for key in violations(minimal, budgets):
        option, unit = _NAMES[key]
        raise BudgetError(
            f"{option} {budgets.as_dict()[key]:g}: no '{space_name}' structure fits; the "
            f"smallest reachable is {minimal.as_dict()[key]:.4g}{unit} (the space's cheapest "
            "structure)"
        )


class _ZeroFeatures(nn.Module):
    """Stands in for a backbone: zero maps of the given widths at strides 8, 16, 32."""

    def __init__(self, widths: tuple[int, int, int]) -> None:
        super().__init__()
        self.out_channels = list(widths)

    def forward(self, x: Tensor) -> list[Tensor]:
        side = x.shape[-1]
        return [x.new_zeros(1, c, side // s, side // s)
                for c, s in zip(self.out_channels, (8, 16, 32), strict=True)]


def _neck_head_counts(cfg: ModelConfig, widths: tuple[int, int, int],
                      image_size: int) -> tuple[int, int]:
    """Deploy (params, MACs) of neck + head, counted on an unfused model built on "meta"."""
    neck_cls, head_cls = NECKS[cfg.neck["type"]], HEADS[cfg.head["type"]]
    neck_kw = kwargs_for(neck_cls, cfg.neck, cfg.source, "neck.", {"in_channels"})
    head_kw = kwargs_for(head_cls, cfg.head, cfg.source, "head.", {"in_channels", "num_classes"})
    with torch.device("meta"):
        neck = neck_cls(in_channels=list(widths), **neck_kw)
        head = head_cls(in_channels=neck.out_channels, num_classes=cfg.num_classes, **head_kw)
        model = Detector(_ZeroFeatures(widths), neck, head).eval()
        return _deploy_params(model), _deploy_macs(model, image_size)


def _deploy_params(model: nn.Module) -> int:
    """Params after fusing, from the unfused model: a BatchNorm folds into a C-wide bias; a
    RepConv's 1×1 (and identity) branches fold into its 3×3 and one bias."""
    total = count_params(model)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            total -= m.num_features
        elif isinstance(m, RepConv) and not m.fused:
            assert m.pointwise is not None
            total -= m.pointwise.conv.weight.numel() + m.out_channels
            if m.identity is not None:
                total -= m.out_channels
    return total


def _deploy_macs(model: nn.Module, image_size: int) -> int:
    """Conv MACs of one forward, RepConv 1×1 branches excluded (they vanish into the 3×3)."""
    folded = {id(m.pointwise.conv) for m in model.modules()
              if isinstance(m, RepConv) and m.pointwise is not None}
    total = 0

    def on_conv(m: nn.Conv2d, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    hooks = [m.register_forward_hook(on_conv) for m in model.modules()
             if isinstance(m, nn.Conv2d) and id(m) not in folded]
    try:
        model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for hook in hooks:
            hook.remove()
    return total


_MONOMIALS = [(0, 0, 0)] + [tuple(int(i == j) for j in range(3)) for i in range(3)] + [
    tuple(int(i == k) + int(j == k) for k in range(3))
    for i, j in itertools.combinations_with_replacement(range(3), 2)]


def _monomials(w: tuple[int, int, int]) -> list[Fraction]:
    return [Fraction(w[0] ** a * w[1] ** b * w[2] ** c) for a, b, c in _MONOMIALS]


def _solve(rows: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    n = len(rows)
    m = [row[:] + [v] for row, v in zip(rows, rhs, strict=True)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if m[r][col] != 0)
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[r][col] != 0:
                f = m[r][col] / m[col][col]
                m[r] = [a - f * b for a, b in zip(m[r], m[col], strict=True)]
    return [m[i][n] / m[i][i] for i in range(n)]


_Coef = tuple[tuple[Fraction, ...], tuple[Fraction, ...]]
_COEF_CACHE: dict[str, _Coef | None] = {}
_CHECKS = ((24, 8, 16), (8, 40, 24), (40, 16, 56))


def neck_head_model(cfg: ModelConfig, base: tuple[int, int, int], image_size: int) -> _Coef | None:
    """Exact quadratic coefficients of (params, MACs) of neck + head in the three widths, or
    None when the neck's rounding (e.g. the nano necks' halved widths) makes it
    non-polynomial. Cached per neck/head config: a search, its tests and benchmark fit once."""
    key = json.dumps([cfg.neck, cfg.head, cfg.num_classes, base, image_size], sort_keys=True)
    if key not in _COEF_CACHE:
        _COEF_CACHE[key] = _fit_neck_head(cfg, base, image_size)
    return _COEF_CACHE[key]


def _shifted(base: tuple[int, int, int], off: tuple[int, ...]) -> tuple[int, int, int]:
    return base[0] + off[0], base[1] + off[1], base[2] + off[2]


def _fit_neck_head(cfg: ModelConfig, base: tuple[int, int, int],
                   image_size: int) -> _Coef | None:
    offsets = [(0, 0, 0)] + [tuple(d * (i == k) for k in range(3)) for d in (8, 16)
                             for i in range(3)]
    offsets += [tuple(8 * (k in (i, j)) for k in range(3))
                for i, j in itertools.combinations(range(3), 2)]
    points = [_shifted(base, off) for off in offsets]
    counts = [_neck_head_counts(cfg, p, image_size) for p in points]
    rows = [_monomials(p) for p in points]
    coef = (tuple(_solve(rows, [Fraction(c[0]) for c in counts])),
            tuple(_solve(rows, [Fraction(c[1]) for c in counts])))
    for off in _CHECKS:
        point = _shifted(base, off)
        if _neck_head_counts(cfg, point, image_size) != _evaluate(coef, point):
            return None
    return coef


def _evaluate(coef: _Coef, widths: tuple[int, int, int]) -> tuple[int, int]:
    mono = _monomials(widths)
    params, macs = (sum(a * m for a, m in zip(c, mono, strict=True)) for c in coef)
    return int(params), int(macs)


def feature_widths(backbone_type: str, stages: list[StageSpec],
                   out_indices: tuple[int, ...]) -> tuple[int, int, int]:
    """Widths of the maps the neck reads (CSP indexes its stages, not structure entries)."""
    if backbone_type == "tinynas_csp":
        from damo_core.models.backbones.tinynas_csp import group_csp_stages

        widths = [stages[0].out_channels] + [g[-1].out_channels for g in
                                             group_csp_stages(stages)]
    else:
        widths = [s.out_channels for s in stages]
    picked = tuple(widths[i] for i in out_indices)
    return picked[0], picked[1], picked[2]


def backbone_graph_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """The backbone options that change its graph's cost (Focus stem, SPP, RepConv)."""
    return {k: cfg.backbone[k] for k in _BACKBONE_GRAPH_KEYS if k in cfg.backbone}


class CostModel:
    """Prices structures for one model config (its neck, head and backbone options)."""

    def __init__(self, cfg: ModelConfig, image_size: int | None = None,
                 latency: LatencyTable | None = None) -> None:
        self.cfg = cfg
        self.image_size = image_size or cfg.image_size
        self.backbone_type = str(cfg.backbone["type"])
        self.graph_kwargs = backbone_graph_kwargs(cfg)
        self.out_indices = tuple(cfg.backbone.get("out_indices", (2, 4, 5)))
        self.latency = latency
        base = feature_widths(self.backbone_type, self.published_structure(), self.out_indices)
        self._coef = neck_head_model(cfg, base, self.image_size)
        self._built: dict[tuple[int, int, int], tuple[int, int]] = {}

    def published_structure(self) -> list[StageSpec]:
        return stages_from_config(self.cfg.backbone["structure"], self.cfg.source)

    def costs(self, stages: list[StageSpec]) -> Costs:
        ops = backbone_ops(self.backbone_type, stages, self.image_size, **self.graph_kwargs)
        params, macs = totals(ops)
        p, m = self.neck_head(feature_widths(self.backbone_type, stages, self.out_indices))
        latency = self.latency.predict_ms(ops) if self.latency is not None else None
        return Costs((params + p) / 1e6, 2 * (macs + m) / 1e9,
                     count_layers(self.backbone_type, stages), latency)

    def neck_head(self, widths: tuple[int, int, int]) -> tuple[int, int]:
        """(params, MACs) of neck + head: the exact quadratic, else one build per triple."""
        if self._coef is not None:
            return _evaluate(self._coef, widths)
        if widths not in self._built:
            self._built[widths] = _neck_head_counts(self.cfg, widths, self.image_size)
        return self._built[widths]
