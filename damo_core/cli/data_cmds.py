"""Dataset commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from damo_core.cli.errors import exit_on_user_error

data_app = typer.Typer(help="Datasets: the bundled synthetic set, readers, unification.",
                       no_args_is_help=True)


@data_app.command("synth")
@exit_on_user_error
def synth(
    out: Annotated[Path, typer.Option(help="Output directory (empty or new, unless --force).")],
    classes: Annotated[int, typer.Option(help="Number of object kinds.")] = 4,
    images: Annotated[int, typer.Option(help="Total images (train + val).")] = 64,
    img_size: Annotated[int, typer.Option("--img-size", help="Image side in pixels.")] = 256,
    val_fraction: Annotated[float, typer.Option(help="Share of images in the val split.")] = 0.25,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing dataset.")] = False,
) -> None:
    """Write the deterministic synthetic detection set (JPEGs + COCO JSON + dataset.yaml)."""
    from damo_core.data.synth import generate

    yaml_path = generate(out, num_classes=classes, num_images=images, image_size=img_size,
                         val_fraction=val_fraction, seed=seed, overwrite=force)
    typer.echo(f"dataset written: {yaml_path}")
