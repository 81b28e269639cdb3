"""Latency of one model on one runtime, measured the way the paper reports it.

What is timed is the deploy graph (RepConv/BN folded, box decode included, NMS excluded):
the paper exports after reparameterisation and keeps post-processing out of the timed graph.
Every runtime is handed the same pre-made input so only inference is timed (no letterbox,
no host-side post-processing). Warm-up runs are discarded because the first calls pay for
kernel selection, JIT and memory allocation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damo_core.atomic import atomic_write_text
from damo_core.bench.precision import cpu_features
from damo_core.environ import torch_threads
from damo_core.errors import UserInputError
from damo_core.export import onnx as onnx_format
from damo_core.export import openvino as openvino_format
from damo_core.export import tensorrt as tensorrt_format
from damo_core.export.formats import export_model
from damo_core.export.wrapper import ExportModel
from damo_core.models import Detector

Runner = Callable[[Any], Any]
BASELINE = "pytorch"
RUNTIMES = {"pytorch": "torch eager (fused)", "onnx": "onnxruntime CPU EP",
            "openvino": "openvino CPU, LATENCY hint, sync", "tensorrt": "tensorrt GPU"}


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in milliseconds over ``runs`` timed calls of ``batch`` images."""

    batch: int
    runs: int
    warmup: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    throughput: float  # images per second at the mean latency

    @classmethod
    def from_times(cls, times_ms: list[float], *, batch: int, warmup: int) -> LatencyStats:
        if not times_ms:
            raise ValueError("no timed runs")
        t = np.asarray(times_ms, dtype=np.float64)
        # One call to np.percentile keeps p50 <= p90 <= p99 by construction.
        p50, p90, p99 = np.percentile(t, [50, 90, 99])
        mean = float(t.mean())
        return cls(batch=batch, runs=len(times_ms), warmup=warmup, mean_ms=mean,
                   p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
                   min_ms=float(t.min()), max_ms=float(t.max()),
                   throughput=batch * 1000.0 / mean if mean > 0 else float("inf"))


