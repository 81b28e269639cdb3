"""Exception type shared by every dataset reader and writer in :mod:`damo_core.data`.

One class (a :class:`~damo_core.errors.UserInputError`, hence a ``ValueError``) lets callers
-- the CLI, the trainer, tests -- catch "your data is broken" separately from programming
errors, while messages carry the specifics (file, image id, field, value) needed to fix the
data by hand.
"""

from __future__ import annotations

from damo_core.errors import UserInputError

__all__ = ["DatasetError"]


class DatasetError(UserInputError):
    """Raised when a dataset file, annotation or image is missing, malformed or unreadable."""
