"""``damo dashboards``, ``damo metrics ...`` and ``damo cluster job``: monitoring and
multi-node training. Each command calls one function of damo_core.metrics / damo_core.cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from damo_core.cli.errors import exit_on_user_error
from damo_core.errors import UserInputError
from damo_core.steps._common import read_json_file as read_json

metrics_app = typer.Typer(help="Prometheus metrics: push step results, the latency-vs-mAP PNG.",
                          no_args_is_help=True)
cluster_app = typer.Typer(help="Training on a cluster as a Kubeflow PyTorchJob or "
                          "Trainer v2 TrainJob.",
                          no_args_is_help=True)


@exit_on_user_error
def dashboards(out: Annotated[Path, typer.Option(help="Directory for the dashboard JSON.")] = Path(
        "manifests/grafana/dashboards")) -> None:
    """Generate the Grafana dashboards (latency, model quality) as JSON files."""
    from damo_core.metrics.dashboards import write_dashboards

    for path in write_dashboards(out):
        typer.echo(str(path))


@metrics_app.command("push")
@exit_on_user_error
def push(
    kind: Annotated[str, typer.Argument(help="eval | latency | train")],
    values: Annotated[Path, typer.Argument(help="JSON dict: the evaluate step's output (eval), "
                                                "the benchmark step's (latency), a results row.")],
    run: Annotated[str, typer.Option(help="Run id label.")],
    model: Annotated[str, typer.Option(help="Model label.")],
    fmt: Annotated[str, typer.Option("--format", help="Format label.")] = "pytorch",
    device: Annotated[str, typer.Option(help="Device label.")] = "cpu",
    gateway: Annotated[str | None, typer.Option(
        help="Pushgateway URL (default: $DAMO_PUSHGATEWAY; unset = no-op).")] = None,
) -> None:
    """Push one step's numbers to the Pushgateway (fails loudly if the gateway refuses)."""
    from damo_core.metrics import MetricLabels, push_eval, push_latency, push_train_epoch

    pushers = {"eval": push_eval, "latency": push_latency, "train": push_train_epoch}
    if kind not in pushers:
        raise UserInputError(f"metrics kind {kind!r} is not one of {sorted(pushers)}")
    data = read_json(values, "metrics")
    if not isinstance(data, dict):
        raise UserInputError(f"{values}: expected a JSON object, got {type(data).__name__}")
    labels = MetricLabels(run=run, model=model, format=fmt, device=device)
    pushed = pushers[kind](data, labels, url=gateway, strict=True)
    typer.echo("pushed" if pushed else "not pushed: no Pushgateway configured")


@metrics_app.command("report")
@exit_on_user_error
def report(
    rows: Annotated[Path, typer.Argument(help="JSON list of per-model dicts: model, AP, "
                                              "latency_ms (or p50_ms), optional format.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("runs/latency_vs_map.png"),
    metric: Annotated[str, typer.Option(help="Y axis: AP or AP50.")] = "AP",
) -> None:
    """Plot latency against mAP per model (the paper's Figure 1) without Grafana."""
    from damo_core.metrics.report import plot_latency_vs_map

    data = read_json(rows, "metrics")
    if not isinstance(data, list):
        raise UserInputError(f"{rows}: expected a JSON list of per-model dicts")
    typer.echo(str(plot_latency_vs_map(data, out, metric=metric)))


@cluster_app.command("job")
@exit_on_user_error
def job(
    name: Annotated[str, typer.Option(help="Job name (DNS label).")],
    image: Annotated[str, typer.Option(help="GPU training image.")],
    damo_args: Annotated[list[str], typer.Argument(help="After `--`: the damo command, e.g. "
                                                        "train --model damoyolo_s --data ...")],
    nodes: Annotated[int, typer.Option(help="Pods (1 master + N-1 workers).")] = 1,
    gpus_per_node: Annotated[int, typer.Option(help="torchrun ranks per pod.")] = 1,
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace.")] = "damo",
    pvc: Annotated[str | None, typer.Option(help="ReadWriteMany PVC mounted at "
                                                 "/workspace.")] = None,
    submit: Annotated[bool, typer.Option("--submit", help="Create it, stream the master's "
                                                          "log, wait, delete.")] = False,
    kind: Annotated[str, typer.Option(help="pytorchjob (Training Operator v1) or trainjob "
                                           "(Kubeflow Trainer v2).")] = "pytorchjob",
) -> None:
    """Print the training job's YAML for a damo command, or run it on the cluster
    (--submit)."""
    import yaml

    from damo_core.cluster import (
        build_pytorchjob,
        build_trainjob,
        run_pytorchjob,
        run_trainjob,
        train_job_spec,
    )
    from damo_core.cluster.launch import MINIO_SECRET_ENV
    from damo_core.errors import UserInputError

    kinds = {"pytorchjob": (build_pytorchjob, run_pytorchjob),
             "trainjob": (build_trainjob, run_trainjob)}
    if kind not in kinds:
        raise UserInputError(f"--kind must be one of {sorted(kinds)}, got {kind!r}")
    build, run = kinds[kind]
    spec = train_job_spec(name, image, damo_args, nodes=nodes, gpus_per_node=gpus_per_node,
                          namespace=namespace, volume_claim=pvc, secret_env=MINIO_SECRET_ENV)
    body = build(spec)
    if not submit:
        typer.echo(yaml.safe_dump(body, sort_keys=False))
        return
    outcome = run(body, sink=typer.echo)
    typer.echo(f"{body['kind']} {outcome.name}: {outcome.state} in {outcome.seconds:.0f} s")
