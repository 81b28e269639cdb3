"""``damo predict``: a trained checkpoint on image files or a dataset split, annotated copies
written beside a detections file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from damo_core.cli import options as opt
from damo_core.cli.errors import exit_on_user_error

if TYPE_CHECKING:
    from torch import nn


@exit_on_user_error
def predict(
    weights: opt.Weights,
    images: Annotated[list[Path] | None, typer.Argument(
        help="Image files (or --data).", show_default=False)] = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="Predict on a dataset split instead of files: a manifest directory "
        "(local or s3://), dataset.yaml or data.yaml, as for training. [default: none]")] = None,
    split: Annotated[str, typer.Option(help="Split of --data: train or val.")] = "val",
    limit: Annotated[int | None, typer.Option(
        help="Only the first N images of --data's split. [default: all]")] = None,
    out: Annotated[Path, typer.Option(
        help="Directory for annotated images (and detections.jsonl with --data).")] = Path(
        "runs/predict"),
    conf: Annotated[float | None, typer.Option(
        help="Score threshold. Default: the best-F1 confidence the checkpoint's training "
             "measured on its val split, else 0.3.")] = None,
) -> None:
    """Detect objects in images, or in a dataset split with --data (also writing
    detections.jsonl), and save copies with the boxes drawn."""
    _check_predict_args(conf, images, data, limit)
    from damo_core.eval.curves import checkpoint_threshold
    from damo_core.steps._common import weights_file
    from damo_core.train import load_trained

    model, meta = load_trained(weights_file(weights))
    threshold = checkpoint_threshold(meta) if conf is None else conf
    if data is None:
        _predict_files(model, meta, images or [], out, threshold)
    else:
        _predict_data(model, meta, data, split, limit, out, threshold)
    if conf is None:  # after the work, so a bad input's error stays the first line
        typer.echo(f"score threshold {threshold:.2f}, the checkpoint's default (--conf to "
                   "change)", err=True)


def _check_predict_args(conf: float | None, images: list[Path] | None, data: str | None,
                        limit: int | None) -> None:
    """Refuse a bad command line before the checkpoint is loaded."""
    from damo_core.errors import UserInputError

    # the range check is false for NaN too, which would keep or drop everything
    if conf is not None and not 0.0 <= conf <= 1.0:
        raise UserInputError(f"--conf must be a score threshold in [0, 1], got {conf}")
    if bool(images) == (data is not None):
        raise UserInputError("predict takes image files or --data DATASET, exactly one of the "
                             "two")
    if limit is not None and data is None:
        raise UserInputError("--limit applies to --data only")


def _predict_files(model: nn.Module, meta: dict[str, Any], images: list[Path], out: Path,
                   conf: float) -> None:
    """``predict FILES``: an annotated copy of each file, one line per file on stdout."""
    from damo_core.eval import annotated_paths, draw_detections
    from damo_core.eval import predict as run_predict

    detections = run_predict(model, images, image_size=meta["image_size"], score_threshold=conf)
    for path, dets, target in zip(images, detections, annotated_paths(images, out), strict=True):
        draw_detections(path, dets, meta["class_names"], target)
        typer.echo(f"{path}: {len(dets)} objects -> {target}")


def _predict_data(model: nn.Module, meta: dict[str, Any], data: str, split: str,
                  limit: int | None, out: Path, conf: float) -> None:
    """``predict --data``: the split read through its manifest (S3 images too), annotated
    copies and detections.jsonl written by :func:`damo_core.eval.annotate_dataset`."""
    from damo_core.data.resolve import open_split
    from damo_core.eval import annotate_dataset

    jsonl = annotate_dataset(model, open_split(data, split), out,
                             class_names=meta["class_names"], image_size=meta["image_size"],
                             score_threshold=conf, limit=limit, progress=True)
    typer.echo(f"annotated images in {out}, detections in {jsonl}")
