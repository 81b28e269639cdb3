"""Images where they lie: local paths as they are, ``s3://`` objects through a bounded disk cache.

Why a cache of our own: a training loader reads each image once per epoch from several
DataLoader workers on several ranks. Downloading every time makes S3 the bottleneck; copying
the dataset first needs disk nobody budgeted. So each object is downloaded once into a
directory shared by every process on the host and evicted least-recently-used past a limit.

Layout under the root::

    .lock         flock(2) target: insertion, eviction and the running total go under it
    state.json    {"total_bytes": N}, the running total (rewritten atomically under the lock)
    tmp/          downloads in progress, named <hash>.<host>-<pid>-<thread>.part
    ab/<hash>.jpg entries: a hash of the URI plus the key's suffix (decoders look at it)

* Recency is the entry's mtime, set to ``time.time_ns()`` on every hit (one ``utime``, no
  lock) rather than by the kernel's coarse clock, so hits a millisecond apart keep their order.
* Accounting: a hit takes no lock and changes no bytes. An insertion adds its size to the
  running total under the lock; only past the limit is the directory scanned (correcting any
  drift) and evicted down to :data:`EVICT_TO` of the limit, so a full cache rescans once per
  ~10 % of turnover, not per insertion. Each new :class:`BlobCache` rescans once.
* A download lands in ``tmp/`` (same file system: ``os.replace`` is atomic) under a name
  unique per process and thread and moves to its entry only when complete, so a half-written
  file is never served. When two processes fetch one key, the second to finish keeps the
  first's entry. ``tmp/`` is flat so that sweeping dead processes' leftovers lists one folder.
* An object larger than the limit is not kept: it goes to a per-thread pass-through file in
  ``tmp/`` (uncounted, never a hit) that :meth:`BlobCache.read_bytes` deletes at once and
  :meth:`BlobCache.local_path` leaves until the thread's next oversized fetch, :meth:`close`
  or the sweep after the process is gone.
* Race: another process may evict an entry between :meth:`BlobCache.local_path` and the
  caller's ``open`` (a small limit, a hot cache). An open file stays readable (POSIX unlink);
  an unopened one raises ``FileNotFoundError``, so open the path at once.
  :meth:`BlobCache.read_bytes` fetches again once in that case.
* Objects are assumed immutable under their URI: a rewritten object is served stale until
  its entry is evicted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from damo_core.atomic import atomic_write_text
from damo_core.data.errors import DatasetError
from damo_core.data.scratch import STALE_AFTER_S, host_tag, pid_alive
from damo_core.errors import InputNotFoundError
from damo_core.storage import Store, open_store, split_uri

__all__ = ["BlobCache", "BlobNotFoundError", "default_cache", "EVICT_TO"]

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "DAMO_CACHE_DIR"
CACHE_MAX_ENV = "DAMO_CACHE_MAX_GB"
DEFAULT_MAX_GB = 20.0
# Eviction goes down to this share of the limit, so the next scans are ~10 % of turnover away.
EVICT_TO = 0.9

_ENTRY = re.compile(r"[0-9a-f]{32}(\.[A-Za-z0-9]{1,8})?")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
_OWNER = re.compile(r"\.([0-9a-f]{8})-(\d+)-(\d+)\.")
# One Store per (process, bucket): clients hold connection pools that must not cross a fork.
_STORES: dict[tuple[int, str, str], Store] = {}
# Not keyed by pid: an inherited instance rebuilds its threads and locks itself after a fork.
_DEFAULTS: dict[tuple[str, int], BlobCache] = {}


class BlobNotFoundError(DatasetError, InputNotFoundError):
    """A local image path named by a manifest does not exist (also a ``FileNotFoundError``)."""


def _store(bucket: str) -> Store:
    from damo_core.storage.s3 import endpoint_from_env  # minio is only needed for S3 URIs

    pid, endpoint = os.getpid(), endpoint_from_env()
    found = _STORES.get((pid, endpoint, bucket))
    if found is None:
        for stale in [k for k in list(_STORES) if k[0] != pid]:
            _STORES.pop(stale, None)
        found = _STORES.setdefault((pid, endpoint, bucket),
                                   open_store(f"s3://{bucket}", endpoint=endpoint))
    return found


def _touch(path: str) -> bool:
    """Refresh an entry's recency; False when it is absent (a miss, or evicted meanwhile)."""
    now = time.time_ns()
    try:
        os.utime(path, ns=(now, now))
    except FileNotFoundError:
        return False
    except PermissionError:  # another user's entry: readable, but its recency is not ours
        return os.path.exists(path)
    return True


