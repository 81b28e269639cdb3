"""``damo train`` and ``damo evaluate`` (``eval``, ``val``): shells over the train and evaluate
steps (ultralytics-style ``key=value`` settings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from damo_core.cli import options as opt
from damo_core.cli.errors import check_img_size, exit_on_user_error


@exit_on_user_error
def train(
    model: opt.Model,
    data: opt.Data,
    out: Annotated[Path, typer.Option(help="Run directory for checkpoints and plots.")] = Path(
        "runs/train"),
    epochs: opt.Epochs = None,
    batch: opt.Batch = None,
    img_size: opt.ImgSize = None,
    preset: opt.Preset = None,
    weights: opt.InitWeights = None,
    resume: opt.Resume = False,
    backbone: Annotated[Path | None, typer.Option(
        "--backbone", help="TinyNAS structure file (e.g. from `damo nas`) replacing the "
        "model's backbone structure. [default: the model's]")] = None,
    run_id: opt.TrainRunId = None,
    nodes: opt.Nodes = 1,
    gpus_per_node: opt.GpusPerNode = 1,
    mlflow: opt.Mlflow = None,
    mlflow_experiment: opt.MlflowExperiment = opt.DEFAULT_EXPERIMENT,
    precision: opt.TrainPrecision = None,
    overrides: opt.Overrides = None,
) -> None:
    """Train a detector; writes last.pt, best.pt, results.csv/png, metrics.json into OUT."""
    from damo_core.steps._training import Placement
    from damo_core.steps.train import run

    settings = opt.settings_from_cli(overrides, epochs=epochs, batch=batch, img_size=img_size,
                                     cpu_precision=precision)
    meta = run(data, out, model=model, settings=settings, preset=preset, weights=weights,
               resume=resume, backbone=backbone, run_id=run_id,
               placement=Placement(nodes, gpus_per_node), progress=True,
               mlflow_uri=mlflow or "", mlflow_experiment=mlflow_experiment)
    typer.echo(summary(meta, out))


def summary(meta: dict[str, Any], out: Path) -> str:
    """One JSON line a script can parse: the best checkpoint's AP, the precision it trained
    in and where it is."""
    return json.dumps({"model": meta["model_name"], "AP": meta["AP"], "AP50": meta["AP50"],
                       "epochs": meta["epochs"], "precision": meta.get("train_precision"),
                       "best": str(out / "best.pt")})


@exit_on_user_error
def evaluate(
    weights: opt.InferWeights,
    data: opt.Data,
    split: Annotated[str, typer.Option(help="train or val")] = "val",
    img_size: opt.ImgSize = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the metrics JSON (per-class AP too) here. [default: none]")] = None,
    plots: Annotated[Path | None, typer.Option(
        help="Write the confusion matrix (JSON, PNG) and the precision-recall and "
        "F1-confidence plots into this directory. [default: none]")] = None,
    run_id: opt.RunId = None,
    precision: opt.InferPrecision = None,
) -> None:
    """COCO AP, AP50, AP75, APs/m/l, the best-F1 confidence threshold and per-class AP of a
    trained checkpoint (run fused) or an export: the per-class table (Markdown) on stderr,
    the metrics as JSON on stdout, so scripts can still parse stdout."""
    check_img_size(img_size)
    from damo_core.steps.evaluate import run

    metrics = run(weights, data, split=split, img_size=img_size, out_json=out, out_dir=plots,
                  run_id=run_id, progress=True, precision=precision)
    typer.echo(metrics.pop("per_class_table"), err=True)
    typer.echo(json.dumps(metrics, indent=2))
