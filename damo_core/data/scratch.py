"""Scratch directories that a killed run cannot leave behind for good.

``tempfile.TemporaryDirectory`` removes its directory on return and on exceptions, but not
when the process is killed (SIGKILL, an OOM kill, a pre-empted pod): the directory stays,
and staging directories hold megabytes each. Here every scratch directory's name records its
owner (``<prefix><host>-<pid>-<random>``), and each new run of the same command first sweeps
the directories of that prefix whose owner is gone:

* same host, owning pid no longer running: removed (the pid cannot be ours: it is dead);
* another host (a shared volume) or a name without an owner (older releases): removed only
  when untouched for :data:`STALE_AFTER_S`, since their owner may still be running.

Live runs on this host are never touched, so two exports into one directory can overlap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STALE_AFTER_S", "scratch_dir", "sweep_stale"]

STALE_AFTER_S = 6 * 3600.0


def host_tag() -> str:
    """Eight hex digits naming this host (hostnames may hold '-', which the name splits on)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def pid_alive(pid: int) -> bool:
    """Whether the process that owns a leftover (scratch dir, staging dir, journal) runs."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


def _is_stale(path: Path, prefix: str, now: float) -> bool:
    match = re.fullmatch(re.escape(prefix) + r"([0-9a-f]{8})-(\d+)-.*", path.name)
    if match is not None and match.group(1) == host_tag():
        return not pid_alive(int(match.group(2)))
    try:
        return now - path.lstat().st_mtime > STALE_AFTER_S
    except FileNotFoundError:
        return False


def sweep_stale(parent: str | Path, prefix: str) -> list[Path]:
    """Remove ``parent/<prefix>*`` directories whose owner is gone; returns what went."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    removed = []
    now = time.time()
    for path in parent.glob(f"{prefix}*"):
        if path.is_dir() and not path.is_symlink() and _is_stale(path, prefix, now):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def scratch_dir(parent: str | Path | None, prefix: str) -> Iterator[str]:
    """A temporary directory under ``parent`` (system temp dir if None) named after this
    process, removed on return or exception; stale ones of the same prefix go first."""
    root = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    sweep_stale(root, prefix)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{host_tag()}-{os.getpid()}-",
                                     dir=root) as tmp:
        yield tmp
