"""Latency statistics, result files and the side-by-side report."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from damo_core.bench.latency import (
    BenchResult,
    LatencyStats,
    benchmark,
    load_results,
    parse_target,
    run_benchmark,
    save_results,
)
from damo_core.bench.report import report_rows, side_by_side, write_report
from damo_core.models import build_model


def _result(fmt: str, p50: float, model: str = "damoyolo_ns") -> BenchResult:
    stats = LatencyStats.from_times([p50] * 5, batch=1, warmup=0)
    return BenchResult(model=model, format=fmt, precision="fp32", image_size=128, threads=1,
                       stats=stats, runtime=fmt)


def test_benchmark_counts_calls_and_orders_percentiles() -> None:
    calls = itertools.count()
    x = np.zeros((2, 3, 32, 32), np.float32)
    stats = benchmark(lambda images: (next(calls), np.sort(np.random.rand(20_000))), x,
                      warmup=3, runs=40)
    assert next(calls) == 43  # 3 untimed + 40 timed
    assert (stats.batch, stats.runs, stats.warmup) == (2, 40, 3)
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    assert stats.min_ms <= stats.mean_ms <= stats.max_ms
    assert stats.throughput == pytest.approx(2 * 1000 / stats.mean_ms)


def test_percentiles_of_known_times() -> None:
    stats = LatencyStats.from_times([float(i) for i in range(1, 101)], batch=4, warmup=0)
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.throughput == pytest.approx(4 * 1000 / 50.5)
    with pytest.raises(ValueError, match="no timed runs"):
        LatencyStats.from_times([], batch=1, warmup=0)
    with pytest.raises(ValueError, match="runs > 0"):
        benchmark(lambda images: None, np.zeros((1, 3, 32, 32)), runs=0)


def test_results_round_trip_through_json(tmp_path: Path) -> None:
    results = [_result("pytorch", 40.0), _result("onnx", 10.0)]
    path = save_results(results, tmp_path / "bench" / "results.json")
    assert load_results(path) == results
    assert json.loads(path.read_text())[1]["stats"]["p50_ms"] == 10.0


def test_report_ratios_are_against_the_named_baseline(tmp_path: Path) -> None:
    results = [_result("pytorch", 40.0), _result("onnx", 10.0), _result("openvino", 8.0),
               _result("onnx", 5.0, model="damoyolo_t")]  # no baseline for this model
    rows = report_rows(results)
    assert [r["speedup_vs_baseline"] for r in rows] == [1.0, 4.0, 5.0, None]
    assert report_rows(results, baseline="onnx")[0]["speedup_vs_baseline"] == 0.25
    console = Console(record=True, width=200)
    console.print(side_by_side(results))
    text = console.export_text()
    assert "speed-up vs pytorch" in text and "4.00x" in text and "5.00x" in text
    doc = json.loads(write_report(results, tmp_path / "report.json").read_text())
    assert doc["baseline"] == "pytorch" and doc["rows"] == rows
    assert [BenchResult.from_dict(r) for r in doc["results"]] == results


def test_targets_parse_with_default_precision() -> None:
    assert parse_target("openvino:int8") == ("openvino", "int8")
    assert parse_target("onnx") == ("onnx", "fp32")
    for bad in ("onnxruntime", "openvino:int4"):
        with pytest.raises(ValueError, match="FORMAT"):
            parse_target(bad)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread, the export's trace included: spin-waiting OpenMP threads make a
    shared 2-core CI machine crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread")
def test_pytorch_and_onnxruntime_runs_end_to_end() -> None:
    pytest.importorskip("onnxruntime")
    model = build_model("damoyolo_ns", num_classes=4).eval()
    results = [run_benchmark(model, fmt, image_size=64, warmup=1, runs=3, threads=1)
               for fmt in ("pytorch", "onnx")]
    assert [(r.format, r.precision, r.stats.runs) for r in results] == [
        ("pytorch", "fp32", 3), ("onnx", "fp32", 3)]
    assert all(r.model == "damoyolo_ns" and r.image_size == 64 for r in results)
    assert "cpu" in results[0].host and "torch" in results[0].host
    assert torch.get_num_threads() == 1  # run_benchmark restored the caller's setting
    with pytest.raises(ValueError, match="FP32"):
        run_benchmark(model, "pytorch", image_size=64, half=True)
