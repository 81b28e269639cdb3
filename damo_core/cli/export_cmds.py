"""``damo export`` and ``damo bench``: deploy exports and side-by-side latency."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from damo_core.bench.latency import run_benchmarks
from damo_core.bench.report import side_by_side, write_report
from damo_core.cli.errors import exit_on_user_error
from damo_core.export.formats import export_model, load_source

P = ParamSpec("P")
R = TypeVar("R")

Weights = Annotated[Path | None, typer.Option(
    "--weights", help="Trained checkpoint (best.pt) from damo train; with --model, also "
    "reference .pth weights or a bare state dict of that model.")]
ModelName = Annotated[str | None, typer.Option(
    "--model", help="Zoo model name; alone: random init, for latency only (detections are "
    "noise).")]
NumClasses = Annotated[int | None, typer.Option(
    "--num-classes", help="Classes of a --model (default: the config's).")]
ImgSize = Annotated[int | None, typer.Option(
    "--img-size", help="Input size (default: the checkpoint's or the model's).")]
Data = Annotated[Path | None, typer.Option(
    "--data", help="dataset.yaml whose train images calibrate INT8.")]


@exit_on_user_error
def export(
    weights: Weights = None,
    model: ModelName = None,
    fmt: Annotated[str, typer.Option("--format", "-f",
                                     help="onnx | openvino | tensorrt")] = "onnx",
    end2end: Annotated[bool, typer.Option("--end2end", help="Append NMS to the graph.")] = False,
    half: Annotated[bool, typer.Option("--half", help="FP16 (onnx needs --device cuda).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 PTQ (openvino, tensorrt).")] = False,
    data: Data = None,
    img_size: ImgSize = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch")] = False,
    device: Annotated[str, typer.Option("--device", help="Trace device (onnx).")] = "cpu",
    opset: Annotated[int | None, typer.Option(
        "--opset", help="ONNX opset, 11..20 (default 17; onnx only).")] = None,
    num_classes: NumClasses = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/export"),
) -> None:
    """Export the fused (reparameterised) detector; prints the written file's path."""
    source = load_source(weights, model, num_classes)
    path = export_model(
        source.model, fmt, out, image_size=img_size or source.image_size, end2end=end2end,
        half=half, int8=int8, data=data, dynamic_batch=dynamic_batch,
        class_names=source.class_names, device=None if device == "cpu" else device,
        opset=opset)
    typer.echo(str(path))


@exit_on_user_error
def bench(
    weights: Weights = None,
    model: ModelName = None,
    targets: Annotated[list[str] | None, typer.Option(
        "--format", "-f", help="FORMAT[:PRECISION], repeatable: pytorch, onnx, openvino, "
        "openvino:fp16, openvino:int8, tensorrt:fp16 ...")] = None,
    img_size: ImgSize = None,
    batch: Annotated[int, typer.Option("--batch")] = 1,
    runs: Annotated[int, typer.Option("--runs")] = 50,
    warmup: Annotated[int, typer.Option("--warmup")] = 10,
    threads: Annotated[int | None, typer.Option("--threads", help="Same for all.")] = None,
    data: Data = None,
    num_classes: NumClasses = None,
    out: Annotated[Path | None, typer.Option("--out", help="Report JSON path.")] = None,
) -> None:
    """Latency of the deploy graph (no NMS) per runtime, with speed-up vs PyTorch eager."""
    source = load_source(weights, model, num_classes)
    size = img_size or source.image_size
    results = run_benchmarks(source.model, targets or ["pytorch", "onnx", "openvino"],
                             image_size=size, batch=batch, runs=runs, warmup=warmup,
                             threads=threads, data=data)
    Console(width=160).print(side_by_side(results))
    path = out or Path("runs/bench") / f"{source.model.name}_{size}_b{batch}.json"
    typer.echo(f"report: {write_report(results, path)}")
