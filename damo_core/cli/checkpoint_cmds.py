"""``damo checkpoint``: converting trusted older weights files to the safe format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from damo_core.cli.errors import exit_on_user_error
from damo_core.errors import UserInputError
from damo_core.models.checkpoint_format import upgrade_checkpoint

checkpoint_app = typer.Typer(help="Weights files: convert older checkpoints to the safe format.",
                             no_args_is_help=True)


@checkpoint_app.command("upgrade")
@exit_on_user_error
def upgrade(
    src: Annotated[Path, typer.Argument(help="A checkpoint you made or trust.")],
    out: Annotated[Path | None, typer.Option(help="Where to write (default: replace SRC).")] = None,
    trusted: Annotated[bool, typer.Option(
        "--trusted", help="Confirm that SRC is trusted: it is unpickled, which can run code.")
    ] = False,
) -> None:
    """Rewrite SRC so that it loads with torch.load(weights_only=True).

    Every other command refuses a file that needs unpickling. This one UNPICKLES SRC, which
    runs any code a hostile file carries: use it only on files you made or trust, and say so
    with --trusted.
    """
    if not trusted:
        raise UserInputError(f"{src}: 'damo checkpoint upgrade' unpickles the file, which runs any "
                             "code it carries; pass --trusted if you made it or trust it")
    typer.echo(f"upgraded {src} -> {upgrade_checkpoint(src, out)} (loads with weights_only=True)")
