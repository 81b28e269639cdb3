"""Backbone latency on the target device from a per-op look-up table, measured once.

Why a table: timing every candidate of a search would take hours; timing each kind of op the
candidates are made of takes a minute, and a fused backbone in eager PyTorch runs its ops one
after another, so its latency is close to the sum of theirs. ``damo nas-lut`` times, on this
device, every conv shape class the search space produces (kernel, stride, depthwise or not,
input side, and the stem's fixed input width) over a ladder of widths, and the parameter-free
ops (activation, residual add, concat copy, max-pool) over a ladder of sizes. A shape that was
not measured is interpolated on a log-log line between the two nearest measured points by its
MACs (elements for parameter-free ops), and extrapolated at the nearest point's cost per MAC.
Times are the minimum over repeats. With one thread (the default) they are the CPU time of the
computing thread, not wall time: on a machine shared with other jobs, wall time mostly measures
the neighbours (a 1 s forward is always preempted), while thread CPU time is what the op costs
on an idle core. With more threads, wall time is the only honest clock.

A table is measured at one precision, recorded in the file: ``fp32``, or ``bf16`` on a CPU
with native BF16 (AMX, AVX-512-BF16). BF16 units multiply the matrix throughput of convs,
some shapes more than others, while the memory-bound parameter-free ops gain at most the halved
traffic, so the ranking of blocks can change between the two (issue #22). A BF16 table times
ops whose weights and inputs are bf16 tensors (what a BF16 deployment holds), not fp32 ops
under autocast, which would leave the parameter-free ops in fp32 and recast every weight per
call.
A table is only used at the precision it was measured at (:meth:`LatencyTable.require`).
"""

from __future__ import annotations

import bisect
import json
import math
import platform
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from damo_core.atomic import atomic_write_text
from damo_core.bench.precision import cpu_features, require_supported
from damo_core.errors import UserInputError
from damo_core.models.backbones.structure import StageSpec
from damo_core.nas.ops import ConvOp, EltOp, Op, backbone_ops
from damo_core.nas.space import SearchSpace, minimal_structure, random_structure

LUT_VERSION = 1
CHANNEL_LADDER = (8, 16, 32, 64, 128, 256, 512, 768)
NUMEL_LADDER = (2**12, 2**15, 2**18, 2**21, 2**23)
MAX_MACS = 4e9  # larger convs are extrapolated: timing them is slow and adds nothing
# Precisions a table can be measured at, and the dtype of the timed ops' tensors. INT8 is a
# property of a quantised graph, not of eager ops, so it has no table.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class LatencyTableError(UserInputError):
    """A latency table that is missing, unreadable, or lacks the shapes a search needs."""


STEM_INPUTS = (3, 12)  # RGB, or RGB after Focus: the stem's fixed input width


def conv_key(op: ConvOp) -> str:
    kind = "dw" if op.depthwise else "conv"
    fixed = f"_cin{op.cin}" if not op.depthwise and op.cin in STEM_INPUTS else ""
    return f"{kind}_k{op.kernel}_s{op.stride}_r{op.res}{fixed}"


def elt_key(op: EltOp) -> str:
    return f"{op.kind}_k{op.kernel}" if op.kind == "pool" else op.kind


