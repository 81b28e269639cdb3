"""``damo nas``: MAE-NAS backbone search and the latency table it prices candidates with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from damo_core.cli.errors import exit_on_user_error

nas_app = typer.Typer(help="MAE-NAS: zero-training backbone search under budgets.",
                      no_args_is_help=True)

Block = Annotated[str, typer.Option("--block", help="res | csp | mob")]
Model = Annotated[str | None, typer.Option(
    "--model", help="Model whose neck/head and options the backbone is searched for "
    "(default: damoyolo_t for res, damoyolo_m for csp, damoyolo_ns for mob).")]
ImageSize = Annotated[int | None, typer.Option("--image-size", help="Input side (default: "
                                                                    "the model's).")]
DEFAULT_LUT = Path("runs/nas/lut_cpu.json")


@nas_app.command("search")
@exit_on_user_error
def search(
    out: Annotated[Path, typer.Option("--out", help="Structure file to write (TinyNAS text).")],
    block: Block = "res",
    model: Model = None,
    budget_flops: Annotated[str | None, typer.Option(help="Whole model, e.g. 18G.")] = None,
    budget_params: Annotated[str | None, typer.Option(help="Whole model, e.g. 8.5M.")] = None,
    budget_layers: Annotated[int | None, typer.Option(help="TinyNAS layer count.")] = None,
    budget_latency_ms: Annotated[float | None, typer.Option(help="Backbone, from --lut.")] = None,
    image_size: ImageSize = None,
    lut: Annotated[Path, typer.Option("--lut", help="Table from `damo nas lut`.")] = DEFAULT_LUT,
    population: Annotated[int, typer.Option(help="Candidates kept.")] = 64,
    generations: Annotated[int, typer.Option(help="Evolution rounds.")] = 60,
    seed: Annotated[int, typer.Option(help="Same seed, same result.")] = 0,
    score: Annotated[str, typer.Option(help="analytic | forward")] = "analytic",
) -> None:
    """Search a backbone; writes OUT plus OUT_search_log.csv, _search.json, _population.png."""
    from damo_core.nas.commands import budgets_from_cli, search_to_files

    budgets = budgets_from_cli(budget_params, budget_flops, budget_layers, budget_latency_ms)
    summary = search_to_files(block, model, budgets, out, lut=lut, image_size=image_size,
                              population=population, generations=generations, seed=seed,
                              score=score)
    typer.echo(summary)


@nas_app.command("lut")
@exit_on_user_error
def lut_cmd(
    device: Annotated[str, typer.Option("--device", help="cpu")] = "cpu",
    block: Block = "res",
    model: Model = None,
    image_size: ImageSize = None,
    threads: Annotated[int, typer.Option(help="Torch threads while timing.")] = 1,
    runs: Annotated[int, typer.Option(help="Repeats per op (the minimum is kept).")] = 5,
    out: Annotated[Path, typer.Option("--out", help="Table JSON to write.")] = DEFAULT_LUT,
) -> None:
    """Time every op class of the block's search space on this device (a minute or two)."""
    from damo_core.nas.commands import measure_lut

    typer.echo(measure_lut(device, block, model, image_size, threads, runs, out))