class BlobCache:
    """Local paths for images named by a local path or an ``s3://`` URI (see the module doc).

    Safe to share between threads, forked DataLoader workers (per-process state is rebuilt
    after a fork, and the object pickles for ``spawn``) and processes using the same root.
    """

    def __init__(self, root: str | Path, max_bytes: int, *, prefetch_threads: int = 4,
                 prefetch_depth: int = 1024) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise DatasetError(f"blob cache {root}: max_bytes must be a positive integer, "
                               f"got {max_bytes!r}")
        self.root = Path(root).expanduser()
        self.max_bytes = max_bytes
        self.prefetch_threads = max(1, prefetch_threads)
        self.prefetch_depth = max(self.prefetch_threads, prefetch_depth)
        try:
            (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DatasetError(f"blob cache directory {self.root}: cannot create it: "
                               f"{err.strerror or err}") from None
        self._init_process()
        self._sweep_temps()
        with self._locked():
            for leftover in self.root.glob(".state.json.*.tmp"):  # a writer killed mid-way
                leftover.unlink(missing_ok=True)
            total = self._scan_total()
            if total > self.max_bytes:
                total = self._evict(keep=None)
            self._write_total(total)

    # ---- per-process state ------------------------------------------------------------------

    def _init_process(self) -> None:
        """Threads, locks and queues of this process (a forked child rebuilds its own)."""
        self._root, self._tmp = str(self.root), f"{self.root}/tmp/"
        self._pid = os.getpid()
        self._mutex = threading.Lock()
        self._inflight: dict[str, threading.Event] = {}
        self._pending: set[str] = set()
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=self.prefetch_depth)
        self._threads: list[threading.Thread] = []

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            self._init_process()

    def __getstate__(self) -> dict[str, object]:
        return {"root": self.root, "max_bytes": self.max_bytes,
                "prefetch_threads": self.prefetch_threads, "prefetch_depth": self.prefetch_depth}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._init_process()

    def __enter__(self) -> BlobCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- public API -------------------------------------------------------------------------

    def local_path(self, uri: str) -> Path:
        """A readable local file holding ``uri``; open it at once (see the eviction race)."""
        if not uri.startswith("s3://"):
            return _local_file(uri)
        return Path(self._s3_file(uri))

    def read_bytes(self, uri: str) -> bytes:
        """The object's bytes; fetches again once if the entry was evicted before the read."""
        if not uri.startswith("s3://"):
            try:
                return _read(uri, uri.removeprefix("file://"))
            except FileNotFoundError:
                return _read(uri, _local_file(uri))  # raises the error naming the file
        path = self._s3_file(uri)
        try:
            data = _read(uri, path)
        except FileNotFoundError:
            path = self._s3_file(uri)
            try:
                data = _read(uri, path)
            except FileNotFoundError:
                raise DatasetError(f"{uri}: cached copy {path} vanished twice before it "
                                   "could be read (cache limit too small for its users?)"
                                   ) from None
        if path.startswith(self._tmp):  # an oversized object's pass-through file
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return data

    def prefetch(self, uris: Iterable[str]) -> None:
        """Queue downloads of the ``s3://`` URIs among ``uris``, in order, without waiting.

        A hint: duplicates and URIs already queued are skipped, and once the queue holds
        ``prefetch_depth`` URIs the rest are dropped (prefetch a sliding window, such as the
        next few batches). Failures are logged at debug level and otherwise ignored; the later
        :meth:`local_path` raises them properly.
        """
        self._check_process()
        for uri in uris:
            if not uri.startswith("s3://"):
                continue
            self._start_threads()
            with self._mutex:
                if uri in self._pending:
                    continue
                self._pending.add(uri)
            try:
                self._queue.put_nowait(uri)
            except queue.Full:
                with self._mutex:
                    self._pending.discard(uri)
                return

    def size_bytes(self) -> int:
        """Bytes held by the cache's entries (the running total; pass-through files excluded)."""
        total = self._read_total()
        if total is None:
            with self._locked():
                total = self._scan_total()
                self._write_total(total)
        return total

    def close(self) -> None:
        """Stop the prefetch threads (a download under way finishes first) and drop this
        process's pass-through files; the cache stays usable and restarts threads on demand."""
        self._check_process()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout=30.0)
        with self._mutex:
            self._pending.clear()
        for path in (self.root / "tmp").glob(f"pass.{host_tag()}-{os.getpid()}-*"):
            path.unlink(missing_ok=True)

    def entry_path(self, uri: str) -> Path:
        """Where ``uri``'s entry lives (present or not): sharded by the first two hex digits."""
        return Path(self._entry(uri))

    # ---- fetching (paths are str here: a warm hit is a few microseconds of Python) ----------

    def _entry(self, uri: str) -> str:
        digest = hashlib.sha256(uri.encode("utf-8")).hexdigest()[:32]
        suffix = os.path.splitext(uri.rpartition("/")[2])[1]
        if suffix and not _SUFFIX.fullmatch(suffix):
            suffix = ""
        return f"{self._root}/{digest[:2]}/{digest}{suffix}"

    def _s3_file(self, uri: str) -> str:
        self._check_process()
        final = self._entry(uri)
        if _touch(final):
            return final
        return self._fetch(uri, final, keep_oversize=True)

    def _fetch(self, uri: str, final: str, *, keep_oversize: bool) -> str:
        """Download ``uri`` unless another thread of this process already is (then wait)."""
        while True:
            with self._mutex:
                event = self._inflight.get(uri)
                if event is None:
                    event = self._inflight[uri] = threading.Event()
                    break
            event.wait()
            if _touch(final):
                return final
        try:
            return self._download(uri, final, keep_oversize=keep_oversize)
        finally:
            with self._mutex:
                self._inflight.pop(uri, None)
            event.set()

    def _download(self, uri: str, final: str, *, keep_oversize: bool) -> str:
        bucket, key = split_uri(uri)
        if not key:
            raise DatasetError(f"{uri}: S3 URI names a bucket but no object key")
        owner = f"{host_tag()}-{os.getpid()}-{threading.get_native_id()}"
        name = os.path.basename(final)
        tmp = f"{self._tmp}{name}.{owner}.part"
        try:
            _store(bucket).get_file(key, tmp)
            size = os.stat(tmp).st_size
            if size > self.max_bytes:
                passthrough = f"{self._tmp}pass.{owner}.blob{os.path.splitext(name)[1]}"
                os.replace(tmp, passthrough)
                if not keep_oversize:
                    os.unlink(passthrough)
                return passthrough
            now = time.time_ns()
            os.utime(tmp, ns=(now, now))
            self._insert(tmp, final, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return final

    def _insert(self, tmp: str, final: str, size: int) -> None:
        """Move a complete download into place and keep the total within the limit."""
        os.makedirs(os.path.dirname(final), exist_ok=True)
        with self._locked():
            if _touch(final):  # another process fetched it meanwhile: keep theirs
                return
            total = self._read_total()
            os.replace(tmp, final)
            total = self._scan_total() if total is None else total + size
            if total > self.max_bytes:
                total = self._evict(keep=final)
            self._write_total(total)

    def _start_threads(self) -> None:
        with self._mutex:
            if self._threads:
                return
            for i in range(self.prefetch_threads):
                thread = threading.Thread(target=self._prefetch_loop, daemon=True,
                                          name=f"blob-prefetch-{i}")
                thread.start()
                self._threads.append(thread)

    def _prefetch_loop(self) -> None:
        while (uri := self._queue.get()) is not None:
            try:
                final = self._entry(uri)
                if not _touch(final):
                    self._fetch(uri, final, keep_oversize=False)
            except Exception as err:  # a hint only: the later local_path raises it properly
                log.debug("prefetch of %s failed: %s", uri, err)
            finally:
                with self._mutex:
                    self._pending.discard(uri)

    # ---- accounting (callers hold the lock, except for the atomic reads) --------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A fresh open file description per use: flock locks belong to it, so one inherited
        # across fork would let parent and child "hold" the lock at once.
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read_total(self) -> int | None:
        try:
            total = json.loads((self.root / "state.json").read_text())["total_bytes"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return total if isinstance(total, int) and total >= 0 else None

    def _write_total(self, total: int) -> None:
        atomic_write_text(self.root / "state.json", json.dumps({"total_bytes": total}))

    def _entries(self) -> list[tuple[int, int, str]]:
        """``(mtime_ns, size, path)`` of every entry: the scan that eviction and startup do."""
        found = []
        with os.scandir(self._root) as shards:
            shard_dirs = [s.path for s in shards if len(s.name) == 2 and s.is_dir()]
        for shard in shard_dirs:
            with contextlib.suppress(FileNotFoundError), os.scandir(shard) as files:
                for entry in files:
                    if not _ENTRY.fullmatch(entry.name):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat(follow_symlinks=False)
                        found.append((st.st_mtime_ns, st.st_size, entry.path))
        return found

    def _scan_total(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict(self, keep: str | None) -> int:
        """Remove least recently used entries until the total is at most EVICT_TO of the
        limit; ``keep`` (the entry just inserted) stays. Returns the new total."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        if total <= self.max_bytes:
            return total  # the running total had drifted high; nothing to evict
        target = int(self.max_bytes * EVICT_TO)
        for _, size, path in entries:
            if total <= target:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            total -= size
        return total

    def _sweep_temps(self) -> None:
        """Remove downloads and pass-through files whose owning process is gone."""
        now = time.time()
        for path in (self.root / "tmp").iterdir():
            match = _OWNER.search(path.name)
            try:
                if match is not None and match.group(1) == host_tag():
                    stale = not pid_alive(int(match.group(2)))
                else:  # another host's (shared volume) or unnamed: only when long untouched
                    stale = now - path.lstat().st_mtime > STALE_AFTER_S
                if stale:
                    path.unlink()
            except FileNotFoundError:
                continue


def _read(uri: str, path: str | Path) -> bytes:
    """Read a file, letting only ``FileNotFoundError`` through (the caller retries on it)."""
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except FileNotFoundError:
        raise
    except OSError as err:
        raise DatasetError(f"{uri}: cannot read {path}: {err.strerror or err}") from None


def _local_file(uri: str) -> Path:
    if "://" in uri and not uri.startswith("file://"):
        raise DatasetError(f"{uri}: unsupported image URI scheme (use a local path or s3://)")
    path = Path(uri.removeprefix("file://"))
    try:
        path.stat()
    except FileNotFoundError:
        raise BlobNotFoundError(f"{uri}: image file does not exist") from None
    except OSError as err:
        if err.errno in (errno.ENOTDIR, errno.ENAMETOOLONG):
            raise BlobNotFoundError(f"{uri}: image file does not exist") from None
        raise DatasetError(f"{uri}: cannot access image file: {err.strerror}") from None
    return path


def cache_root() -> Path:
    """Where the project's caches live: ``$DAMO_CACHE_DIR``, else ``$XDG_CACHE_HOME/damo``,
    else ``~/.cache/damo`` (S3 images under ``blobs/``, converted datasets under
    ``manifests/``, the generated synthetic set under ``synthetic/``)."""
    explicit = os.environ.get(CACHE_DIR_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "damo"


def default_cache() -> BlobCache:
    """This process's cache in ``blobs/`` under :func:`cache_root` holding at most
    ``$DAMO_CACHE_MAX_GB`` gigabytes (10^9 bytes; default 20).

    One instance per setting, so every dataset of a run shares one prefetch pool.
    """
    root = cache_root() / "blobs"
    raw = os.environ.get(CACHE_MAX_ENV, "").strip()
    try:
        gigabytes = float(raw) if raw else DEFAULT_MAX_GB
    except ValueError:
        gigabytes = float("nan")
    if not gigabytes > 0 or gigabytes == float("inf"):
        raise DatasetError(f"${CACHE_MAX_ENV} must be a positive number of gigabytes, "
                           f"got {raw!r}")
    max_bytes = max(1, int(gigabytes * 1e9))
    key = (str(Path(root).expanduser()), max_bytes)
    cache = _DEFAULTS.get(key)
    if cache is None:
        cache = _DEFAULTS.setdefault(key, BlobCache(root, max_bytes))
    return cache
