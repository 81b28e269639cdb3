"""``damo``: the typer application and its sub-command groups.

A DAG step's command carries the step's name and is a shell over the step's one entry
(``damo_core.steps.<name>.run``, see :data:`damo_core.steps.STEPS`): it parses arguments,
calls it and prints the result, so the same step behaves identically as a library call, a
CLI call and a KFP component. ``eval``/``val`` and ``bench`` are the names users bring from
ultralytics and earlier releases.
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
    predict_cmds,
    report_cmds,
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
# the DAG's steps, in pipeline order; each step's command is STEP_COMMANDS[name]
STEP_COMMANDS = {
    "unify": data_cmds.unify,
    "nas": nas_cmds.nas,
    "train": train_cmds.train,
    "distill": distill_cmds.distill,
    "evaluate": train_cmds.evaluate,
    "export": export_cmds.export,
    "benchmark": export_cmds.benchmark,
    "gate": gate_cmds.gate,
    "deploy": serve_cmds.deploy,
    "report": report_cmds.report,
}
for _name, _command in STEP_COMMANDS.items():
    app.command(_name)(_command)
for _alias, _name in {"eval": "evaluate", "val": "evaluate", "bench": "benchmark"}.items():
    app.command(_alias, help=f"Same as `damo {_name}`.")(STEP_COMMANDS[_name])
serve_cmds.serve_app.command("deploy", help="Same as `damo deploy`.")(serve_cmds.deploy)

app.command("info")(model_cmds.info)
app.command("predict")(predict_cmds.predict)
app.command("distill-chain")(distill_cmds.distill_chain)
app.command("nas-lut")(nas_cmds.nas_lut)
app.add_typer(data_cmds.data_app, name="data")
app.add_typer(pipeline_cmds.pipeline_app, name="pipeline")
app.command("infer")(serve_cmds.infer)
app.command("serve-bench")(serve_cmds.serve_bench)
app.add_typer(serve_cmds.serve_app, name="serve")
app.command("dashboards")(cluster_cmds.dashboards)
app.add_typer(cluster_cmds.metrics_app, name="metrics")
app.add_typer(cluster_cmds.cluster_app, name="cluster")
app.add_typer(checkpoint_cmds.checkpoint_app, name="checkpoint")

def main() -> None:
    app()
