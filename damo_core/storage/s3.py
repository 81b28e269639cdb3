"""An S3 / MinIO bucket (optionally below a prefix) as a :class:`~damo_core.storage.base.Store`.

Endpoint and credentials come from the environment, as every S3 tool reads them:
``DAMO_S3_ENDPOINT`` (ours, wins) or ``AWS_ENDPOINT_URL`` such as ``http://minio:9000`` (no
endpoint means AWS itself), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN`` and ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.

Why bounded timeouts and few retries: a wrong endpoint should fail in seconds with a message
naming it, not hang a pipeline step for minutes inside urllib3's default retry loop.
Atomicity: S3 makes an object visible only once its PUT (or multipart upload) completes, so
a crashed upload never leaves a partial object under the key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from damo_core.atomic import atomic_path
from damo_core.storage.base import StorageError, StorageNotFoundError, Store, check_key

__all__ = ["S3Store", "endpoint_from_env"]

T = TypeVar("T")
_ENDPOINT_VARS = ("DAMO_S3_ENDPOINT", "AWS_ENDPOINT_URL")
_MISSING_CODES = {"NoSuchKey", "NotFound", "NoSuchObject"}
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0
# Connections kept open per host. urllib3 keeps one by default, so the blob cache's prefetch
# threads (4) and the reader sharing a client closed and reopened connections, logging
# "Connection pool is full, discarding connection" dozens of times per training.
POOL_CONNECTIONS = 16


def endpoint_from_env() -> str:
    """The S3 endpoint URL from the environment (AWS when none is set)."""
    for var in _ENDPOINT_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return "https://s3.amazonaws.com"


def _client(endpoint: str) -> Minio:
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StorageError(
            f"S3 endpoint {endpoint!r} (from {' or '.join(_ENDPOINT_VARS)}) is not an "
            "http(s)://host[:port] URL"
        )
    http = urllib3.PoolManager(
        maxsize=POOL_CONNECTIONS,
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
    )
    env = os.environ
    return Minio(
        parts.netloc,
        access_key=env.get("AWS_ACCESS_KEY_ID"),
        secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
        session_token=env.get("AWS_SESSION_TOKEN"),
        secure=parts.scheme == "https",
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        http_client=http,
    )


class S3Store(Store):
    """Keys live at ``s3://bucket/prefix/key``; every failure names bucket and endpoint."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None) -> None:
        if not bucket:
            raise StorageError("S3 URI has no bucket name (expected s3://bucket/prefix)")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint or endpoint_from_env()
        self._minio = _client(self.endpoint)

    def __repr__(self) -> str:
        return f"S3Store({self.uri()!r}, endpoint={self.endpoint!r})"

    def _name(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, key: str, fn: Callable[[], T]) -> T:
        """Run one S3 request, turning client/network errors into one-line StorageErrors."""
        where = f"{what} {self.uri(key) if key else self.uri()} (endpoint {self.endpoint})"
        try:
            return fn()
        except S3Error as err:
            if err.code in _MISSING_CODES:
                raise StorageNotFoundError(f"{where}: no such object") from None
            if err.code == "NoSuchBucket":
                raise StorageError(f"{where}: bucket {self.bucket!r} does not exist") from None
            raise StorageError(f"{where}: S3 error {err.code}: {err.message}") from None
        except (urllib3.exceptions.HTTPError, MinioException, OSError) as err:
            raise StorageError(
                f"{where}: cannot reach bucket {self.bucket!r} at endpoint {self.endpoint}: "
                f"{type(err).__name__}: {err}"
            ) from None

    def uri(self, key: str = "") -> str:
        base = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{base}/{check_key(key)}" if key else base

    def read_bytes(self, key: str) -> bytes:
        with self.open_read(key) as stream:
            return self._call("read", key, stream.read)

    def write_bytes(self, key: str, data: bytes) -> str:
        import io

        self._call("write", key, lambda: self._minio.put_object(
            self.bucket, self._name(key), io.BytesIO(data), len(data)))
        return self.uri(key)

    def put_file(self, local: str | Path, key: str) -> str:
        src = Path(local)
        if not src.is_file():
            raise StorageNotFoundError(f"{src}: local file to upload does not exist")
        self._call("upload to", key,
                   lambda: self._minio.fput_object(self.bucket, self._name(key), str(src)))
        return self.uri(key)

    def get_file(self, key: str, local: str | Path) -> Path:
        with self.open_read(key) as stream, atomic_path(local) as tmp, tmp.open("wb") as out:
            self._call("download", key, lambda: shutil.copyfileobj(stream, out, 1 << 20))
        return Path(local)

    def list(self, prefix: str = "") -> list[str]:
        base = self._name(prefix) if prefix.strip("/") else self.prefix
        search = f"{base}/" if base else ""
        strip = len(f"{self.prefix}/") if self.prefix else 0

        def names() -> list[str]:
            objs = self._minio.list_objects(self.bucket, prefix=search, recursive=True)
            return [o.object_name[strip:] for o in objs if not o.is_dir]

        keys = self._call("list", prefix, names)
        if not keys and prefix.strip("/") and self.exists(prefix):
            return [check_key(prefix)]
        return sorted(keys)

    def exists(self, key: str) -> bool:
        try:
            self._call("stat", key, lambda: self._minio.stat_object(self.bucket, self._name(key)))
        except StorageNotFoundError:
            return False
        return True

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self._minio.remove_object(self.bucket, self._name(key)))

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        response = self._call("read", key,
                              lambda: self._minio.get_object(self.bucket, self._name(key)))
        try:
            yield response  # urllib3 response: a file-like object read on demand
        finally:
            response.close()
            response.release_conn()

    def ensure_bucket(self) -> None:
        """Create the bucket if missing (tests, first deployment); a no-op otherwise."""
        def make() -> None:
            if not self._minio.bucket_exists(self.bucket):
                self._minio.make_bucket(self.bucket)

        self._call("create bucket", "", make)
