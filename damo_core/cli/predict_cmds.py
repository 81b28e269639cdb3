"""``damo predict``: a trained checkpoint (fused) or an export on image files, folders, glob
patterns and videos, or on a dataset split; annotated copies written beside a detections
file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

from damo_core.cli import options as opt
from damo_core.cli.errors import exit_on_user_error

if TYPE_CHECKING:
    from torch import nn

    from damo_core.eval.sources import MediaFile, OutputPlan
    from damo_core.eval.video import VideoInfo


@exit_on_user_error
def predict(
    weights: opt.InferWeights,
    sources: Annotated[list[str] | None, typer.Argument(
        help="Image files, directories (searched recursively), glob patterns (quote them: "
             "'shots/**/*.jpg') and video files (.mp4, .avi, .mov, .mkv, .webm...); or --data.",
        show_default=False)] = None,
    data: Annotated[str | None, typer.Option(
        "--data", help="Predict on a dataset split instead of files: a manifest directory "
        "(local or s3://), dataset.yaml or data.yaml, as for training. [default: none]")] = None,
    split: Annotated[str, typer.Option(help="Split of --data: train or val.")] = "val",
    limit: Annotated[int | None, typer.Option(
        help="Only the first N images of --data's split. [default: all]")] = None,
    out: Annotated[Path, typer.Option(
        help="Directory for the annotated images (mirroring the input folders), "
             "detections.jsonl, and per video an annotated .mp4 and a .jsonl with one line per "
             "frame. Inputs are never overwritten: results of a folder or pattern that would "
             "land on its own files are refused, a file named on its own gets NAME_2.")] = Path(
        "runs/predict"),
    conf: Annotated[float | None, typer.Option(
        help="Score threshold. Default: the best-F1 confidence the checkpoint's training "
             "measured on its val split, else 0.3.")] = None,
    precision: opt.InferPrecision = None,
    calib: Annotated[str | None, typer.Option(
        help="Dataset (as for training) whose train images calibrate --precision int8 from a "
             "checkpoint. [default: --data]", show_default=False)] = None,
) -> None:
    """Detect objects in images, folders, glob patterns and videos, or in a dataset split with
    --data; save copies with the boxes drawn and the detections as JSON lines."""
    _check_predict_args(conf, sources, data, limit)
    from damo_core.bench.precision import check_precision
    from damo_core.eval.curves import checkpoint_threshold
    from damo_core.eval.engine import is_export, open_inference_model
    from damo_core.steps._common import weights_file

    if precision is not None:
        check_precision(precision, field="--precision")
    if not is_export(weights):
        weights_file(weights)  # a missing checkpoint is the first thing said
    # every source, video and output name checked before the model is loaded
    media = _plan_media(sources or [], out) if data is None else None
    with open_inference_model(weights, precision=precision, data=calib or data) as (model, meta):
        threshold = checkpoint_threshold(meta) if conf is None else conf
        if media is None:
            _predict_data(model, meta, data, split, limit, out, threshold)
        else:
            _predict_media(model, meta, media, threshold)
    if conf is None:  # after the work, so a bad input's error stays the first line
        typer.echo(f"score threshold {threshold:.2f}, the model's default (--conf to "
                   "change)", err=True)


def _check_predict_args(conf: float | None, sources: list[str] | None, data: str | None,
                        limit: int | None) -> None:
    """Refuse a bad command line before the checkpoint is loaded."""
    from damo_core.errors import UserInputError

    # the range check is false for NaN too, which would keep or drop everything
    if conf is not None and not 0.0 <= conf <= 1.0:
        raise UserInputError(f"--conf must be a score threshold in [0, 1], got {conf}")
    if bool(sources) == (data is not None):
        raise UserInputError("predict takes image files or --data DATASET, exactly one of the "
                             "two (files include directories, patterns and videos)")
    if limit is not None and data is None:
        raise UserInputError("--limit applies to --data only")


class _Media(NamedTuple):
    files: list[MediaFile]
    plan: OutputPlan
    videos: list[VideoInfo]


def _plan_media(sources: list[str], out: Path) -> _Media:
    """The sources expanded, every output named (refusing one over an input) and every video
    opened, so each of these mistakes is reported before anything else happens."""
    from damo_core.eval.media import probe_videos
    from damo_core.eval.sources import expand_sources, plan_outputs

    files = expand_sources(sources)
    return _Media(files, plan_outputs(files, out), probe_videos(files))


def _predict_media(model: nn.Module, meta: dict[str, Any], media: _Media, conf: float) -> None:
    """``predict SOURCES``: annotated copies and detection lines, one stdout line per image
    and per video."""
    from tqdm import tqdm

    from damo_core.eval.media import ModelDetector, annotate_media

    def report(item: MediaFile, dets: Any, target: Path | None) -> None:
        tqdm.write(f"{item.path}: {len(dets)} objects -> {target}")  # keeps the bar intact

    detector = ModelDetector(model, image_size=meta["image_size"], score_threshold=conf)
    plan = media.plan
    videos = annotate_media(detector, media.files, plan, meta["class_names"], on_image=report,
                            videos_probed=media.videos)
    for v in videos:
        typer.echo(f"{v.source}: {v.frames} frames -> {v.video}, detections in {v.jsonl}")
    if plan.jsonl is not None:
        typer.echo(f"detections of {len(plan.images)} images in {plan.jsonl}")


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
