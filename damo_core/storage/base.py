"""What every store offers, and the errors it raises.

Why a tiny interface of our own instead of fsspec or boto3 everywhere: the pipeline needs six
operations on two backends (a local directory, an S3/MinIO bucket), and each failure must
become one line naming the bucket, endpoint or path -- a generic filesystem layer would leak
backend exceptions and retry policies into every caller.

Keys are ``/``-separated paths relative to the store's root (a directory, or a bucket plus
prefix). Writes are atomic: a reader sees the old object or the complete new one.
"""

from __future__ import annotations

import abc
import contextlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from damo_core.errors import InputNotFoundError, UserInputError

__all__ = ["Store", "StorageError", "StorageNotFoundError", "check_key"]


class StorageError(UserInputError):
    """A store cannot be reached or used (bad URI, unreachable endpoint, missing bucket).

    A :class:`~damo_core.errors.UserInputError` so that the CLI prints one line:
    the cause is the user's configuration or network, not a bug.
    """


class StorageNotFoundError(StorageError, InputNotFoundError):
    """The store is reachable but the key does not exist."""


def check_key(key: str) -> str:
    """Normalise a key; reject absolute keys and ``..`` (they would escape the store root)."""
    if not isinstance(key, str) or not key.strip("/"):
        raise StorageError(f"storage key must be a non-empty relative path, got {key!r}")
    parts = PurePosixPath(key.strip("/")).parts
    if ".." in parts:
        raise StorageError(f"storage key {key!r} must not contain '..'")
    return "/".join(p for p in parts if p != ".")


class Store(abc.ABC):
    """A place holding named byte objects: a local directory or an S3 bucket/prefix."""

    @abc.abstractmethod
    def uri(self, key: str = "") -> str:
        """The full URI of ``key`` (``/abs/dir/key`` or ``s3://bucket/prefix/key``)."""

    @abc.abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The whole object (for small files; use :meth:`open_read` for large ones)."""

    @abc.abstractmethod
    def write_bytes(self, key: str, data: bytes) -> str:
        """Write atomically; returns :meth:`uri` of the key."""

    @abc.abstractmethod
    def put_file(self, local: str | Path, key: str) -> str:
        """Upload/copy a local file atomically; returns :meth:`uri` of the key."""

    @abc.abstractmethod
    def get_file(self, key: str, local: str | Path) -> Path:
        """Download/copy an object to a local path (written atomically)."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix`` (recursive), sorted, relative to the store root."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` names an existing object."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error (deleting is idempotent)."""

    @abc.abstractmethod
    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A binary stream over the object, read incrementally (never loaded whole)."""

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def write_text(self, key: str, text: str) -> str:
        return self.write_bytes(key, text.encode("utf-8"))

    def child(self, key: str) -> Store:
        """A store rooted at ``key`` below this one (same backend and credentials)."""
        return _open_child(self, check_key(key))


def _open_child(store: Store, key: str) -> Store:
    from damo_core.storage.factory import open_store

    return open_store(store.uri(key))

