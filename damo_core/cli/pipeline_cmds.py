"""``damo pipeline``: compile the DAG, run it locally, submit it to Kubeflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from damo_core.cli.errors import exit_on_user_error
from damo_core.cluster.pytorchjob import PIPELINE_SERVICE_ACCOUNT
from damo_core.errors import UserInputError

# The options submit and rerun share (kfp.Client's host, namespace and token; the run's
# service account).
Host = Annotated[str, typer.Option(envvar="KF_PIPELINES_ENDPOINT",
                                   help="KFP API endpoint, e.g. https://kfp.example.")]
Namespace = Annotated[str | None, typer.Option(help="Namespace (multi-user KFP).")]
Token = Annotated[str | None, typer.Option(envvar="KFP_TOKEN", help="Bearer token.")]
ServiceAccount = Annotated[str, typer.Option(
    "--service-account", help="Kubernetes service account of the run's pods; it must be allowed "
    "to create PyTorchJobs for train_nodes > 1 (manifests/base/rbac.yaml).")]

pipeline_app = typer.Typer(help="The Kubeflow pipeline: compile, run locally, submit, rerun.",
                           no_args_is_help=True)


def _params(path: Path | None, pairs: list[str] | None,
            base: dict[str, Any] | None = None, *, raw: dict | None = None) -> dict:
    """The params file and key=value pairs (or ``raw``, those already read), checked as the
    run would check them (``base``: the defaults they override, e.g. the local run's)."""
    from pipelines.params import validate_params

    return validate_params(raw if raw is not None else _read_params(path, pairs),
                           str(path) if path else "parameters", base)


def _read_params(path: Path | None, pairs: list[str] | None) -> dict:
    """The params file and key=value pairs, read but not yet checked: cheap, so a missing or
    broken file fails before the pipeline definition (seconds to import) is loaded."""
    from damo_core.train.config import parse_overrides
    from pipelines.params import read_params_file

    return {**(read_params_file(path) if path else {}), **parse_overrides(pairs or [])}


@pipeline_app.command("compile")
@exit_on_user_error
def compile_(out: Annotated[Path, typer.Option(help="IR YAML to write.")] = Path(
        "pipeline.yaml")) -> None:
    """Compile the DAG to KFP IR YAML (upload it in the KFP UI or submit it)."""
    from pipelines.damo_pipeline import compile_pipeline

    typer.echo(compile_pipeline(str(out)))


@pipeline_app.command("run")
@exit_on_user_error
def run(
    local: Annotated[bool, typer.Option("--local", help="Run on this machine (required).")],
    params: Annotated[Path | None, typer.Option(help="YAML of pipeline parameters.")] = None,
    root: Annotated[Path, typer.Option(help="Local pipeline root.")] = Path("runs/pipeline"),
    overrides: Annotated[list[str] | None, typer.Argument(help="param=value pairs.")] = None,
    containers: Annotated[bool, typer.Option(
        "--containers", help="Run every step in its image (KFP DockerRunner) and Triton from "
        "the Triton image; build them first: scripts/images.sh cpu triton.")] = False,
    gpu_image: Annotated[str | None, typer.Option(
        "--gpu-image", help="With --containers: the image train/distill run in. [default: "
        "DAMO_GPU_IMAGE if built, else the CPU image]")] = None,
) -> None:
    """Run the whole DAG locally (KFP local runner, local artifacts, CPU, synthetic data)."""
    if not local:
        raise UserInputError("only --local runs here; use `damo pipeline submit` for a cluster")
    if gpu_image is not None and not containers:
        raise UserInputError("--gpu-image names an image of --containers; add --containers")
    raw = _read_params(params, overrides)  # a bad file fails before the slow imports below
    from pipelines.local_run import LOCAL_PARAMS, run_local, summary_rows

    result = run_local(_params(params, overrides, LOCAL_PARAMS, raw=raw), root,
                       containers=containers, gpu_image=gpu_image)
    typer.echo(f"pipeline finished in {result.seconds / 60:.1f} min; artifacts under "
               f"{result.run_dir}")
    if result.exits:
        codes = sorted({e.code for e in result.exits})
        typer.echo(f"{len(result.exits)} step containers ran; exit codes: {codes}")
    for rec in result.tasks:
        for name, art in rec.artifacts.items():
            typer.echo(f"  {rec.task}/{name}: {art['uri']}")
    Console(width=140).print(summary_table(summary_rows(result)))
    for rec in result.by_prefix("report"):
        typer.echo(f"latency vs mAP chart: {rec.artifacts['chart']['uri']} "
                   f"(page: {rec.artifacts['page']['uri']})")


def summary_table(rows: list[dict]) -> Table:
    table = Table(title="DAMO-YOLO local pipeline")
    columns = ("model", "AP", "AP50", "latency_ms", "params_m", "gflops", "gate", "served")
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "gate", "served") else "right")
    for row in rows:
        table.add_row(*[_cell(row.get(col)) for col in columns])
    return table


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


@pipeline_app.command("submit")
@exit_on_user_error
def submit(
    host: Host,
    params: Annotated[Path | None, typer.Option(help="YAML of pipeline parameters.")] = None,
    experiment: Annotated[str | None, typer.Option(help="Experiment name.")] = None,
    run_name: Annotated[str | None, typer.Option("--run-name", help="Run name.")] = None,
    namespace: Namespace = None,
    token: Token = None,
    service_account: ServiceAccount = PIPELINE_SERVICE_ACCOUNT,
    overrides: Annotated[list[str] | None, typer.Argument(help="param=value pairs.")] = None,
) -> None:
    """Compile the DAG and submit a run to a Kubeflow Pipelines cluster; prints the run URL."""
    from pipelines.remote import submit as submit_run

    run = submit_run(host, _params(params, overrides), experiment=experiment, run_name=run_name,
                     token=token, namespace=namespace,
                     params_source=str(params) if params else "parameters",
                     service_account=service_account)
    typer.echo(f"run {run.run_id}: {run.url}")


@pipeline_app.command("rerun")
@exit_on_user_error
def rerun(
    step: Annotated[str, typer.Argument(help="Task to rerun: its key (distill-2) or display "
                                             "name (as in the KFP UI).")],
    from_run: Annotated[str, typer.Option("--from-run", help="ID of the earlier run.")],
    host: Host,
    with_dependants: Annotated[bool, typer.Option(
        "--with-dependants", help="Also rerun every task downstream of STEP.")] = False,
    params: Annotated[Path | None, typer.Option(help="YAML of parameter overrides.")] = None,
    experiment: Annotated[str | None, typer.Option(
        help="Experiment (default: the earlier run's).")] = None,
    namespace: Namespace = None,
    token: Token = None,
    service_account: ServiceAccount = PIPELINE_SERVICE_ACCOUNT,
    overrides: Annotated[list[str] | None, typer.Argument(help="param=value overrides.")] = None,
) -> None:
    """Rerun one step of an earlier run, its inputs taken from that run (KFP cache hits)."""
    from pipelines.remote import rerun as rerun_step

    run = rerun_step(host, from_run, step, with_dependants=with_dependants,
                     params=_params(params, overrides), experiment=experiment, token=token,
                     namespace=namespace, service_account=service_account)
    typer.echo(f"run {run.run_id}: {run.url}")


@pipeline_app.command("params")
def show_params() -> None:
    """Print the pipeline's parameters and their defaults (the keys a params.yaml may set)."""
    from pipelines.remote import pipeline_parameters

    typer.echo(json.dumps(pipeline_parameters(), indent=2))
