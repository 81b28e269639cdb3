"""MAE-NAS zero-training score: the maximum-entropy estimate of a backbone's expressiveness.

Why it works without training: a network whose feature maps keep a large variance through its
depth carries more information (the entropy of a Gaussian grows with the log of its std).
Propagating a unit Gaussian through the convs with unit-Gaussian weights and no BN or
activation, each conv multiplies the std by ``sqrt(fan_in)``; so a block's log-std gain is known
in closed form (the analytic variant, TinyNAS's ``madnas``), or can be measured by a forward
pass that renormalises after every block (the forward variant).

Stage score ``s`` = (sum of the log-std gains of every block up to the end of stage ``s``)
+ log(width of stage ``s``); the total is the stage scores weighted by ``weights`` (one per
stage; DAMO-YOLO searched with ``(0, 0, 1, 1, 16)``, favouring the deep, wide last stage that
feeds the neck). Stages end before each stride-2 entry after the stem, and at the last entry.

Conventions of the reference (alibaba/lightweight-neural-architecture-search), kept so scores
equal its own to ~1e-12 (``tests/nas/test_score.py`` against a fixture the reference computed):

* the stem's fan-in counts what its conv reads: with a Focus stem that is ``4 × in`` (12 for
  RGB), as TinyNAS's DAMO-YOLO configs write it, although the published files say ``in: 3``;
* a residual block ``k1kx`` gains ``log sqrt(in) + log sqrt(btn·k²)``, ``kxkx`` gains
  ``log sqrt(in·k²) + log sqrt(btn·k²)``, ``in`` being the stage input for the first block and
  the stage width after; skip paths do not count;
* with ``nbitsA``/``nbitsW`` present, each conv adds the log-std gain of quantising a unit
  Gaussian to those bits (``STD_BITS`` below, TinyNAS's table for init std 1). Files whose bit
  lists do not hold 2 entries per block (some published DAMO-YOLO files; TinyNAS itself rejects
  them) are read as "every conv at that one width" when the list holds a single value;
* the input resolution does not enter the analytic score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from damo_core.models.backbones.structure import StageSpec, StructureError

DAMO_YOLO_WEIGHTS = (0.0, 0.0, 1.0, 1.0, 16.0)

# Std of a unit Gaussian after uniform quantisation to n bits (TinyNAS's lookup, init std 1).
STD_BITS = {2: 1.0089193649965897, 3: 1.0408034134404924, 4: 1.0408329944621844,
            5: 1.0408329944621846, 6: 1.0408329944621846, 7: 1.0408329944621846,
            8: 1.0408329944621846}


@dataclass(frozen=True)
class ScoreBreakdown:
    total: float
    stage_scores: tuple[float, ...]
    block_log_std: tuple[float, ...]


def stage_boundaries(stages: list[StageSpec]) -> tuple[list[int], list[int]]:
    """(blocks counted up to each stage's end, width at each stage's end)."""
    counts, widths = [], []
    blocks = 0
    for i, spec in enumerate(stages):
        if i > 0 and spec.stride == 2:
            counts.append(blocks)
            widths.append(stages[i - 1].out_channels)
        blocks += spec.depth if i > 0 else 1
    counts.append(blocks)
    widths.append(stages[-1].out_channels)
    return counts, widths


def _bit_terms(spec: StageSpec, convs: int) -> list[float]:
    """Per-conv quantisation log-std gains of a stage's ``convs`` convs (0 without nbits)."""
    if spec.nbits_a is None or spec.nbits_w is None:
        return [0.0] * convs
    bits = []
    for name, value in (("nbitsA", spec.nbits_a), ("nbitsW", spec.nbits_w)):
        values = list(value) if isinstance(value, tuple) else [value]
        if len(values) != convs:
            if len(set(values)) != 1:
                raise StructureError(f"{name} = {values}: expected {convs} entries, one per conv")
            values = values[:1] * convs
        unknown = [v for v in values if v not in STD_BITS]
        if unknown:
            raise StructureError(f"{name} = {values}: bit-widths {unknown} not in "
                                 f"{sorted(STD_BITS)}")
        bits.append(values)
    return [math.log(STD_BITS[a] * STD_BITS[w]) for a, w in zip(*bits, strict=True)]


