"""``damo``: the typer application and its sub-command groups.

Each command parses arguments, calls one damo_core function and prints the result; no logic
lives here, so the same step behaves identically as a library call, a CLI call and a KFP
component.
"""

from __future__ import annotations

import typer

from damo_core.cli import (
    checkpoint_cmds,
    cluster_cmds,
    data_cmds,
    distill_cmds,
    export_cmds,
    gate_cmds,
    model_cmds,
    nas_cmds,
    pipeline_cmds,
    serve_cmds,
    train_cmds,
)

app = typer.Typer(
    name="damo",
    help="DAMO-YOLO pipeline: model zoo, data, training, export, serving and the Kubeflow DAG.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("info")(model_cmds.info)
app.command("train")(train_cmds.train)
app.command("distill")(distill_cmds.distill)
app.command("distill-chain")(distill_cmds.distill_chain)
app.command("eval")(train_cmds.evaluate)
app.command("predict")(train_cmds.predict)
app.command("export")(export_cmds.export)
app.command("bench")(export_cmds.bench)
app.command("gate")(gate_cmds.gate)
app.add_typer(data_cmds.data_app, name="data")
app.add_typer(pipeline_cmds.pipeline_app, name="pipeline")
app.add_typer(nas_cmds.nas_app, name="nas")
app.command("infer")(serve_cmds.infer)
app.command("serve-bench")(serve_cmds.serve_bench)
app.add_typer(serve_cmds.serve_app, name="serve")
app.command("dashboards")(cluster_cmds.dashboards)
app.add_typer(cluster_cmds.metrics_app, name="metrics")
app.add_typer(cluster_cmds.cluster_app, name="cluster")
app.add_typer(checkpoint_cmds.checkpoint_app, name="checkpoint")


def main() -> None:
    app()
