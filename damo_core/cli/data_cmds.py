"""``damo unify`` (a shell over the unify step) and the dataset tools under ``damo data``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from damo_core.cli.errors import exit_on_user_error

data_app = typer.Typer(help="Datasets: the bundled synthetic set, readers, unification.",
                       no_args_is_help=True)
ObjectScaleOpt = Annotated[str, typer.Option(
    help="Synthetic: object sizes, coco (COCO's small/medium/large spread) or coarse (areas "
    "drawn between 3 % and 26 % of the image, for short runs at small inputs).")]


@data_app.command("synth")
@exit_on_user_error
def synth(
    out: Annotated[Path, typer.Option(help="Output directory (empty or new, unless --force).")],
    classes: Annotated[int, typer.Option(help="Number of object kinds.")] = 4,
    images: Annotated[int, typer.Option(help="Total images (train + val).")] = 64,
    img_size: Annotated[int, typer.Option("--img-size", help="Image side in pixels.")] = 256,
    val_fraction: Annotated[float, typer.Option(help="Share of images in the val split.")] = 0.25,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    object_scale: ObjectScaleOpt = "coco",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing dataset.")] = False,
) -> None:
    """Write the deterministic synthetic detection set (JPEGs + COCO JSON + dataset.yaml)."""
    from damo_core.data.synth import generate

    yaml_path = generate(out, num_classes=classes, num_images=images, image_size=img_size,
                         val_fraction=val_fraction, seed=seed, overwrite=force,
                         object_scale=object_scale)
    typer.echo(f"dataset written: {yaml_path}")


SourceOpt = Annotated[list[str], typer.Option(
    "--source", help="NAME[:FORMAT]=URI[,images=URI][,classes=URI][,split=train|val]; FORMAT: "
    "coco, o365, oi, yolo, voc, ultralytics (default: NAME). URI: local path or "
    "s3://bucket/key.")]


@data_app.command("labelspace")
@exit_on_user_error
def labelspace(
    out: Annotated[str, typer.Option(help="Mapping CSV to write (local path or s3://).")],
    source: SourceOpt = [],  # noqa: B006 (typer reads the default, never mutates it)
    preset: Annotated[str | None, typer.Option(help="Write a shipped label space instead: "
                                                    "coco-o365-oi.")] = None,
) -> None:
    """Propose a unified label space from sources (or write a preset) as an editable CSV."""
    from damo_core.data.labelspace import write_label_space

    result = write_label_space(out, sources=source, preset=preset)
    typer.echo(" ".join(f"{k}={v}" for k, v in result.items()))


Alpha = Annotated[float, typer.Option(help="Source smoothing: weight ~ size^alpha.")]
RfsThreshold = Annotated[float, typer.Option(help="Repeat-factor threshold t.")]
SkipInvalid = Annotated[bool, typer.Option("--skip-invalid", help="Drop and count bad entries "
                                           "instead of stopping.")]


@exit_on_user_error
def unify(
    source: Annotated[list[str], typer.Option(
        "--source", help="synthetic, a dataset.yaml or data.yaml, or (repeatable) "
        "NAME[:FORMAT]=URI[,images=URI][,classes=URI][,split=train|val] sources unified over "
        "--label-space.")],
    out: Annotated[str, typer.Option(help="Manifest directory to write (or s3://bucket/prefix)."
                                     )],
    label_space: Annotated[str, typer.Option(
        help="Mapping CSV (path or s3://) or preset:NAME, for NAME=URI sources. [default: "
        "proposed from the class names]")] = "",
    classes: Annotated[int, typer.Option(help="Synthetic: number of object kinds.")] = 4,
    images: Annotated[int, typer.Option(help="Synthetic: total images.")] = 160,
    img_size: Annotated[int, typer.Option("--img-size", "--imgsz",
                                          help="Synthetic: image side in pixels.")] = 256,
    seed: Annotated[int, typer.Option(help="Same seed, same data and split.")] = 0,
    object_scale: ObjectScaleOpt = "coco",
    val_fraction: Annotated[float, typer.Option(help="Unified: share of images in val.")] = 0.05,
    alpha: Alpha = 0.5,
    rfs_threshold: RfsThreshold = 0.001,
    class_aware: Annotated[bool, typer.Option(
        "--class-aware/--no-class-aware", help="Repeat images of rare classes.")] = True,
    sampling: Annotated[bool, typer.Option(
        "--sampling/--no-sampling", help="Train by the sampling weights (else every image "
        "once per epoch).")] = True,
    skip_invalid: SkipInvalid = False,
    report: Annotated[Path | None, typer.Option(
        help="Also write the unification page (Markdown) here.")] = None,
) -> None:
    """The training data as one manifest directory in OUT, as the pipeline's unify step."""
    import json

    from damo_core.steps.unify import run

    settings = {"enabled": sampling, "alpha": alpha, "class_aware": class_aware,
                "rfs_threshold": rfs_threshold, "val_fraction": val_fraction}
    meta = run(source, out, label_space=label_space, num_classes=classes, num_images=images,
               image_size=img_size, seed=seed, object_scale=object_scale, sampling=settings,
               skip_invalid=skip_invalid,
               report_md=report)
    typer.echo(json.dumps(meta, indent=2))


@data_app.command("unify")
@exit_on_user_error
def manifests(
    source: SourceOpt,
    label_space: Annotated[str, typer.Option(help="Mapping CSV (path or s3://) or "
                                                  "preset:NAME.")],
    out: Annotated[str, typer.Option(help="Output directory or s3://bucket/prefix.")],
    shard_images: Annotated[int, typer.Option(help="Images per Parquet shard.")] = 200_000,
    alpha: Alpha = 0.5,
    rfs_threshold: RfsThreshold = 0.001,
    skip_invalid: SkipInvalid = False,
) -> None:
    """Unify NAME=URI sources into sharded Parquet manifests, label_space.json, counts and
    plots (`damo unify` is the pipeline's step over the same code, which also takes
    synthetic or one dataset.yaml/data.yaml)."""
    from damo_core.data.unify import unify as run_unify

    result = run_unify(source, label_space, out, shard_images=shard_images, alpha=alpha,
                       rfs_threshold=rfs_threshold, skip_invalid=skip_invalid)
    typer.echo("\n".join(result.report_lines()))
