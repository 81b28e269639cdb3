"""Side-by-side inference latency of the deploy graph across runtimes (see ``latency``)."""

from damo_core.bench.latency import BenchResult, LatencyStats, benchmark, run_benchmark

__all__ = ["BenchResult", "LatencyStats", "benchmark", "run_benchmark"]
