"""The MAE-NAS search space: which backbone structures exist and how one mutates.

A structure is the stem plus five stages with a fixed stride pattern (TinyNAS's DAMO-YOLO
spaces: the stem, then strides 2, 2, 2, 1, 2 — the stage count is what the per-stage score
weights are written for). Searchable per stage: width (``out``), depth (``L``), bottleneck width
(``btn``) and, where the block builds it, the kernel. A mutation changes one of them in one
stage, then repairs the chain (each stage reads the previous width; widths never shrink along
the network; CSP's stride-1 stage keeps its group's width), as TinyNAS's mutators do. Width and
bottleneck steps scale by TinyNAS's factors and round to multiples of 8.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from damo_core.errors import UserInputError
from damo_core.models.backbones.structure import StageSpec

STRIDES = (1, 2, 2, 2, 1, 2)
WIDTH_SCALES = (2.0, 1.5, 1.25, 0.8, 0.6, 0.5)
DEPTH_STEPS = (-2, -1, 1, 2)
MIN_BTN_RATIO = 0.1  # a bottleneck narrower than out/10 starves the block (TinyNAS)


@dataclass(frozen=True)
class SearchSpace:
    """What a ``--block`` may search. ``widths`` are (min, max) per structure entry."""

    block: str
    backbone_type: str
    stage_block: str
    widths: tuple[tuple[int, int], ...]
    max_depth: tuple[int, ...]
    kernels: tuple[int, ...] = (3,)
    strides: tuple[int, ...] = STRIDES
    mutable: tuple[str, ...] = ("out", "btn", "depth", "kernel")
    tie_stride1_width: bool = False

    def __post_init__(self) -> None:
        n = len(self.strides)
        if len(self.widths) != n or len(self.max_depth) != n:
            raise UserInputError(f"space {self.block!r}: widths/max_depth need {n} entries")

    def with_kernels(self, kernels: tuple[int, ...]) -> SearchSpace:
        return replace(self, kernels=tuple(sorted(kernels)))


_RES_WIDTHS = ((16, 32), (24, 128), (48, 256), (64, 384), (64, 512), (128, 768))
_MOB_WIDTHS = ((8, 32), (16, 64), (24, 128), (32, 192), (48, 256), (64, 384))

# Kernels: RepConv folds to 3×3 only, so reparameterised res/csp blocks search kernel 3 (the
# CLI widens it for ``reparam: false`` configs); the mobile block's depthwise kernel and
# expansion are fixed by the builder, so Mob searches widths and depths only.
SPACES: dict[str, SearchSpace] = {
    "res": SearchSpace("res", "tinynas_res", "res_k1kx", _RES_WIDTHS, (1, 2, 6, 6, 6, 6)),
    "csp": SearchSpace("csp", "tinynas_csp", "res_kxkx", _RES_WIDTHS, (1, 4, 6, 6, 6, 6),
                       tie_stride1_width=True),
    "mob": SearchSpace("mob", "tinynas_mob", "res_k1kx", _MOB_WIDTHS, (1, 2, 4, 4, 4, 4),
                       mutable=("out", "depth")),
}
DEFAULT_MODELS = {"res": "damoyolo_t", "csp": "damoyolo_m", "mob": "damoyolo_ns"}


def round8(x: float) -> int:
    return max(8, int(round(x / 8.0)) * 8)


def clamp(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, x))


def repair(stages: list[StageSpec], space: SearchSpace) -> list[StageSpec]:
    """Make a mutated structure valid: chained widths, non-decreasing widths inside their
    ranges, CSP ties, bottleneck in [out/10, out]."""
    fixed: list[StageSpec] = []
    for i, s in enumerate(stages):
        lo, hi = space.widths[i]
        out = clamp(s.out_channels, lo, hi)
        if i > 0:
            out = max(out, fixed[-1].out_channels)
            if space.tie_stride1_width and s.stride == 1:
                out = fixed[-1].out_channels
        cin = 3 if i == 0 else fixed[-1].out_channels
        btn = s.btn if i == 0 else clamp(s.btn, round8(out * MIN_BTN_RATIO), out)
        depth = clamp(s.depth, 1, space.max_depth[i])
        fixed.append(replace(s, in_channels=cin, out_channels=out, btn=btn, depth=depth,
                             nbits_a=None, nbits_w=None))
    return fixed


def minimal_structure(space: SearchSpace) -> list[StageSpec]:
    """The cheapest structure of the space: every budget is smallest here."""
    stages = []
    for i, stride in enumerate(space.strides):
        lo = space.widths[i][0]
        block = "conv" if i == 0 else space.stage_block
        btn = 0 if i == 0 else round8(lo * MIN_BTN_RATIO)
        stages.append(StageSpec(block, 3, lo, stride, space.kernels[0], 1, btn))
    return repair(stages, space)


def random_structure(space: SearchSpace, rng: random.Random) -> list[StageSpec]:
    """A uniformly drawn structure (for latency-model checks and tests)."""
    stages = []
    for i, stride in enumerate(space.strides):
        lo, hi = space.widths[i]
        out = round8(rng.uniform(lo, hi))
        block = "conv" if i == 0 else space.stage_block
        btn = 0 if i == 0 else round8(out * rng.uniform(MIN_BTN_RATIO, 1.0))
        depth = 1 if i == 0 else rng.randint(1, space.max_depth[i])
        stages.append(StageSpec(block, 3, out, stride, rng.choice(space.kernels), depth, btn))
    return repair(stages, space)


def mutate(stages: list[StageSpec], space: SearchSpace, rng: random.Random) -> list[StageSpec]:
    """Change one property of one stage (TinyNAS's one-block mutation), then repair."""
    for _ in range(20):
        i = rng.randrange(len(stages))
        methods = _methods(i, stages[i], space)
        if not methods:
            continue
        child = list(stages)
        method = rng.choice(methods)
        child[i] = _apply(method, stages[i], space, rng)
        if method == "out":  # grow into the next stage's width, never past it
            nxt = _next_free(i, stages, space)
            if nxt is not None:
                child[i] = replace(child[i], out_channels=min(child[i].out_channels,
                                                              stages[nxt].out_channels))
        child = repair(child, space)
        if child != stages:
            return child
    return list(stages)


def _next_free(i: int, stages: list[StageSpec], space: SearchSpace) -> int | None:
    """The next stage whose width is its own (not tied to ``i``'s by CSP)."""
    for j in range(i + 1, len(stages)):
        if not (space.tie_stride1_width and stages[j].stride == 1):
            return j
    return None


def _methods(i: int, spec: StageSpec, space: SearchSpace) -> list[str]:
    allowed = set(space.mutable)
    if i == 0:
        allowed &= {"out", "kernel"}
    if space.tie_stride1_width and spec.stride == 1 and i > 0:
        allowed.discard("out")
    if len(space.kernels) < 2:
        allowed.discard("kernel")
    return sorted(allowed)


def _apply(method: str, spec: StageSpec, space: SearchSpace, rng: random.Random) -> StageSpec:
    if method == "out":
        return replace(spec, out_channels=round8(spec.out_channels * rng.choice(WIDTH_SCALES)))
    if method == "btn":
        return replace(spec, btn=round8(spec.btn * rng.choice(WIDTH_SCALES)))
    if method == "depth":
        return replace(spec, depth=max(1, spec.depth + rng.choice(DEPTH_STEPS)))
    others = [k for k in space.kernels if k != spec.kernel]
    return replace(spec, kernel=rng.choice(others))
