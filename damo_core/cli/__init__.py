"""The ``damo`` command line: one sub-command per pipeline step, each a thin call into damo_core."""

from damo_core.cli.app import app

__all__ = ["app"]
