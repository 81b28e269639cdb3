"""A directory on the local filesystem as a :class:`~damo_core.storage.base.Store`."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import BinaryIO

from damo_core.atomic import atomic_path, atomic_write_bytes
from damo_core.storage.base import StorageError, StorageNotFoundError, Store, check_key

__all__ = ["LocalStore"]


class LocalStore(Store):
    """Keys are paths below ``root``; writes go through :mod:`damo_core.atomic`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"{self.root}: store root exists and is not a directory")

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _existing(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise StorageNotFoundError(f"{path}: no such file in store {self.root}")
        return path

    def uri(self, key: str = "") -> str:
        return str(self._path(key)) if key else str(self.root)

    def read_bytes(self, key: str) -> bytes:
        return self._existing(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> str:
        atomic_write_bytes(self._path(key), data)
        return self.uri(key)

    def put_file(self, local: str | Path, key: str) -> str:
        src = Path(local)
        if not src.is_file():
            raise StorageNotFoundError(f"{src}: local file to store does not exist")
        with atomic_path(self._path(key)) as tmp:
            shutil.copyfile(src, tmp)
        return self.uri(key)

    def get_file(self, key: str, local: str | Path) -> Path:
        src = self._existing(key)
        with atomic_path(local) as tmp:
            shutil.copyfile(src, tmp)
        return Path(local)

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix.strip("/") else self.root
        if base.is_file():
            return [check_key(prefix)]
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        return self._existing(key).open("rb")
