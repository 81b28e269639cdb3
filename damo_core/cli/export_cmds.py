"""``damo export`` and ``damo benchmark`` (``bench``): shells over the export and benchmark
steps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from damo_core.cli import options as opt
from damo_core.cli.errors import exit_on_user_error

NumClasses = Annotated[int | None, typer.Option(
    "--num-classes", help="Classes of a --model. [default: the config's]")]


@exit_on_user_error
def export(
    weights: opt.OptionalWeights = None,
    model: opt.OptionalModel = None,
    fmt: Annotated[str, typer.Option("--format", "-f",
                                     help="onnx | openvino | tensorrt")] = "onnx",
    end2end: Annotated[bool, typer.Option("--end2end", help="Append NMS to the graph.")] = False,
    half: Annotated[bool, typer.Option("--half", help="FP16 (onnx needs --device cuda).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 PTQ (openvino, tensorrt).")] = False,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="fp32 | int8 | bf16 | auto, instead of --half/--int8. bf16 "
        "(openvino): FP32 weights run with the BF16 hint. auto (openvino, needs --data): "
        "export, time and evaluate every precision this CPU runs, keep the fastest within the "
        "accuracy limits. With --data, BF16/INT8 val AP50 is measured beside FP32's.",
        show_default=False)] = None,
    data: opt.OptionalData = None,
    img_size: opt.ImgSize = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch")] = False,
    device: Annotated[str, typer.Option("--device", help="Trace device (onnx).")] = "cpu",
    opset: Annotated[int | None, typer.Option(
        "--opset", help="ONNX opset, 11..20 (onnx only). [default: 17]")] = None,
    num_classes: NumClasses = None,
    out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("runs/export"),
    mlflow: opt.Mlflow = None,
    mlflow_experiment: opt.MlflowExperiment = opt.DEFAULT_EXPERIMENT,
    run_id: opt.MlflowRunId = None,
) -> None:
    """Export the fused (reparameterised) detector; prints the written file's path. With
    --mlflow, the exported files go to the model's MLflow run too."""
    from damo_core.steps.export import run

    meta = run(weights, out, fmt=fmt, model=model, num_classes=num_classes, img_size=img_size,
               half=half, int8=int8, data=data, dynamic_batch=dynamic_batch, end2end=end2end,
               device=device, opset=opset, run_id=run_id, mlflow_uri=mlflow or "",
               mlflow_experiment=mlflow_experiment, precision=precision)
    for row in meta.get("precision_candidates", []):
        typer.echo(f"{row['precision']:>5}: p50 {row['p50_ms']:.2f} ms, val AP50 "
                   f"{row['AP50']:.4f}, AP {row['AP']:.4f}", err=True)
    if "precision_reason" in meta:
        typer.echo(f"chose {meta['precision_reason']}", err=True)
    if "val_AP50" in meta:
        typer.echo(f"val AP50 {meta['val_AP50']:.4f} ({meta['precision']}) vs "
                   f"{meta['fp32_val_AP50']:.4f} (fp32)", err=True)
    typer.echo(meta["path"])


@exit_on_user_error
def benchmark(
    source: Annotated[Path | None, typer.Argument(
        help="An export directory (`damo export --out`), timed in its format. [default: "
        "none; give --weights or --model]")] = None,
    weights: opt.OptionalWeights = None,
    model: opt.OptionalModel = None,
    formats: Annotated[list[str] | None, typer.Option(
        "--format", "-f", help="FORMAT[:PRECISION], repeatable: pytorch, onnx, openvino, "
        "openvino:fp16, openvino:bf16, openvino:int8, tensorrt:fp16 ... [default: pytorch, "
        "onnx, openvino; an export: its own]")] = None,
    img_size: opt.ImgSize = None,
    batch: Annotated[int, typer.Option("--batch")] = 1,
    runs: Annotated[int, typer.Option("--runs")] = 30,
    warmup: Annotated[int, typer.Option("--warmup")] = 5,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="Same for all. [default: the runtime's]")] = None,
    data: opt.OptionalData = None,
    num_classes: NumClasses = None,
    out: Annotated[Path, typer.Option(
        "--out", help="Report JSON path, or a directory for MODEL_SIZE_bBATCH.json.")] = Path(
        "runs/bench"),
    run_id: opt.RunId = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="An export's runtime precision: bf16 runs a float OpenVINO IR with "
        "the BF16 hint (CPUs with AMX or AVX-512-BF16). [default: the export's own]",
        show_default=False)] = None,
) -> None:
    """Latency of the deploy graph (no NMS) per runtime, with speed-up vs PyTorch eager."""
    from damo_core.bench.report import rows_table
    from damo_core.errors import UserInputError
    from damo_core.steps.benchmark import run

    if source is not None and (weights is not None or model is not None):
        raise UserInputError("benchmark either an export directory or --weights/--model, "
                             "not both")
    target = source if source is not None else weights
    report = run(target, model=model, formats=formats, img_size=img_size, batch=batch,
                 runs=runs, warmup=warmup, threads=threads, data=data, num_classes=num_classes,
                 out_json=out, run_id=run_id, precision=precision)
    Console(width=160).print(rows_table(report["rows"], report["host"]))
    typer.echo(f"report: {report['report']}")
