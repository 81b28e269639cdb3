"""``damo gate``: the pipeline's deployment gate on the command line, for CI scripts.

A shell over the gate step: it reads what ``damo evaluate --out`` and ``damo benchmark --out``
wrote (or plain numbers) and applies the same rule the pipeline's gate step applies. Exit
status 0 means deploy, 1 means do not (like a failing test, so ``damo gate ... && damo
deploy`` works), 2 a bad request. A measured value that is not a finite number (NaN mAP from a
diverged training, NaN or infinite latency) is a FAIL; a floor outside [0, 1] or a budget that
is not a finite number of ms > 0 is a bad request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from damo_core.cli import options as opt
from damo_core.cli.errors import exit_on_user_error


@exit_on_user_error
def gate(
    map_floor: Annotated[float, typer.Option("--map-floor", help="Lowest metric to deploy.")],
    latency_budget_ms: Annotated[float | None, typer.Option(
        "--latency-budget-ms", help="Highest p50 latency to deploy, ms > 0. [default: no "
        "budget]")] = None,
    eval_json: Annotated[Path | None, typer.Option(
        "--eval", help="Metrics JSON from damo evaluate --out.")] = None,
    metric_value: Annotated[float | None, typer.Option(
        "--value", help="The metric's value instead of --eval.")] = None,
    metric: Annotated[str, typer.Option("--metric", help="AP, AP50, AP75 ...")] = "AP50",
    bench_json: Annotated[Path | None, typer.Option(
        "--bench", help="Report JSON from damo benchmark --out.")] = None,
    target: Annotated[str | None, typer.Option(
        "--format", "-f", help="Row of the --bench report: FORMAT[:PRECISION]. [default: the "
        "only exported row]")] = None,
    latency_ms: Annotated[float | None, typer.Option(
        "--latency-ms", help="p50 latency instead of --bench.")] = None,
    model_name: Annotated[str, typer.Option(
        "--model", help="Name of the judged model (damoyolo_s ...): prefixes the verdict and, "
        "with --mlflow, names the MLflow run to tag. [default: none]")] = "",
    mlflow: opt.Mlflow = None,
    mlflow_experiment: opt.MlflowExperiment = opt.DEFAULT_EXPERIMENT,
    run_id: opt.MlflowRunId = None,
) -> None:
    """Deploy or not: METRIC >= --map-floor and p50 latency <= --latency-budget-ms. With
    --mlflow and --model, the verdict becomes the tags damo.gate (pass or fail) and
    damo.gate.reason of the model's MLflow run."""
    from damo_core.errors import UserInputError
    from damo_core.steps.gate import run

    if (eval_json is None) == (metric_value is None):
        raise UserInputError("give the metric as exactly one of --eval FILE or --value NUMBER")
    if bench_json is not None and latency_ms is not None:
        raise UserInputError("give the latency as one of --bench FILE or --latency-ms, not both")
    result = run(eval_json if eval_json is not None else {metric: metric_value},
                 bench_json if bench_json is not None else latency_ms, map_floor=map_floor,
                 latency_budget_ms=latency_budget_ms, metric=metric, target=target,
                 model_name=model_name, names=("--map-floor", "--latency-budget-ms"),
                 run_id=run_id, mlflow_uri=mlflow or "", mlflow_experiment=mlflow_experiment)
    typer.echo(result["reason"])
    raise typer.Exit(0 if result["passed"] else 1)
