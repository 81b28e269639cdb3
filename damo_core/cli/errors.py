"""One line and exit code 2 for the project's own errors; a traceback and exit code 1 for bugs.

Only a :class:`~damo_core.errors.DamoError` is raised on purpose with a message written for the
user, so only it is shortened to one line. Anything else (a ``ValueError`` from deep inside numpy
or torch included) is a bug: hiding it as "bad input" would send the user hunting for a mistake
they did not make, so its traceback is printed with a request to report it.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from damo_core.errors import DamoError, UserInputError

P = ParamSpec("P")
R = TypeVar("R")

USER_ERROR_EXIT = 2  # the user can fix it: same code as a click usage error
BUG_EXIT = 1  # what Python itself exits with on an uncaught exception
BUG_HINT = ("this is a bug in damo-yolo-pipeline, not in your input; please report it with the "
            "traceback above")

# The CLI's own control flow (typer.Exit and typer.Abort are RuntimeErrors; a usage error such
# as typer.BadParameter a TyperException): typer turns each into its exit code and message, so
# they must pass through untouched.
_CLI_FLOW: tuple[type[Exception], ...] = (typer.Exit, typer.Abort, typer.TyperException)


def report_bug(err: Exception) -> None:
    """The full traceback (typer's pretty exceptions are off) and then the line saying whose
    fault it is, both on stderr so piped stdout (JSON, paths) stays clean."""
    traceback.print_exception(err)
    typer.secho(BUG_HINT, fg=typer.colors.RED, err=True)


def exit_on_user_error(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command: a :class:`DamoError` becomes ``error: <message>`` and exit code 2, any
    other exception its traceback, :data:`BUG_HINT` and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except DamoError as err:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
            raise typer.Exit(USER_ERROR_EXIT) from None
        except _CLI_FLOW:
            raise
        except Exception as err:  # noqa: BLE001 - every other exception is reported as a bug
            report_bug(err)
            raise typer.Exit(BUG_EXIT) from None

    return wrapper


def check_img_size(value: int | None, option: str = "--img-size") -> int | None:
    """An optional input side: positive and a multiple of 32 (the detectors' largest stride);
    0 must not silently mean "the default"."""
    if value is not None and (value <= 0 or value % 32):
        raise UserInputError(f"{option} must be a positive multiple of 32, got {value}")
    return value
