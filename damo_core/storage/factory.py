"""``open_store(uri)``: one entry point that picks the backend from the URI's scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from damo_core.storage.base import StorageError, Store
from damo_core.storage.local import LocalStore

__all__ = ["is_remote", "open_store", "split_uri"]


def is_remote(uri: str | Path) -> bool:
    """True for ``s3://`` URIs (anything else is a local path)."""
    return str(uri).startswith("s3://")


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageError(f"{uri!r} is not an s3://bucket[/prefix] URI")
    return parts.netloc, parts.path.strip("/")


def open_store(uri: str | Path, *, endpoint: str | None = None) -> Store:
    """A :class:`Store` for a local directory (path or ``file://``) or ``s3://bucket/prefix``.

    Nothing is contacted here; the first operation on an unreachable S3 endpoint raises a
    :class:`StorageError` naming the bucket and the endpoint. ``endpoint`` overrides the
    environment (``DAMO_S3_ENDPOINT`` / ``AWS_ENDPOINT_URL``).
    """
    text = str(uri)
    if is_remote(text):
        from damo_core.storage.s3 import S3Store  # minio is only needed for S3 URIs

        bucket, prefix = split_uri(text)
        return S3Store(bucket, prefix, endpoint=endpoint)
    if "://" in text and not text.startswith("file://"):
        raise StorageError(f"unsupported storage URI {text!r}: use a local path or s3://")
    return LocalStore(text.removeprefix("file://"))