@dataclass
class LatencyTable:
    """Measured points per op class: ``{key: [[size, ms], ...]}`` sorted by size, timed at
    ``precision`` (``fp32`` or ``bf16``)."""

    device: str
    threads: int
    points: dict[str, list[list[float]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"

    def require(self, precision: str) -> LatencyTable:
        """This table if it was measured at ``precision``; else an error, since a table of
        another precision ranks blocks by costs the deployment does not pay."""
        if self.precision != precision:
            raise LatencyTableError(
                f"latency table ({self.meta.get('path', 'in memory')}) was measured at "
                f"{self.precision}, but {precision} latencies are wanted; measure one with "
                f"`damo nas-lut --precision {precision}`")
        return self

    def predict_ms(self, ops: Iterable[Op]) -> float:
        """Sum of the ops' table times, times the whole-backbone calibration ``scale``."""
        return float(self.meta.get("scale", 1.0)) * sum(self.op_ms(op) for op in ops)

    def op_ms(self, op: Op) -> float:
        if isinstance(op, ConvOp):
            key, size = conv_key(op), float(op.macs)
        else:
            key, size = elt_key(op), float(op.numel)
        pts = self.points.get(key)
        if not pts:
            raise LatencyTableError(
                f"latency table ({self.meta.get('path', 'in memory')}) has no measurements "
                f"for {key!r}; rerun `damo nas-lut` with this --block and --img-size"
            )
        return interpolate(pts, size)

    def to_json(self, path: str | Path) -> Path:
        data = {"version": LUT_VERSION, "device": self.device, "threads": self.threads,
                "precision": self.precision, "meta": self.meta, "points": self.points}
        return atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | Path, precision: str = "fp32") -> LatencyTable:
        """The table at ``path``, which must have been measured at ``precision``. A table
        without the field predates it and was measured at fp32, the only precision then."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LatencyTableError(
                f"latency table {path} does not exist; measure it with "
                f"`damo nas-lut --device cpu --out {path}`"
            ) from None
        except (OSError, json.JSONDecodeError) as err:
            raise LatencyTableError(f"latency table {path}: unreadable ({err})") from None
        if not isinstance(data, dict) or data.get("version") != LUT_VERSION:
            raise LatencyTableError(f"latency table {path}: field 'version' should be "
                                    f"{LUT_VERSION}, got {data.get('version')!r}")
        table = cls(data["device"], int(data["threads"]), data["points"],
                    {**data.get("meta", {}), "path": str(path)}, data.get("precision", "fp32"))
        return table.require(precision)


def interpolate(points: list[list[float]], size: float) -> float:
    """Log-log piecewise-linear in size; below the smallest point the op costs its call
    overhead (that point's time), above the largest it keeps that point's cost per unit."""
    sizes = [p[0] for p in points]
    if size <= sizes[0]:
        return points[0][1]
    if size >= sizes[-1]:
        return points[-1][1] * size / sizes[-1]
    i = bisect.bisect_left(sizes, size)
    return _loglog(points[i - 1], points[i], size)


def _loglog(a: list[float], b: list[float], size: float) -> float:
    if b[0] == a[0]:
        return a[1]
    t = (math.log(size) - math.log(a[0])) / (math.log(b[0]) - math.log(a[0]))
    return math.exp(math.log(a[1]) + t * (math.log(b[1]) - math.log(a[1])))


def clock_for(threads: int) -> Callable[[], float]:
    """Thread CPU time for single-threaded timing (torch computes in the calling thread),
    wall time otherwise."""
    return time.thread_time if threads == 1 else time.perf_counter


def _conv_probe(template: ConvOp, channels: int) -> ConvOp:
    if template.depthwise:
        return ConvOp(channels, channels, template.kernel, template.stride, template.res, channels)
    cin = template.cin if template.cin in STEM_INPUTS else channels
    return ConvOp(cin, channels, template.kernel, template.stride, template.res)


def _conv_fn(op: ConvOp, dtype: torch.dtype = torch.float32) -> Callable[[], Any]:
    conv = nn.Conv2d(op.cin, op.cout, op.kernel, op.stride, (op.kernel - 1) // 2,
                     groups=op.groups).eval().to(dtype)
    x = torch.randn(1, op.cin, op.res, op.res, dtype=dtype)
    return lambda: conv(x)


def _elt_fn(kind: str, kernel: int, numel: int,
            dtype: torch.dtype = torch.float32) -> Callable[[], Any]:
    side = max(1, int(math.sqrt(numel / 16)))
    x = torch.randn(1, max(1, numel // side**2), side, side, dtype=dtype)
    if kind == "act":
        return lambda: torch.relu_(x)
    if kind == "add":
        return lambda: x + x
    if kind == "copy":
        half = x[:, : max(1, x.shape[1] // 2)]
        return lambda: torch.cat((half, half), dim=1)
    pool = nn.MaxPool2d(kernel, 1, kernel // 2)
    return lambda: pool(x)


def lut_precision(precision: str) -> str:
    """The precision a table is measured at for ``precision``: ``fp32``; ``bf16`` only on a
    CPU with native BF16 (emulated BF16 would rank blocks by the emulation's costs, which no
    deployment pays); ``auto``: bf16 where native, else fp32. INT8 is refused (no table)."""
    norm = str(precision).strip().lower()
    if norm == "auto":
        return "bf16" if cpu_features().bf16 else "fp32"
    if norm not in DTYPES:
        why = "; INT8 is a property of a quantised graph, not of single ops" if norm == "int8" \
            else ""
        raise LatencyTableError(f"--precision {precision!r}: latency tables are measured at "
                                f"one of {[*DTYPES, 'auto']}{why}")
    return require_supported(norm)


def measure_table(ops: Iterable[Op], *, device: str = "cpu", threads: int = 1, runs: int = 5,
                  progress: bool = True, precision: str = "fp32") -> LatencyTable:
    """Time every op class present in ``ops`` over the width / size ladders, at
    ``precision`` (:func:`lut_precision`; the table records what it resolved to)."""
    if device != "cpu":
        raise LatencyTableError(f"--device {device!r}: only 'cpu' latency tables are supported "
                                "here (a GPU table needs that GPU and TensorRT)")
    precision = lut_precision(precision)
    dtype = DTYPES[precision]
    from tqdm import tqdm

    torch.set_num_threads(threads)
    convs: dict[str, ConvOp] = {}
    elts: dict[str, EltOp] = {}
    largest: dict[str, int] = {}
    for op in ops:
        if isinstance(op, ConvOp):
            convs.setdefault(conv_key(op), op)
        else:
            key = elt_key(op)
            elts.setdefault(key, op)
            largest[key] = max(largest.get(key, 0), op.numel)
    jobs: list[tuple[str, float, Callable[[], Any]]] = []
    for key, template in sorted(convs.items()):
        probes = [_conv_probe(template, c) for c in CHANNEL_LADDER]
        small = [p for p in probes if p.macs <= MAX_MACS] or probes[:1]
        jobs += [(key, float(p.macs), _conv_fn(p, dtype)) for p in small]
    for key, op in sorted(elts.items()):
        # Sizes up to one step past the largest this space produces (a 13×13 max-pool over
        # millions of elements takes seconds and is never needed).
        ladder = [n for n in NUMEL_LADDER if n < 8 * largest[key]] or list(NUMEL_LADDER[:2])
        jobs += [(key, float(n), _elt_fn(op.kind, op.kernel, n, dtype)) for n in ladder]
    # Round-robin: every op once per pass, the minimum over passes kept. A neighbour's burst
    # then inflates one sample of many ops instead of every sample of one op, and the table
    # estimates the same "least disturbed" speed the whole-backbone checks measure.
    clock = clock_for(threads)
    best = [math.inf] * len(jobs)
    with torch.inference_mode():
        for _, _, fn in jobs:
            fn()  # warm-up: allocations, oneDNN kernel selection
        bar = tqdm(total=runs * len(jobs), desc="latency table", disable=not progress)
        for _ in range(runs):
            for i, (_, _, fn) in enumerate(jobs):
                start = clock()
                fn()
                best[i] = min(best[i], clock() - start)
                bar.update()
        bar.close()
    points: dict[str, list[list[float]]] = {}
    for (key, size, _), seconds in zip(jobs, best, strict=True):
        points.setdefault(key, []).append([size, seconds * 1e3])
    for pts in points.values():
        pts.sort()
    features = cpu_features()
    meta = {"torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cpu_model": features.model, "cpu_isa": features.summary()["isa"],
            "runs": runs, "clock": "thread_cpu" if threads == 1 else "wall",
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return LatencyTable(device, threads, points, meta, precision)


def build_fused_backbone(backbone_type: str, stages: list[StageSpec],
                        kwargs: dict[str, Any]) -> nn.Module:
    """The deploy (fused) backbone alone, as ``Detector.fuse`` leaves it."""
    from damo_core.models import Detector
    from damo_core.models.registry import BACKBONES

    backbone = BACKBONES[backbone_type](structure=stages, **kwargs)
    return Detector(backbone, nn.Identity(), nn.Identity()).fuse().backbone


def calibrate(table: LatencyTable, backbone_type: str, space: SearchSpace, image_size: int,
              kwargs: dict[str, Any], count: int = 6, rounds: int = 5, seed: int = 1000) -> float:
    """Fit the table's ``scale``: median of measured / summed-op latency over ``count`` random
    fused backbones. It absorbs what isolated ops miss (module calls, output allocation,
    inputs arriving cache-cold); a few percent on this CPU."""
    table.meta["scale"] = 1.0
    rng = random.Random(seed)
    structures = [random_structure(space, rng) for _ in range(count)]
    modules = [build_fused_backbone(backbone_type, s, kwargs) for s in structures]
    measured = measure_modules_ms(modules, image_size, threads=table.threads, rounds=rounds,
                                  dtype=DTYPES[table.precision])
    ratios = [m / table.predict_ms(backbone_ops(backbone_type, s, image_size, **kwargs))
              for m, s in zip(measured, structures, strict=True)]
    table.meta["scale"] = sorted(ratios)[len(ratios) // 2]
    table.meta["calibration_ratios"] = [round(r, 4) for r in ratios]
    return table.meta["scale"]


@torch.inference_mode()
def measure_modules_ms(modules: list[nn.Module], image_size: int, *, threads: int = 1,
                       rounds: int = 5, dtype: torch.dtype = torch.float32) -> list[float]:
    """Per-module minimum over ``rounds`` round-robin passes (one call each per pass): a
    neighbour's burst then spoils one sample of each module, not all samples of one. The
    modules are cast to ``dtype`` (in place) and fed an input of it."""
    torch.set_num_threads(threads)
    clock = clock_for(threads)
    x = torch.randn(1, 3, image_size, image_size, dtype=dtype)
    for module in modules:
        module.eval().to(dtype)(x)  # warm-up: allocations, oneDNN kernel selection
    best = [math.inf] * len(modules)
    for _ in range(rounds):
        for i, module in enumerate(modules):
            start = clock()
            module(x)
            best[i] = min(best[i], clock() - start)
    return [b * 1e3 for b in best]


def space_ops(backbone_type: str, space: SearchSpace, image_size: int,
              graph_kwargs: dict[str, Any], samples: int = 64, seed: int = 0) -> list[Op]:
    """Ops of the space's cheapest structure, of its deepest one per kernel and of ``samples``
    random ones: together they hold every op class (kernel, stride, side, stem width) a search
    of ``space`` can meet (op classes do not depend on widths)."""
    rng = random.Random(seed)
    deepest = [replace(s, depth=d, kernel=k) for s, d in
               zip(minimal_structure(space), space.max_depth, strict=True)
               for k in space.kernels]
    structures = [minimal_structure(space)] + [
        deepest[i::len(space.kernels)] for i in range(len(space.kernels))] + [
        random_structure(space, rng) for _ in range(samples)]
    return [op for s in structures
            for op in backbone_ops(backbone_type, s, image_size, **graph_kwargs)]


def default_lut_path(precision: str) -> Path:
    """Where ``damo nas-lut`` writes a table by default: ``runs/nas/lut_cpu.json`` for fp32
    (what ``damo nas --lut`` reads by default), ``lut_cpu_<precision>.json`` beside it
    otherwise, so measuring BF16 never overwrites the FP32 table."""
    return Path("runs/nas") / ("lut_cpu.json" if precision == "fp32"
                               else f"lut_cpu_{precision}.json")


def measure_lut(device: str, block: str, model: str | None, image_size: int | None,
                threads: int, runs: int, out: str | Path | None,
                precision: str = "fp32") -> str:
    """Measure, calibrate and write the table of ``block``'s search space for ``model``
    (default: the space's usual model) on ``device`` at ``precision`` (:func:`lut_precision`)
    to ``out`` (default: :func:`default_lut_path`); returns a one-line summary."""
    from damo_core.models.config import load_model_config
    from damo_core.nas.budgets import backbone_graph_kwargs
    from damo_core.nas.search import space_for
    from damo_core.nas.space import DEFAULT_MODELS, SPACES

    if block not in SPACES:
        raise UserInputError(f"--block {block!r}: expected one of {sorted(SPACES)}")
    precision = lut_precision(precision)  # refused before anything is measured
    cfg = load_model_config(model or DEFAULT_MODELS[block])
    space = space_for(cfg, block)
    size = image_size or cfg.image_size
    ops = space_ops(space.backbone_type, space, size, backbone_graph_kwargs(cfg))
    table = measure_table(ops, device=device, threads=threads, runs=runs, precision=precision)
    scale = calibrate(table, space.backbone_type, space, size,
                      {k: v for k, v in cfg.backbone.items() if k not in ("type", "structure")})
    table.meta.update(block=block, model=cfg.name, image_size=size)
    path = table.to_json(out or default_lut_path(precision))
    return (f"{path}: {table.precision} table, {len(table.points)} op classes, "
            f"{sum(map(len, table.points.values()))} points, calibration scale {scale:.3f}")
