"""``damo pipeline``: compile the DAG, run it locally, submit it to Kubeflow, schedule it there
and list its runs."""

from __future__ import annotations

import json
from datetime import UTC
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

pipeline_app = typer.Typer(help="The Kubeflow pipeline: compile, run locally, submit, rerun, "
                                "schedule, list runs.", no_args_is_help=True)


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
    from pipelines.local_run import LOCAL_PARAMS, distillation_summary, run_local, summary_rows

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
    for table in distillation_tables(distillation_summary(result)):
        Console(width=140).print(table)
    for rec in result.by_prefix("report"):
        typer.echo(f"latency vs mAP chart: {rec.artifacts['chart']['uri']} "
                   f"(page: {rec.artifacts['page']['uri']})")


def distillation_tables(summary: dict[str, Any]) -> list[Table]:
    """Teacher against student per link; then the control: the last student distilled and
    trained alone with the same settings (gain = distilled − alone)."""
    links = Table(title="Distillation: teacher vs student")
    for col in ("teacher", "student", "teacher AP50", "student AP50", "teacher AP", "student AP"):
        links.add_column(col, justify="left" if col in ("teacher", "student") else "right")
    for x in summary["links"]:
        links.add_row(x["teacher"], x["student"], *[_cell(x[k]) for k in (
            "teacher_AP50", "student_AP50", "teacher_AP", "student_AP")])
    versus = summary["control"]
    if not versus:
        return [links]
    control = Table(title="Distilled vs trained alone (same settings)")
    columns = ("model", "AP50 distilled", "AP50 alone", "gain AP50", "AP distilled", "AP alone",
               "gain AP")
    for col in columns:
        control.add_column(col, justify="left" if col == "model" else "right")
    control.add_row(versus["model"], _cell(versus["distilled_AP50"]), _cell(versus["alone_AP50"]),
                    f"{versus['gain_AP50']:+.3f}", _cell(versus["distilled_AP"]),
                    _cell(versus["alone_AP"]), f"{versus['gain_AP']:+.3f}")
    return [links, control]


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