def benchmark(runner: Runner, input: Any, *, warmup: int = 10, runs: int = 50) -> LatencyStats:
    """Call ``runner(input)`` ``warmup`` times untimed, then ``runs`` times timed.

    Runners must return only once their results are ready (the GPU runner synchronises), so
    wall-clock time per call is the latency.
    """
    if runs <= 0 or warmup < 0:
        raise UserInputError(f"need runs > 0 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        runner(input)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(input)
        times.append((time.perf_counter() - start) * 1e3)
    # a tensor's batch is its first dimension; a list of files (a whole-path contender) its length
    batch = int(input.shape[0]) if hasattr(input, "shape") else len(input)
    return LatencyStats.from_times(times, batch=batch, warmup=warmup)


def host_info() -> dict[str, str]:
    """What the numbers depend on: CPU (and whether it has BF16/INT8 dot products), core
    count and library versions."""
    features = cpu_features()
    cpu = features.model if features.model != "unknown CPU" else (
        platform.processor() or platform.machine())
    info = {"cpu": cpu, **features.summary(), "cpu_count": str(os.cpu_count()),
            "python": platform.python_version()}
    for package in ("torch", "onnxruntime", "openvino", "tensorrt"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return info


@dataclass(frozen=True)
class BenchResult:
    """One (model, format, precision) measurement, self-describing when written as JSON."""

    model: str
    format: str
    precision: str
    image_size: int
    threads: int | None
    stats: LatencyStats
    runtime: str = ""
    host: dict[str, str] = field(default_factory=host_info)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def label(self) -> str:
        return f"{self.format} {self.precision}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchResult:
        return cls(**{**raw, "stats": LatencyStats(**raw["stats"])})


def save_results(results: list[BenchResult], path: str | Path) -> Path:
    """Write results as a JSON list, atomically (dashboards read these files)."""
    return atomic_write_text(path, json.dumps([r.to_dict() for r in results], indent=2) + "\n")


def load_results(path: str | Path) -> list[BenchResult]:
    return [BenchResult.from_dict(raw) for raw in json.loads(Path(path).read_text())]


class TorchRunner:
    """PyTorch eager on the fused graph, the same graph the exports contain."""

    def __init__(self, model: Detector) -> None:
        self.module = ExportModel(model).eval()

    def __call__(self, images: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            return self.module(torch.as_tensor(images))


def make_runner(fmt: str, path: Path, *, threads: int | None, batch: int | None,
                precision: str | None = None) -> Runner:
    """The runtime that times an exported file of format ``fmt``, at ``precision`` (default:
    the file's own); ``bf16`` is the OpenVINO CPU plugin's inference hint, so only OpenVINO
    takes it."""
    if precision == "bf16" and fmt != "openvino":
        raise UserInputError(f"bf16 inference is an OpenVINO CPU hint; {fmt} runs the "
                             "exported precision")
    if fmt == "onnx":
        return onnx_format.load_runner(path, threads=threads)
    if fmt == "openvino":
        return openvino_format.load_runner(path, threads=threads, batch=batch,
                                           precision=precision)
    if fmt == "tensorrt":
        return tensorrt_format.load_runner(path)
    raise UserInputError(f"no runner for format {fmt!r}; expected one of {sorted(RUNTIMES)}")


def random_images(image_size: int, batch: int = 1, scale: float = 1.0) -> np.ndarray:
    """The fixed input every latency measurement feeds: seeded uniform pixels 0..255 times
    ``scale`` (latency does not depend on the values, reproducibility does)."""
    return (np.random.default_rng(0).uniform(0, 255, (batch, 3, image_size, image_size))
            * scale).astype(np.float32)


def run_benchmark(model: Detector, fmt: str, *, image_size: int, batch: int = 1,
                  warmup: int = 10, runs: int = 50, threads: int | None = None,
                  half: bool = False, int8: bool = False, bf16: bool = False,
                  data: str | Path | None = None, calib_count: int = 300,
                  work_dir: str | Path | None = None) -> BenchResult:
    """Export ``model`` as ``fmt`` (``"pytorch"``: no export), time it, return the result.

    ``threads`` pins the intra-op thread count of every runtime alike; side-by-side rows
    are only comparable at equal thread counts. Exports go to ``work_dir`` (a temporary
    directory when ``None``). ``bf16`` exports FP32 and runs it with OpenVINO's bf16 hint
    (refused on a CPU without native BF16, :mod:`damo_core.bench.precision`).
    """
    if fmt not in RUNTIMES:
        raise UserInputError(f"unknown benchmark format {fmt!r}; expected one of "
                             f"{sorted(RUNTIMES)}")
    if batch <= 0:
        raise UserInputError(f"batch must be positive, got {batch}")
    images = random_images(image_size, batch)
    precision = "int8" if int8 else "fp16" if half else "bf16" if bf16 else "fp32"
    if sum((half, int8, bf16)) > 1:
        raise UserInputError("choose one precision: half, int8 or bf16")
    if fmt == BASELINE:
        if half or int8 or bf16:
            raise UserInputError("the pytorch baseline runs FP32 on CPU; drop half/int8/bf16")
        stats = _time_torch(TorchRunner(model), images, threads, warmup, runs)
    else:
        with tempfile.TemporaryDirectory(prefix="damo-bench-") as tmp:
            # data and calib_count only mean something for INT8; others would reject them.
            path = export_model(model, fmt, work_dir or tmp, image_size=image_size, half=half,
                                int8=int8, data=data if int8 else None,
                                calib_count=calib_count if int8 else None)
            runner = make_runner(fmt, path, threads=threads, batch=batch,
                                 precision="bf16" if bf16 else "int8" if int8 else "fp32")
            feed = torch.from_numpy(images).cuda() if fmt == "tensorrt" else images
            stats = benchmark(runner, feed, warmup=warmup, runs=runs)
    return BenchResult(model=model.name, format=fmt, precision=precision,
                       image_size=image_size, threads=threads, stats=stats,
                       runtime=RUNTIMES[fmt])


PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def parse_target(target: str) -> tuple[str, str]:
    """``"openvino:int8"`` → ``("openvino", "int8")``; the precision defaults to fp32."""
    fmt, _, precision = target.partition(":")
    precision = precision or "fp32"
    if fmt not in RUNTIMES or precision not in PRECISIONS:
        raise UserInputError(f"bad benchmark target {target!r}: expected FORMAT[:PRECISION] with "
                             f"FORMAT in {sorted(RUNTIMES)} and PRECISION in {list(PRECISIONS)}")
    return fmt, precision


def run_benchmarks(model: Detector, targets: list[str], **kwargs: Any) -> list[BenchResult]:
    """:func:`run_benchmark` for each ``FORMAT[:PRECISION]`` target, in order, one run."""
    parsed = [parse_target(t) for t in targets]  # fail on a typo before any export
    return [run_benchmark(model, fmt, half=precision == "fp16", int8=precision == "int8",
                          bf16=precision == "bf16", **kwargs) for fmt, precision in parsed]


def _time_torch(runner: TorchRunner, images: np.ndarray, threads: int | None, warmup: int,
                runs: int) -> LatencyStats:
    """Time with ``threads`` torch threads, restoring the process-wide setting after."""
    with torch_threads(threads):
        return benchmark(runner, torch.from_numpy(images), warmup=warmup, runs=runs)
