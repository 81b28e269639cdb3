"""The gate step: deploy only what is accurate enough and fast enough, saying why either way.

A measured value that is not a finite number (a diverged training's NaN mAP, a broken
benchmark's NaN or infinite latency) is a FAIL naming it: NaN compares false with everything,
so without this it would pass. A floor or budget that is not a sensible number is the caller's
mistake, a :class:`GateRequestError`, raised before anything is judged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from damo_core.errors import UserInputError
from damo_core.metrics.mlflow_tracking import DEFAULT_EXPERIMENT


class GateRequestError(UserInputError):
    """A gate that could not mean anything: a bad floor, budget or input file."""


def run(metrics: Mapping[str, Any] | str | Path, latency: float | str | Path | None, *,
        map_floor: float, latency_budget_ms: float | None = None, metric: str = "AP50",
        target: str | None = None, model_name: str = "",
        names: tuple[str, str] = ("map_floor", "latency_budget_ms"), run_id: str | None = None,
        mlflow_uri: str = "", mlflow_experiment: str = DEFAULT_EXPERIMENT) -> dict[str, Any]:
    """Judge ``metrics`` (a mapping, or the JSON the evaluate step writes) and ``latency``
    (ms, or the benchmark step's report JSON, whose row ``target`` = FORMAT[:PRECISION] is
    read; the only exported row without one). ``names`` are what the caller calls the floor
    and the budget (CLI options, component parameters) so an error points at what to fix.
    Returns ``passed`` and the ``reason``.

    ``mlflow_uri``: tag the MLflow run of ``model_name`` in pipeline run ``run_id``
    [default: $DAMO_RUN_ID, else local] with the verdict (``damo.gate`` = pass | fail and
    ``damo.gate.reason``); a new run when there is none. The server is checked before the
    verdict."""
    try:
        check_thresholds(map_floor, latency_budget_ms, names=names)
    except GateRequestError as err:
        if not model_name:
            raise
        raise GateRequestError(f"gate {model_name}: bad request: {err}") from None
    tracking = None
    if mlflow_uri:
        from damo_core.metrics.mlflow_tracking import connect

        if not model_name:
            raise GateRequestError("logging the verdict to MLflow needs the model's name (the "
                                   "damo.model tag of its run): give --model / model_name")
        tracking = connect(mlflow_uri, mlflow_experiment)
    if isinstance(metrics, str | Path):
        metrics = _metrics_file(Path(metrics))
    latency_ms = latency_from_report(Path(latency), target) if isinstance(
        latency, str | Path) else latency
    passed, why = judge(metrics, latency_ms, map_floor=map_floor,
                        latency_budget_ms=latency_budget_ms, metric=metric)
    prefix = f"{model_name}: " if model_name else ""
    verdict = {"model_name": model_name, "passed": passed, "metric": metric,
               "value": metrics.get(metric), "latency_ms": latency_ms,
               "reason": f"{prefix}{'PASS' if passed else 'FAIL'}: {why}"}
    if tracking is not None:
        from damo_core.metrics import run_id as env_run_id
        from damo_core.metrics.mlflow_tracking import log_gate

        verdict.update(log_gate(tracking, run_id=run_id or env_run_id(), model=model_name,
                                passed=passed, reason=verdict["reason"]))
    return verdict


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_thresholds(map_floor: float, latency_budget_ms: float | None, *,
                     names: tuple[str, str] = ("map_floor", "latency_budget_ms")) -> None:
    """A floor in [0, 1] (NaN, which every comparison would wave through, is not) and a budget
    that is a finite number of ms > 0; ``None`` is no budget."""
    floor_name, budget_name = names
    if not _is_number(map_floor) or not 0.0 <= map_floor <= 1.0:
        raise GateRequestError(f"{floor_name} must be a number in [0, 1], got {map_floor!r}")
    if latency_budget_ms is not None and not (
            _is_number(latency_budget_ms) and math.isfinite(latency_budget_ms)
            and latency_budget_ms > 0):
        raise GateRequestError(f"{budget_name} must be a finite number of ms > 0, "
                               f"got {latency_budget_ms!r}")


def judge(metrics: Mapping[str, Any], latency_ms: float | None, *, map_floor: float,
          latency_budget_ms: float | None, metric: str = "AP50") -> tuple[bool, str]:
    """The rule itself: ``metric`` >= ``map_floor`` and latency within the budget."""
    check_thresholds(map_floor, latency_budget_ms)
    value = metrics.get(metric)
    if value is None:
        return False, f"no {metric} in the evaluation metrics {sorted(metrics)}"
    if not _is_number(value):
        return False, f"{metric} is {value!r}, not a number"
    if not math.isfinite(value):
        return False, f"{metric} is {value}, not a finite number (did the training diverge?)"
    if not 0.0 <= value <= 1.0:
        return False, f"{metric} {value} is outside [0, 1]"
    if value < map_floor:
        return False, f"{metric} {value:.4f} is below the floor {map_floor:.4f}"
    if latency_ms is not None:
        if not _is_number(latency_ms):
            return False, f"latency is {latency_ms!r}, not a number"
        if not math.isfinite(latency_ms):
            return False, f"latency is {latency_ms} ms, not a finite number"
        if latency_ms < 0:
            return False, f"latency {latency_ms} ms is negative"
        if latency_budget_ms is not None and latency_ms > latency_budget_ms:
            return False, (f"latency {latency_ms:.2f} ms exceeds the budget "
                           f"{latency_budget_ms:.2f} ms")
    lat = "n/a" if latency_ms is None else f"{latency_ms:.2f} ms"
    budget = "(no budget)" if latency_budget_ms is None else "within budget"
    return True, f"{metric} {value:.4f} >= {map_floor:.4f} and latency {lat} {budget}"


def _metrics_file(path: Path) -> dict[str, Any]:
    from damo_core.steps._common import read_json_file

    metrics = read_json_file(path, "evaluation metrics")
    if not isinstance(metrics, dict):
        raise GateRequestError(f"{path}: expected a JSON object of metrics")
    return metrics


def latency_from_report(path: Path, target: str | None) -> float:
    """p50 of the row of a benchmark report for ``target`` (FORMAT[:PRECISION]); the only
    non-baseline row when no target is given."""
    from damo_core.bench.latency import parse_target
    from damo_core.steps._common import read_json_file

    doc = read_json_file(path, "benchmark report")
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not rows:
        raise GateRequestError(f"{path}: field 'rows' holds no benchmark rows")
    if target is not None:
        fmt, precision = parse_target(target)
        chosen = [r for r in rows if (r.get("format"), r.get("precision")) == (fmt, precision)]
    else:
        exported = [r for r in rows if r.get("format") != "pytorch"]
        chosen = exported if len(exported) == 1 else []
    if len(chosen) != 1:
        have = sorted({f"{r.get('format')}:{r.get('precision')}" for r in rows})
        raise GateRequestError(f"{path}: pick one row with --format (rows: {have}); got "
                               f"{target or 'none'}")
    p50 = chosen[0].get("p50_ms")
    # NaN and Infinity (which Python's json reads) pass through: the gate FAILs them by name
    if not _is_number(p50):
        raise GateRequestError(f"{path}: field rows[].p50_ms must be a number, got {p50!r}")
    return float(p50)
