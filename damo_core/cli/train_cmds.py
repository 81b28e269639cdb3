"""``damo train``, ``damo evaluate`` (``eval``, ``val``) and ``damo predict``: shells over the
train and evaluate steps (ultralytics-style ``key=value`` settings) and the predictor."""

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
    run_id: opt.RunId = None,
    nodes: opt.Nodes = 1,
    gpus_per_node: opt.GpusPerNode = 1,
    overrides: opt.Overrides = None,
) -> None:
    """Train a detector; writes last.pt, best.pt, results.csv/png, metrics.json into OUT."""
    from damo_core.steps._training import Placement
    from damo_core.steps.train import run

    settings = opt.settings_from_cli(overrides, epochs=epochs, batch=batch, img_size=img_size)
    meta = run(data, out, model=model, settings=settings, preset=preset, weights=weights,
               resume=resume, backbone=backbone, run_id=run_id,
               placement=Placement(nodes, gpus_per_node), progress=True)
    typer.echo(summary(meta, out))


def summary(meta: dict[str, Any], out: Path) -> str:
    """One JSON line a script can parse: the best checkpoint's AP and where it is."""
    return json.dumps({"model": meta["model_name"], "AP": meta["AP"], "AP50": meta["AP50"],
                       "epochs": meta["epochs"], "best": str(out / "best.pt")})


@exit_on_user_error
def evaluate(
    weights: opt.Weights,
    data: opt.Data,
    split: Annotated[str, typer.Option(help="train or val")] = "val",
    img_size: opt.ImgSize = None,
    out: Annotated[Path | None, typer.Option(
        help="Write the metrics JSON (per-class AP too) here. [default: none]")] = None,
    run_id: opt.RunId = None,
) -> None:
    """COCO AP, AP50, AP75, APs/m/l and per-class AP of a trained checkpoint."""
    check_img_size(img_size)
    from damo_core.steps.evaluate import run

    metrics = run(weights, data, split=split, img_size=img_size, out_json=out, run_id=run_id,
                  progress=True)
    typer.echo(json.dumps(metrics, indent=2))


@exit_on_user_error
def predict(
    weights: opt.Weights,
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option(help="Directory for annotated images.")] = Path(
        "runs/predict"),
    conf: Annotated[float, typer.Option(help="Score threshold.")] = 0.3,
) -> None:
    """Detect objects in images and save copies with the boxes drawn."""
    if not 0.0 <= conf <= 1.0:  # false for NaN too, which would keep or drop everything
        from damo_core.errors import UserInputError

        raise UserInputError(f"--conf must be a score threshold in [0, 1], got {conf}")
    from damo_core.eval import annotated_paths, draw_detections
    from damo_core.eval import predict as run_predict
    from damo_core.steps._common import weights_file
    from damo_core.train import load_trained

    model, meta = load_trained(weights_file(weights))
    detections = run_predict(model, images, image_size=meta["image_size"], score_threshold=conf)
    for path, dets, target in zip(images, detections, annotated_paths(images, out), strict=True):
        draw_detections(path, dets, meta["class_names"], target)
        typer.echo(f"{path}: {len(dets)} objects -> {target}")
