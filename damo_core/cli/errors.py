"""Turn the library's user-facing errors into one clear line and exit code 2, not a traceback."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

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


def read_json(path: Path, what: str) -> Any:
    """A JSON file the user named on the command line; missing or malformed is one line."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None


def check_img_size(value: int | None, option: str = "--img-size") -> int | None:
    """An optional input side: positive and a multiple of 32 (the detectors' largest stride);
    0 must not silently mean "the default"."""
    if value is not None and (value <= 0 or value % 32):
        raise ValueError(f"{option} must be a positive multiple of 32, got {value}")
    return value
