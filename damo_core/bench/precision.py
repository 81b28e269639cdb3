"""Which arithmetic a model runs in on this CPU: ``fp32``, ``bf16``, ``int8`` or ``auto``.

Why a module of its own: the same question is asked by the benchmark, ``damo predict`` and
``damo eval`` on an export, the pipeline's benchmark step, the Triton configs and the
trainer, and each must answer it the same way. BF16 only pays where the CPU has native
BF16 arithmetic (AMX or AVX-512-BF16); elsewhere OpenVINO would quietly run FP32 under a
"bf16" label, so an explicit ``bf16`` on such a CPU is refused, naming the CPU, and ``auto``
skips it. INT8 is a property of the exported graph (NNCF-quantised IR), not a runtime hint;
it runs on every x86 CPU, fastest where VNNI or AMX-INT8 exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from damo_core.errors import UserInputError

PRECISIONS = ("fp32", "bf16", "int8")
CHOICES = (*PRECISIONS, "auto")
# OpenVINO CPU plugin INFERENCE_PRECISION_HINT per runtime precision (INT8 IRs compute their
# unquantised layers in f32 unless bf16 is asked for).
OV_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# The precision an exported file was written in -> the arithmetic it runs in by default
# (FP16 IRs only store weights in half; the CPU plugin computes them in f32).
RUNS_AS = {"fp32": "fp32", "fp16": "fp32", "bf16": "bf16", "int8": "int8"}
# Accuracy a cheaper precision may cost against FP32, in AP50 (fraction, not points): the
# limits of the performance issue (#22): BF16 <= 0.3 AP50 points, INT8 <= 1.0.
AP50_LOSS_LIMIT = {"fp32": 0.0, "bf16": 0.003, "int8": 0.010}
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
_INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's name and the instruction-set flags that decide BF16 and INT8 speed."""

    model: str
    flags: frozenset[str]

    @property
    def bf16(self) -> bool:
        """Native BF16 arithmetic (AMX tiles or AVX-512-BF16 dot products)."""
        return any(f in self.flags for f in _BF16_FLAGS)

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags or "amx_int8" in self.flags

    @property
    def int8_dot(self) -> bool:
        """An 8-bit dot-product instruction (VNNI or AMX-INT8): where INT8 is expected to pay."""
        return any(f in self.flags for f in _INT8_FLAGS)

    def summary(self) -> dict[str, str]:
        """What a report prints beside a latency (the ``host`` block)."""
        isa = [f for f in (*_BF16_FLAGS, *_INT8_FLAGS, "avx512f", "avx2") if f in self.flags]
        return {"isa": " ".join(isa) or "none of avx2/avx512/amx",
                "bf16": "yes" if self.bf16 else "no"}


def parse_cpuinfo(text: str) -> CpuFeatures:
    """Features from ``/proc/cpuinfo`` text (the first processor's block; all cores agree)."""
    model, flags = "unknown CPU", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return CpuFeatures(model=model, flags=flags)


def cpu_features(cpuinfo: str | Path | None = None) -> CpuFeatures:
    """This machine's features; ``$DAMO_CPUINFO`` or ``cpuinfo`` names another cpuinfo file
    (tests, or a report made for another host). No cpuinfo (not Linux): no flags."""
    path = Path(cpuinfo or os.environ.get("DAMO_CPUINFO") or CPUINFO)
    try:
        return parse_cpuinfo(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return CpuFeatures(model="unknown CPU", flags=frozenset())


def check_precision(value: str, *, field: str = "precision") -> str:
    """``value`` lower-cased if it is one of :data:`CHOICES`; otherwise a clear error."""
    norm = str(value).strip().lower()
    if norm not in CHOICES:
        raise UserInputError(f"{field}: {value!r} is not a precision; expected one of "
                             f"{list(CHOICES)}")
    return norm


def supported(features: CpuFeatures | None = None) -> tuple[str, ...]:
    """Precisions this CPU runs natively, in :data:`PRECISIONS` order."""
    features = features or cpu_features()
    return tuple(p for p in PRECISIONS if p != "bf16" or features.bf16)


def require_supported(precision: str, features: CpuFeatures | None = None) -> str:
    """``precision`` (not ``auto``) if this CPU runs it; BF16 without BF16 hardware refused."""
    precision = check_precision(precision)
    if precision == "auto":
        raise UserInputError("precision 'auto' must be resolved (auto_candidates / choose) "
                             "before a model runs")
    features = features or cpu_features()
    if precision == "bf16" and not features.bf16:
        raise UserInputError(
            f"precision 'bf16' needs a CPU with AMX or AVX-512-BF16; this one ({features.model}) "
            f"has {features.summary()['isa']}: OpenVINO would run FP32 under a bf16 label. Use "
            "fp32, int8 or auto")
    return precision


def auto_candidates(features: CpuFeatures | None = None, *, int8: bool = True) -> list[str]:
    """What ``auto`` measures: FP32 always (the accuracy reference), BF16 where native, INT8
    when calibration data is at hand (``int8``)."""
    return [p for p in supported(features) if int8 or p != "int8"]


@dataclass(frozen=True)
class Measured:
    """One precision's latency and accuracy, as ``auto`` weighs them."""

    precision: str
    p50_ms: float
    ap50: float | None  # None: accuracy not measured (no val split); only fp32 may lack it


def choose(measured: Iterable[Measured]) -> tuple[str, str]:
    """The fastest precision whose AP50 loss against FP32 is within :data:`AP50_LOSS_LIMIT`.

    Returns ``(precision, reason)``. FP32 must be among ``measured``; a cheaper precision
    without a measured AP50 is never chosen (its accuracy is unknown).
    """
    rows = {m.precision: m for m in measured}
    if "fp32" not in rows:
        raise UserInputError("auto precision needs the fp32 measurement as its reference")
    base = rows["fp32"]
    best, reason = base, "fp32: the reference"
    for m in sorted(rows.values(), key=lambda r: r.p50_ms):
        if m.precision == "fp32":
            break
        if m.ap50 is None or base.ap50 is None:
            continue
        loss = base.ap50 - m.ap50
        if loss <= AP50_LOSS_LIMIT[m.precision]:
            best = m
            reason = (f"{m.precision}: {base.p50_ms / m.p50_ms:.2f}x faster than fp32, AP50 "
                      f"{m.ap50:.4f} vs {base.ap50:.4f} (loss {loss:+.4f} <= "
                      f"{AP50_LOSS_LIMIT[m.precision]})")
            break
    return best.precision, reason
