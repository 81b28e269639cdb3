"""``damo nas`` (a shell over the NAS step) and ``damo nas-lut``, the latency table the search
prices candidates with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from damo_core.cli import options as opt
from damo_core.cli.errors import exit_on_user_error

Block = Annotated[str | None, typer.Option(
    "--block", help="Search space: res | csp | mob. [default: the model's backbone's]")]
DEFAULT_LUT = Path("runs/nas/lut_cpu.json")  # the fp32 table (latency_lut.default_lut_path)


@exit_on_user_error
def nas(
    out: Annotated[Path, typer.Option(
        "--out", help="Model YAML to write (train it with `damo train --model OUT`); the "
        "structure, search log, summary and plot go beside it.")],
    model: Annotated[str, typer.Option(
        "--model", help="Zoo model whose backbone is searched (neck, head and options "
        "kept).")] = "damoyolo_t",
    budget_params_m: Annotated[float, typer.Option(
        "--budget-params-m", help="Whole deploy model, millions; 0: the paper's.")] = 0.0,
    budget_gflops: Annotated[float, typer.Option(
        "--budget-gflops", help="Whole deploy model, GFLOPs; 0: the paper's.")] = 0.0,
    budget_layers: Annotated[int, typer.Option(
        "--budget-layers", help="TinyNAS layer count; 0: the published structure's.")] = 0,
    budget_latency_ms: Annotated[float, typer.Option(
        "--budget-latency-ms", help="Backbone latency from --lut; 0: none.")] = 0.0,
    lut: Annotated[Path, typer.Option("--lut", help="Table from `damo nas-lut`.")] = DEFAULT_LUT,
    generations: Annotated[int, typer.Option(
        help="Evolution rounds; 0 keeps the published structure.")] = 6,
    population: Annotated[int, typer.Option(help="Candidates kept.")] = 16,
    seed: Annotated[int, typer.Option(help="Same seed, same result.")] = 0,
    score: Annotated[str, typer.Option(help="analytic | forward")] = "analytic",
    block: Block = None,
    img_size: opt.ImgSize = None,
    warm_start: Annotated[bool, typer.Option(
        help="Seed the population with the published structure.")] = True,
) -> None:
    """Search a backbone under budgets; writes OUT (a model YAML) and the search's files."""
    import json

    from damo_core.steps.nas import run

    meta = run(model, out, budget_params_m=budget_params_m, budget_gflops=budget_gflops,
               budget_layers=budget_layers, budget_latency_ms=budget_latency_ms, lut=lut,
               generations=generations, population=population, seed=seed, score=score,
               block=block, img_size=img_size, warm_start=warm_start, progress=True)
    typer.echo(json.dumps(meta, indent=2))


@exit_on_user_error
def nas_lut(
    device: Annotated[str, typer.Option("--device", help="cpu")] = "cpu",
    block: Annotated[str, typer.Option("--block", help="res | csp | mob")] = "res",
    model: Annotated[str | None, typer.Option(
        "--model", help="Model whose options the ops take. \\[default: damoyolo_t for res, "
        "damoyolo_m for csp, damoyolo_ns for mob]")] = None,
    img_size: opt.ImgSize = None,
    threads: Annotated[int, typer.Option(help="Torch threads while timing.")] = 1,
    runs: Annotated[int, typer.Option(help="Repeats per op (the minimum is kept).")] = 5,
    precision: Annotated[str, typer.Option(
        "--precision", help="Arithmetic the ops are timed in, recorded in the table: fp32; "
        "bf16 (only on a CPU with AMX or AVX-512-BF16); auto (bf16 where native, else "
        "fp32).")] = "fp32",
    out: Annotated[Path | None, typer.Option("--out", help=(
        f"Table JSON to write. \\[default: {DEFAULT_LUT} for fp32, "
        f"{DEFAULT_LUT.with_name('lut_cpu_bf16.json')} for bf16]"))] = None,
) -> None:
    """Time every op class of the block's search space on this device (a minute or two)."""
    from damo_core.nas.latency_lut import measure_lut

    typer.echo(measure_lut(device, block, model, img_size, threads, runs, out, precision))