def block_log_stds(stages: list[StageSpec], focus_stem: bool) -> list[float]:
    """Analytic log-std gain of every block (stem first), in network order."""
    stem = stages[0]
    fan_in = (4 if focus_stem else 1) * stem.in_channels
    gains = [math.log(math.sqrt(fan_in * stem.kernel**2)) + _bit_terms(stem, 1)[0]]
    for spec in stages[1:]:
        bits = _bit_terms(spec, 2 * spec.depth)
        k1 = 1 if spec.block == "res_k1kx" else spec.kernel
        for j in range(spec.depth):
            cin = spec.in_channels if j == 0 else spec.out_channels
            gains.append(math.log(math.sqrt(cin * k1**2)) + bits[2 * j]
                         + math.log(math.sqrt(spec.btn * spec.kernel**2)) + bits[2 * j + 1])
    return gains


def combine(gains: list[float], stages: list[StageSpec],
            weights: tuple[float, ...]) -> ScoreBreakdown:
    counts, widths = stage_boundaries(stages)
    if len(counts) != len(weights):
        raise StructureError(
            f"the structure has {len(counts)} stages (stride-2 entries after the stem, plus "
            f"the last) but {len(weights)} stage weights were given"
        )
    scores = tuple(
        0.0 if w == 0 else w * (sum(gains[:n]) + math.log(c))
        for w, n, c in zip(weights, counts, widths, strict=True)
    )
    return ScoreBreakdown(sum(scores), scores, tuple(gains))


def madnas_score(stages: list[StageSpec], *, focus_stem: bool = True,
                 weights: tuple[float, ...] = DAMO_YOLO_WEIGHTS) -> ScoreBreakdown:
    """Analytic MAE-NAS score (TinyNAS ``madnas``): microseconds per candidate."""
    return combine(block_log_stds(stages, focus_stem), stages, weights)


@torch.no_grad()
def forward_entropy_score(stages: list[StageSpec], *, focus_stem: bool = True,
                          weights: tuple[float, ...] = DAMO_YOLO_WEIGHTS,
                          resolution: int = 128, seed: int = 0) -> ScoreBreakdown:
    """Measured variant: a unit-Gaussian image through the blocks' convs (unit-Gaussian
    weights, no BN, no activation, no skip), the log of each block's output std recorded and
    the output renormalised. Close to :func:`madnas_score` (zero padding at small maps lowers
    it slightly); it is the check that the closed form describes a real forward pass."""
    gen = torch.Generator().manual_seed(seed)
    stem = stages[0]
    cin = (4 if focus_stem else 1) * stem.in_channels
    x = torch.randn(1, cin, resolution, resolution, generator=gen)
    gains = []
    x, gain = _renormalised(x, [(cin, stem.out_channels, stem.kernel, 1)], gen)
    gains.append(gain)
    for spec in stages[1:]:
        k1 = 1 if spec.block == "res_k1kx" else spec.kernel
        for j in range(spec.depth):
            cin = spec.in_channels if j == 0 else spec.out_channels
            stride = spec.stride if j == 0 else 1
            convs = [(cin, spec.btn, k1, 1), (spec.btn, spec.out_channels, spec.kernel, stride)]
            x, gain = _renormalised(x, convs, gen)
            gains.append(gain)
    return combine(gains, stages, weights)


def _renormalised(x: torch.Tensor, convs: list[tuple[int, int, int, int]],
                  gen: torch.Generator) -> tuple[torch.Tensor, float]:
    for cin, cout, k, stride in convs:
        weight = torch.randn(cout, cin, k, k, generator=gen)
        x = nn.functional.conv2d(x, weight, stride=stride, padding=(k - 1) // 2)
    std = float(x.std())
    return x / std, math.log(std)
