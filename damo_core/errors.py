"""The project's own exception types: the line between "your input" and "our bug".

The CLI turns a :class:`DamoError` into one red line and exit code 2; any other exception is a
bug and keeps its traceback. So every error raised on purpose for something the user can fix
(a file, a field, a value, a missing backend) must be a ``DamoError``, and a plain
``ValueError`` from deep inside numpy or torch is no longer mistaken for bad input.

The subclasses also inherit the matching built-in (``ValueError``, ``FileNotFoundError``, ...)
so code and tests that catch the built-in keep working.
"""

from __future__ import annotations

__all__ = [
    "DamoError",
    "InputNotFoundError",
    "OutputExistsError",
    "UnavailableError",
    "UserInputError",
]


class DamoError(Exception):
    """Base of every error the project raises on purpose; its message is written for the user."""


class UserInputError(DamoError, ValueError):
    """Bad input: a file, a field or a value the user supplied and can correct."""


class InputNotFoundError(UserInputError, FileNotFoundError):
    """A path the user named does not exist (a ``FileNotFoundError`` for existing callers)."""


class OutputExistsError(UserInputError, FileExistsError):
    """An output the user named already exists and the command will not overwrite it."""


class UnavailableError(DamoError, RuntimeError):
    """A backend, GPU, server or package is missing: the user's machine, not a bug."""
