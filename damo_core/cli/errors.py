"""Turn the library's user-facing errors into one clear line and exit code 2, not a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from damo_core.export.common import BackendUnavailableError

P = ParamSpec("P")
R = TypeVar("R")

# ValueError subclasses raised for bad input (configs, checkpoints, datasets, structures) carry
# messages written for users; anything else is a bug and keeps its traceback.
# A missing GPU or backend package is the user's machine, not a bug, so it is one too.
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, FileNotFoundError, FileExistsError,
                                            BackendUnavailableError)


def exit_on_user_error(fn: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None

    return wrapper
