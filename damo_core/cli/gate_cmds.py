"""``damo gate``: the pipeline's deployment gate on the command line, for CI scripts.

Reads what ``damo eval --out`` and ``damo bench --out`` wrote (or plain numbers) and applies
:func:`damo_core.steps.gate`, the same rule the pipeline's gate step applies. Exit status 0
means deploy, 1 means do not (like a failing test, so ``damo gate ... && damo serve deploy``
works), 2 a bad request. A measured value that is not a finite number (NaN mAP from a diverged
training, NaN or infinite latency) is a FAIL; a floor outside [0, 1] or a budget that is not a
finite number of ms > 0 is a bad request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from damo_core.bench.latency import parse_target
from damo_core.cli.errors import exit_on_user_error, read_json


def bench_latency(path: Path, target: str | None) -> float:
    """p50 of the row of a ``damo bench`` report for ``target`` (FORMAT[:PRECISION]); the only
    non-baseline row when no target is given."""
    rows = read_json(path, "benchmark report").get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: field 'rows' holds no benchmark rows")
    if target is not None:
        fmt, precision = parse_target(target)
        chosen = [r for r in rows if (r.get("format"), r.get("precision")) == (fmt, precision)]
    else:
        exported = [r for r in rows if r.get("format") != "pytorch"]
        chosen = exported if len(exported) == 1 else []
    if len(chosen) != 1:
        have = sorted({f"{r.get('format')}:{r.get('precision')}" for r in rows})
        raise ValueError(f"{path}: pick one row with --format (rows: {have}); got "
                         f"{target or 'none'}")
    p50 = chosen[0].get("p50_ms")
    # NaN and Infinity (which Python's json reads) pass through: the gate FAILs them by name
    if isinstance(p50, bool) or not isinstance(p50, int | float):
        raise ValueError(f"{path}: field rows[].p50_ms must be a number, got {p50!r}")
    return float(p50)


@exit_on_user_error
def gate(
    map_floor: Annotated[float, typer.Option("--map-floor", help="Lowest metric to deploy.")],
    latency_budget_ms: Annotated[float | None, typer.Option(
        "--latency-budget-ms", help="Highest p50 latency to deploy (ms > 0; none if not given)."
    )] = None,
    eval_json: Annotated[Path | None, typer.Option(
        "--eval", help="Metrics JSON from damo eval --out.")] = None,
    metric_value: Annotated[float | None, typer.Option(
        "--value", help="The metric's value instead of --eval.")] = None,
    metric: Annotated[str, typer.Option("--metric", help="AP, AP50, AP75 ...")] = "AP50",
    bench_json: Annotated[Path | None, typer.Option(
        "--bench", help="Report JSON from damo bench --out.")] = None,
    target: Annotated[str | None, typer.Option(
        "--format", "-f", help="Row of the --bench report: FORMAT[:PRECISION].")] = None,
    latency_ms: Annotated[float | None, typer.Option(
        "--latency-ms", help="p50 latency instead of --bench.")] = None,
) -> None:
    """Deploy or not: METRIC >= --map-floor and p50 latency <= --latency-budget-ms."""
    from damo_core.steps import check_gate_thresholds
    from damo_core.steps import gate as check

    check_gate_thresholds(map_floor, latency_budget_ms,
                          names=("--map-floor", "--latency-budget-ms"))
    if (eval_json is None) == (metric_value is None):
        raise ValueError("give the metric as exactly one of --eval FILE or --value NUMBER")
    if bench_json is not None and latency_ms is not None:
        raise ValueError("give the latency as one of --bench FILE or --latency-ms, not both")
    metrics = ({metric: metric_value} if metric_value is not None else
               read_json(eval_json, "evaluation metrics"))  # type: ignore[arg-type]
    if not isinstance(metrics, dict):
        raise ValueError(f"{eval_json}: expected a JSON object of metrics")
    if bench_json is not None:
        latency_ms = bench_latency(bench_json, target)
    ok, why = check(metrics, latency_ms, map_floor=map_floor,
                    latency_budget_ms=latency_budget_ms, metric=metric)
    typer.echo(f"{'PASS' if ok else 'FAIL'}: {why}")
    raise typer.Exit(0 if ok else 1)
