"""Model-zoo commands."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from damo_core.cli.errors import check_img_size, exit_on_user_error
from damo_core.models import build_model, list_models
from damo_core.models.profile import ModelInfo, model_info


@exit_on_user_error
def info(
    models: Annotated[list[str] | None, typer.Argument(help="Model names or config YAMLs "
                                                        "(default: every bundled model).")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", help="Override input size.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Params (M) and GFLOPs of every model, training and fused deploy graph, vs the paper.

    GFLOPs = 2 x multiply-accumulates of one batch-1 forward at the model's input size, counting
    convolutions, linear layers and BatchNorms (2 per element) and nothing else: the thop-style
    rule of the reference implementation. The paper reports the deploy graph (RepConv and
    BatchNorm fused); "ratio" is deploy / paper.
    """
    check_img_size(img_size)
    infos = [model_info(build_model(name), img_size) for name in (models or list_models())]
    if as_json:
        typer.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    console = Console()
    Console(width=max(console.width, 132)).print(info_table(infos))


def info_table(infos: list[ModelInfo]) -> Table:
    table = Table(title="DAMO-YOLO model zoo (GFLOPs = 2 x MACs)")
    for column in ("model", "size", "params M", "GFLOPs", "deploy params M", "deploy GFLOPs",
                   "paper params M", "paper GFLOPs", "params ratio", "GFLOPs ratio"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for i in infos:
        table.add_row(
            i.name, str(i.image_size), f"{i.params_m:.2f}", f"{i.gflops:.2f}",
            f"{i.deploy_params_m:.2f}", f"{i.deploy_gflops:.2f}",
            _fmt(i.paper_params_m), _fmt(i.paper_gflops),
            _ratio(i.deploy_params_m, i.paper_params_m), _ratio(i.deploy_gflops, i.paper_gflops),
        )
    return table


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio(ours: float, paper: float | None) -> str:
    return "-" if not paper else f"{ours / paper:.3f}"
