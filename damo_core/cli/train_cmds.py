"""Training, evaluation and prediction commands (ultralytics-style ``key=value`` overrides)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from damo_core.cli.errors import check_img_size, exit_on_user_error


@exit_on_user_error
def train(
    model: Annotated[str, typer.Option(help="Zoo name (damoyolo_t ...) or a model YAML.")],
    data: Annotated[Path, typer.Option(help="dataset.yaml (see `damo data synth`).")],
    out: Annotated[Path, typer.Option(help="Run directory for checkpoints and plots.")] = Path(
        "runs/train"),
    epochs: Annotated[int | None, typer.Option(help="Total epochs.")] = None,
    batch: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", help="Input side.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML of training settings.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Initial weights (.pt/.pth).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    backbone: Annotated[Path | None, typer.Option(
        "--backbone", help="TinyNAS structure file (e.g. from `damo nas search`) replacing the "
        "model's backbone structure.")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(
        help="key=value training settings, e.g. lr_per_image=0.0002 augment.mosaic_prob=0")] = None,
) -> None:
    """Train a detector; writes last.pt, best.pt, results.csv/png, metrics.json into OUT."""
    from damo_core.train import load_train_config, parse_overrides
    from damo_core.train import train as run_train
    from damo_core.train.trainer import summary_line

    settings = parse_overrides(overrides or [])
    for key, value in (("epochs", epochs), ("batch", batch), ("img_size", img_size)):
        if value is not None:
            settings[key] = value
    if backbone is not None:
        from damo_core.nas.search import model_yaml_with_backbone

        model = str(model_yaml_with_backbone(model, backbone, out / "model.yaml"))
    result = run_train(model, data, out, load_train_config(config, settings), weights=weights,
                       resume=resume)
    typer.echo(summary_line(result))


@exit_on_user_error
def evaluate(
    weights: Annotated[Path, typer.Option(help="Checkpoint written by `damo train`.")],
    data: Annotated[Path, typer.Option(help="dataset.yaml")],
    split: Annotated[str, typer.Option(help="train or val")] = "val",
    img_size: Annotated[int | None, typer.Option("--img-size")] = None,
    out: Annotated[Path | None, typer.Option(help="Write metrics JSON here.")] = None,
) -> None:
    """COCO AP, AP50, AP75, APs/m/l and per-class AP of a trained checkpoint."""
    check_img_size(img_size)
    from damo_core.eval import evaluate as run_eval
    from damo_core.train import load_trained

    model, meta = load_trained(weights)
    result = run_eval(model, data, split=split, image_size=img_size or meta["image_size"])
    if out is not None:
        result.to_json(out)
    typer.echo(json.dumps({k: getattr(result, k) for k in
                           ("AP", "AP50", "AP75", "APs", "APm", "APl")}, indent=2))


@exit_on_user_error
def predict(
    weights: Annotated[Path, typer.Option(help="Checkpoint written by `damo train`.")],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    out: Annotated[Path, typer.Option(help="Directory for annotated images.")] = Path(
        "runs/predict"),
    conf: Annotated[float, typer.Option(help="Score threshold.")] = 0.3,
) -> None:
    """Detect objects in images and save copies with the boxes drawn."""
    if not 0.0 <= conf <= 1.0:  # false for NaN too, which would keep or drop everything
        raise ValueError(f"--conf must be a score threshold in [0, 1], got {conf}")
    from damo_core.eval import annotated_paths, draw_detections
    from damo_core.eval import predict as run_predict
    from damo_core.train import load_trained

    model, meta = load_trained(weights)
    detections = run_predict(model, images, image_size=meta["image_size"], score_threshold=conf)
    for path, dets, target in zip(images, detections, annotated_paths(images, out), strict=True):
        draw_detections(path, dets, meta["class_names"], target)
        typer.echo(f"{path}: {len(dets)} objects -> {target}")
