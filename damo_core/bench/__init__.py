"""Side-by-side inference latency of the deploy graph across runtimes (see ``latency``).

The package itself imports nothing heavy: :mod:`damo_core.bench.precision` is read by the
trainer, which the exporters (imported by ``latency``) import in turn, so an eager import
here would be circular. The names below load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BenchResult", "LatencyStats", "benchmark", "run_benchmark"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from damo_core.bench import latency

        return getattr(latency, name)
    raise AttributeError(f"module 'damo_core.bench' has no attribute {name!r}")
