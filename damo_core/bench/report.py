"""Side-by-side latency report: one row per (model, format, precision), ratios to a baseline.

Absolute milliseconds depend on the machine (and on whatever else runs on it); ratios
against a baseline measured in the same run on the same machine are what carry over, so
every row shows its speed-up against the named baseline (PyTorch eager, fused, by default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from damo_core.atomic import atomic_write_text
from damo_core.bench.latency import BASELINE, BenchResult


def _key(result: BenchResult) -> tuple[str, int, int]:
    return result.model, result.image_size, result.stats.batch


def _baselines(results: list[BenchResult], baseline: str) -> dict[tuple[str, int, int], float]:
    """p50 of the baseline row of each (model, image size, batch)."""
    return {_key(r): r.stats.p50_ms for r in results if r.format == baseline}


def report_rows(results: list[BenchResult], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """Plain rows (what the table shows and the JSON stores).

    ``speedup_vs_baseline`` = baseline p50 / row p50 (>1 means faster than the baseline);
    ``None`` when the same model/size/batch has no baseline row.
    """
    base = _baselines(results, baseline)
    rows = []
    for r in results:
        ref = base.get(_key(r))
        rows.append({
            "model": r.model, "format": r.format, "precision": r.precision,
            "runtime": r.runtime, "image_size": r.image_size, "batch": r.stats.batch,
            "threads": r.threads, "mean_ms": r.stats.mean_ms, "p50_ms": r.stats.p50_ms,
            "p90_ms": r.stats.p90_ms, "p99_ms": r.stats.p99_ms,
            "throughput": r.stats.throughput,
            "speedup_vs_baseline": None if ref is None else ref / r.stats.p50_ms,
        })
    return rows


def side_by_side(results: list[BenchResult], baseline: str = BASELINE,
                 title: str | None = None) -> Table:
    """A rich table of :func:`report_rows`."""
    host = results[0].host if results else {}
    return rows_table(report_rows(results, baseline), host, baseline, title)


def rows_table(rows: list[dict[str, Any]], host: dict[str, Any], baseline: str = BASELINE,
               title: str | None = None) -> Table:
    """The rich table of report rows (as :func:`report_rows` makes and the JSON stores)."""
    table = Table(title=title or f"Latency, {host.get('cpu', '?')} "
                                f"({host.get('cpu_count', '?')} CPUs); baseline = {baseline}")
    columns = ("model", "size", "batch", "format", "precision", "mean ms", "p50 ms", "p90 ms",
               "p99 ms", "img/s", f"speed-up vs {baseline} (p50)")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "format") else "right")
    for row in rows:
        ratio = row["speedup_vs_baseline"]
        table.add_row(
            row["model"], str(row["image_size"]), str(row["batch"]), row["format"],
            row["precision"], f"{row['mean_ms']:.2f}", f"{row['p50_ms']:.2f}",
            f"{row['p90_ms']:.2f}", f"{row['p99_ms']:.2f}", f"{row['throughput']:.1f}",
            "-" if ratio is None else f"{ratio:.2f}x",
        )
    return table


def report_doc(results: list[BenchResult], baseline: str = BASELINE) -> dict[str, Any]:
    """The report: the rows, the baseline's name, and the raw results (host info included)."""
    return {"baseline": baseline, "rows": report_rows(results, baseline),
            "results": [r.to_dict() for r in results]}


def write_report(results: list[BenchResult], path: str | Path,
                 baseline: str = BASELINE) -> Path:
    """:func:`report_doc` as JSON."""
    return atomic_write_text(path, json.dumps(report_doc(results, baseline), indent=2) + "\n")