@pipeline_app.command("schedule")
@exit_on_user_error
def schedule(
    host: Host,
    cron: Annotated[str | None, typer.Option(
        help="KFP cron, 6 fields with seconds first: '0 0 3 * * *' is 03:00 daily (UTC); or "
             "@daily, @hourly, ...")] = None,
    interval: Annotated[int | None, typer.Option(
        help="Instead of --cron: a run every SECONDS.", metavar="SECONDS")] = None,
    name: Annotated[str, typer.Option(help="The recurring run's name.")] = "damo-yolo",
    experiment: Annotated[str | None, typer.Option(
        help="Experiment of the schedule, created if missing (default: damo-yolo); with "
             "--list: only its schedules.")] = None,
    max_concurrency: Annotated[int, typer.Option(
        "--max-concurrency", help="Runs of this schedule at once (1-10).")] = 1,
    catchup: Annotated[bool, typer.Option(
        "--catchup/--no-catchup", help="After a pause, start one run per missed tick "
                                       "(--catchup) or only the latest one.")] = False,
    params: Annotated[Path | None, typer.Option(help="YAML of pipeline parameters.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the recurring runs.")] = False,
    enable: Annotated[str | None, typer.Option(help="Resume the recurring run ID.",
                                               metavar="ID")] = None,
    disable: Annotated[str | None, typer.Option(help="Pause the recurring run ID.",
                                                metavar="ID")] = None,
    delete: Annotated[str | None, typer.Option(help="Delete the recurring run ID.",
                                               metavar="ID")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: JSON lines.")] = False,
    namespace: Namespace = None,
    token: Token = None,
    service_account: ServiceAccount = PIPELINE_SERVICE_ACCOUNT,
    overrides: Annotated[list[str] | None, typer.Argument(help="param=value pairs.")] = None,
) -> None:
    """Run the pipeline on a schedule (a KFP recurring run); or --list, --enable, --disable,
    --delete the recurring runs."""
    from pipelines import schedule as schedules

    actions = [flag for flag, given in (("--list", list_), ("--enable", enable),
                                        ("--disable", disable), ("--delete", delete)) if given]
    if len(actions) > 1:
        raise UserInputError(f"{' and '.join(actions)}: give one of them at a time")
    creating = [flag for flag, given in (("--cron", cron is not None),
                                         ("--interval", interval is not None),
                                         ("--params", params), ("param=value", overrides))
                if given]
    if actions and creating:
        raise UserInputError(f"{', '.join(creating)} create a schedule; they do not go with "
                             f"{actions[0]}")
    if as_json and not list_:
        raise UserInputError("--json formats the --list output; add --list")
    if list_:
        rows = schedules.list_schedules(host, experiment=experiment, token=token,
                                        namespace=namespace)
        _print_rows([r.as_dict() for r in rows], as_json, schedule_table, rows)
        return
    for job_id, enabled in ((enable, True), (disable, False)):
        if job_id:
            schedules.set_enabled(host, job_id, enabled, token=token, namespace=namespace)
            typer.echo(f"recurring run {job_id}: {'enabled' if enabled else 'disabled'}")
            return
    if delete:
        schedules.delete(host, delete, token=token, namespace=namespace)
        typer.echo(f"recurring run {delete}: deleted")
        return
    # the trigger first: a bad cron fails before the pipeline definition is even loaded
    schedules.check_trigger(cron, interval, max_concurrency)
    job = schedules.create(host, _params(params, overrides), cron=cron, interval=interval,
                           name=name, experiment=experiment, max_concurrency=max_concurrency,
                           catchup=catchup, token=token, namespace=namespace,
                           params_source=str(params) if params else "parameters",
                           service_account=service_account)
    typer.echo(f"recurring run {job.recurring_run_id} ({job.trigger}, max concurrency "
               f"{job.max_concurrency}, catch-up {'off' if job.no_catchup else 'on'}): "
               f"{job.url}")


def schedule_table(rows: list[Any]) -> Table:
    table = Table(title="recurring runs")
    for col in ("id", "name", "status", "trigger", "max concurrency", "catch-up", "created"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(row.recurring_run_id, row.name, row.status, row.trigger,
                      str(row.max_concurrency), "off" if row.no_catchup else "on",
                      _when(row.created_at))
    return table


@pipeline_app.command("runs")
@exit_on_user_error
def runs(
    host: Host,
    limit: Annotated[int, typer.Option(help="How many of the newest runs.")] = 10,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment's runs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, one per run.")] = False,
    namespace: Namespace = None,
    token: Token = None,
) -> None:
    """List the newest runs: name, id, state, created, duration and each gate's verdict
    (PASS, FAIL, ERROR), as far as the run has recorded it."""
    from pipelines.runs import list_runs

    rows = list_runs(host, limit=limit, experiment=experiment, token=token,
                     namespace=namespace)
    _print_rows([r.as_dict() for r in rows], as_json, runs_table, rows)


def runs_table(rows: list[Any]) -> Table:
    table = Table(title="runs, newest first")
    for col in ("name", "id", "state", "created", "duration", "gates"):
        table.add_column(col, overflow="fold")
    for row in rows:
        gates = "  ".join(f"{label} {verdict}" for label, verdict in row.gates.items())
        table.add_row(row.name, row.run_id, row.state, _when(row.created_at),
                      _duration(row.duration_s), gates or "-")
    return table


def _print_rows(dicts: list[dict], as_json: bool, table: Any, rows: list[Any]) -> None:
    """``--json``: one JSON object a line (for jq and scripts); else a table wide enough that
    ids are not cut."""
    if as_json:
        for item in dicts:
            typer.echo(json.dumps(item))
    else:
        Console(width=180).print(table(rows))


def _when(moment: Any) -> str:
    """The API's times are UTC (and so is KFP's cron): shown as such, to the minute."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
