"""Errors of the serving side, each a subclass of what the CLI already turns into one line.

Why subclasses of the shared user errors: ``damo infer`` and ``damo serve`` are wrapped by
:func:`damo_core.cli.errors.exit_on_user_error`, so a missing file, a wrong model name or a
server that is down becomes one readable line and exit code 2 instead of a gRPC traceback.
"""

from __future__ import annotations

from typing import Any

from damo_core.errors import DamoError, UnavailableError, UserInputError
from damo_core.export.common import BackendUnavailableError


class NotAnImageError(UserInputError):
    """An input file that no image decoder understands; the message names the file."""


class UnknownModelError(UserInputError):
    """The server has no ready model of that name; the message lists the ones it has."""


class RequestRejectedError(UserInputError):
    """The server answered a request with an error (e.g. an image it could not decode)."""


class ServerUnavailableError(BackendUnavailableError):
    """No Triton server answers at the URL (down, wrong port); the message names the URL."""


class AdminKeyError(UserInputError):
    """The server refused its model-repository API: no admin key or a wrong one. A user can
    fix that (the message names the env var to set), so the CLI prints one line for it."""


class TritonStartError(UnavailableError):
    """The local ``tritonserver`` exited or did not become ready in time (log tail inside)."""


class DeployError(DamoError, RuntimeError):
    """A new version failed to load or to answer and was rolled back.

    ``result`` is the deployment record (model, failed version, version still serving), so
    the caller can log what happened without parsing the message.
    """

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result
