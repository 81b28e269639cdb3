"""``damo report``: a shell over the report step, from the files the evaluate and benchmark
commands write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from damo_core.cli.errors import exit_on_user_error


@exit_on_user_error
def report(
    evals: Annotated[list[Path], typer.Option(
        "--eval", help="Metrics JSON from `damo evaluate --out`, one per model (repeatable).")],
    benches: Annotated[list[Path], typer.Option(
        "--bench", help="Report JSON from `damo benchmark --out`, one per model, in the same "
        "order (repeatable).")],
    control: Annotated[Path | None, typer.Option(
        "--control", help="Metrics JSON of one distilled student trained alone with the same "
        "settings: the report sets it beside the distilled one. [default: none]")] = None,
    out: Annotated[Path, typer.Option(
        "--out", help="Directory for latency_vs_map.png and report.html.")] = Path("runs/report"),
) -> None:
    """Latency against mAP of every model, as a chart and an HTML page; with the models given
    in distillation order (each teaching the next), teacher against student per link."""
    from damo_core.steps.report import run

    meta = run(evals, benches, out / "latency_vs_map.png", out / "report.html",
               control=control)
    typer.echo(json.dumps(meta, indent=2))
