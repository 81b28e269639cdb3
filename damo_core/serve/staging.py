"""Crash safety of a model repository (a directory or S3): staging names, the deploy journal,
recovery.

A deploy that is killed (``kill -9``, OOM, a lost node) must not leave the repository in a
state the next server start cannot load, nor one that serves a version nobody verified:

* in a local repository a new version directory is assembled under a hidden staging name in
  the model's directory, ``.staging-<version>-<pid>-<random>`` (Triton only loads version
  directories whose names are numbers), its files are checked against their sources and only
  then renamed to ``<version>``. An S3 repository has no rename: a version is many objects
  uploaded one by one, so only the journal protects it;
* before a deploy touches the repository (a local one: when it will load the version on a
  server; an S3 one: always), it writes a journal, ``.damo-deploy-<model>.json`` in the
  repository root (a file or an object: Triton only looks at directories there), holding
  the version it is about to add and the four ``config.pbtxt`` texts as they were. The
  journal is removed once the version serves, has been rolled back, or (an S3 deploy that
  loads nothing) has been uploaded whole;
* :func:`recover` (run at the start of every deploy, and before every local server start)
  undoes what a dead deploy left: its journalled version is removed, the configs are put
  back, stale staging directories are deleted, the journal is removed last (so an undo that
  is itself interrupted is redone next time). The previous version then loads and serves.

Both kinds of repository share the journal and its undo; what differs is only how a key is
read, written and deleted (:class:`LocalFiles`, :class:`StoreFiles`).

A journal whose deploy is still alive is left alone (a concurrent deploy is not a crash).
"Alive" is decided from what the journal records about its writer: ``host`` (the host name)
and ``scope`` (the boot id and PID namespace, so two containers sharing a host name, or a
reboot, are not mistaken for the same process table):

* same host and scope: the writer's PID is checked (the journal of this very process counts
  only while this process holds it);
* anywhere else (the next deploy usually runs in another pod): a lease. The writer renews the
  journal's ``renewed`` time every ``LEASE_S / 4`` seconds from a background thread; a
  journal not renewed for :data:`LEASE_S` seconds is dead. This assumes the hosts' clocks
  agree to well within the lease (NTP), and that a live deploy's renewal thread is not
  stalled for that long.

A deploy that finds a live journal of its model waits for it to go away or go stale, at
most ``1.25 × LEASE_S``, then refuses with :class:`DeployInProgressError`. The journal is not a
lock: two deploys of one model that start within the same instant can both write it.

:func:`fault_point` is the hook the fault-injection tests use to stop a deploy at a chosen
step (``DAMO_DEPLOY_FAULT=<point>``: touch ``DAMO_DEPLOY_FAULT_MARKER`` and wait to be
killed); it does nothing unless that env var names the point.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from damo_core.atomic import atomic_write_text
from damo_core.data.scratch import pid_alive
from damo_core.errors import DamoError, UnavailableError
from damo_core.storage import StorageNotFoundError, Store, is_remote, open_store

STAGING_PREFIX = ".staging-"
JOURNAL_PREFIX = ".damo-deploy-"
_CONFIG = "config.pbtxt"  # repository.CONFIG; that module imports this one
FAULT_ENV, FAULT_MARKER_ENV = "DAMO_DEPLOY_FAULT", "DAMO_DEPLOY_FAULT_MARKER"
LEASE_S = 60.0  # a journal of another host not renewed for this long belongs to a dead deploy
_FAULT_WAIT_S = 120.0  # bounded: a test that forgets to kill does not hang forever
_HELD: set[str] = set()  # URIs of the journals this process holds (and renews)


class DeployInProgressError(UnavailableError):
    """Another deploy of the model is alive (its journal is renewed or its process runs) and
    did not finish within the wait; the message names the journal, its host and PID."""


def fault_point(name: str) -> None:
    """Test hook: when ``DAMO_DEPLOY_FAULT`` is ``name``, signal the marker and wait."""
    if os.environ.get(FAULT_ENV) != name:
        return
    marker = os.environ.get(FAULT_MARKER_ENV)
    if marker:
        Path(marker).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(_FAULT_WAIT_S)


def staging_prefix(version_name: str) -> str:
    return f"{STAGING_PREFIX}{version_name}-{os.getpid()}-"


def journal_key(model_name: str) -> str:
    return f"{JOURNAL_PREFIX}{model_name}.json"


def journal_path(root: Path, model_name: str) -> Path:
    return root / journal_key(model_name)


def _scope() -> str:
    """This process table's identity beyond the host name: boot id and PID namespace (empty
    parts where the platform has none), so a PID is only compared within the same table."""
    parts = []
    for reader in (lambda: Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                   lambda: os.readlink("/proc/self/ns/pid")):
        try:
            parts.append(reader())
        except OSError:
            parts.append("")
    return "/".join(parts)


@dataclasses.dataclass(frozen=True)
class JournalRecord:
    """What a deploy is about to change, and who is changing it (see the module doc)."""

    version: int
    previous: int | None
    models: tuple[str, ...]
    detector: str
    configs: Mapping[str, str | None]
    pid: int = dataclasses.field(default_factory=os.getpid)
    host: str = dataclasses.field(default_factory=socket.gethostname)
    scope: str = dataclasses.field(default_factory=_scope)
    renewed: float = dataclasses.field(default_factory=time.time)

    def dumps(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "models": list(self.models),
                           "configs": dict(self.configs)}, indent=2)

    @classmethod
    def loads(cls, text: str) -> JournalRecord:
        """Parse a journal; one written before ``host``/``scope``/``renewed`` existed was
        written by a local deploy on this machine (it is judged by its PID)."""
        raw = json.loads(text)
        return cls(version=int(raw["version"]), previous=raw.get("previous"),
                   models=tuple(raw.get("models", ())), detector=str(raw["detector"]),
                   configs=dict(raw["configs"]), pid=int(raw.get("pid", 0)),
                   host=str(raw.get("host", socket.gethostname())),
                   scope=str(raw.get("scope", _scope())), renewed=float(raw.get("renewed", 0)))

    def owner(self) -> str:
        return f"pid {self.pid} on {self.host}"


class RepositoryFiles(abc.ABC):
    """The few operations the journal and its undo need, on one kind of repository. Keys are
    ``/``-separated paths relative to the repository root."""

    @abc.abstractmethod
    def uri(self, key: str) -> str:
        """Where ``key`` is, for messages."""

    @abc.abstractmethod
    def read_text(self, key: str) -> str | None:
        """The text of ``key``, or ``None`` if there is none."""

    @abc.abstractmethod
    def write_text(self, key: str, text: str) -> None:
        """Replace ``key`` whole (a reader sees the old text or the new one)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    @abc.abstractmethod
    def remove_tree(self, prefix: str) -> None:
        """Remove everything under the directory ``prefix``."""

    @abc.abstractmethod
    def journal_keys(self, model_name: str | None) -> list[str]:
        """The journal keys present, of ``model_name`` only or of every model."""

    def leftovers(self) -> list[str]:
        """Remove debris other than journals that dead deploys left; one line per item."""
        return []


class LocalFiles(RepositoryFiles):
    """A repository directory; it also has staging directories to sweep."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def uri(self, key: str) -> str:
        return str(self.root / key)

    def read_text(self, key: str) -> str | None:
        path = self.root / key
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def write_text(self, key: str, text: str) -> None:
        atomic_write_text(self.root / key, text)

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def remove_tree(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix, ignore_errors=True)

    def journal_keys(self, model_name: str | None) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.glob(journal_key(model_name or "*")))

    def leftovers(self) -> list[str]:
        if not self.root.is_dir():
            return []
        done = []
        for model_dir in (p for p in self.root.iterdir()
                          if p.is_dir() and not p.name.startswith(".")):
            for stale in _stale_staging(model_dir):
                shutil.rmtree(stale, ignore_errors=True)
                done.append(f"removed the leftover staging directory {stale}")
        return done


class StoreFiles(RepositoryFiles):
    """A repository in a :class:`~damo_core.storage.Store` (an S3 bucket and prefix)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def uri(self, key: str) -> str:
        return self.store.uri(key)

    def read_text(self, key: str) -> str | None:
        try:
            return self.store.read_text(key)
        except StorageNotFoundError:
            return None

    def write_text(self, key: str, text: str) -> None:
        self.store.write_text(key, text)

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def remove_tree(self, prefix: str) -> None:
        for key in self.store.list(prefix.rstrip("/") + "/"):
            self.store.delete(key)

    def journal_keys(self, model_name: str | None) -> list[str]:
        if model_name is not None:  # one stat instead of listing every version's objects
            key = journal_key(model_name)
            return [key] if self.store.exists(key) else []
        return [key for key in self.store.list()
                if "/" not in key and key.startswith(JOURNAL_PREFIX) and key.endswith(".json")]


def files_for(repo: str | Path) -> RepositoryFiles:
    """The :class:`RepositoryFiles` of a repository directory or ``s3://bucket/prefix``."""
    return StoreFiles(open_store(str(repo))) if is_remote(str(repo)) else LocalFiles(repo)


class Journal:
    """A journal this process wrote and holds: renewed in the background until released.

    Use as a context manager around the deploy, so renewal stops however the deploy ends;
    :meth:`commit` (the change stands) and :meth:`undo` (the change is taken back) also
    remove the journal. A journal released without either stays, for :func:`recover`.
    """

    def __init__(self, files: RepositoryFiles, model_name: str, *, version: int,
                 previous: int | None, models: Sequence[str], detector: str,
                 configs: Mapping[str, str | None]) -> None:
        self.files, self.key = files, journal_key(model_name)
        self.record = JournalRecord(version=version, previous=previous, models=tuple(models),
                                    detector=detector, configs=dict(configs))
        files.write_text(self.key, self.record.dumps())
        _HELD.add(files.uri(self.key))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True,
                                        name=f"renew {self.key}")
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_S / 4):
            record = dataclasses.replace(self.record, renewed=time.time())
            try:
                self.files.write_text(self.key, record.dumps())
            except (OSError, DamoError):
                pass  # the next tick tries again; the lease outlasts three missed renewals

    def release(self) -> None:
        """Stop renewing (the journal itself stays); idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        _HELD.discard(self.files.uri(self.key))

    def commit(self) -> None:
        """The deploy's change stands: drop the journal."""
        self.release()
        self.files.delete(self.key)

    def undo(self) -> None:
        """Take the deploy's change back (see :func:`undo`), then drop the journal."""
        self.release()
        undo(self.files, self.key, self.record)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def undo(files: RepositoryFiles, key: str, record: JournalRecord) -> None:
    """Put back what the journalled deploy changed, then drop the journal (last, so an
    interrupted undo is redone by the next recovery)."""
    files.remove_tree(f"{record.detector}/{int(record.version)}")
    for name, text in record.configs.items():
        config = f"{name}/{_CONFIG}"
        if text is not None:
            if files.read_text(config) != text:
                files.write_text(config, text)
        elif record.previous is None:
            files.remove_tree(name)  # the dead deploy created it
    files.delete(key)


def _owner_alive(files: RepositoryFiles, key: str, record: JournalRecord) -> bool:
    if record.host != socket.gethostname() or record.scope != _scope():
        return time.time() - record.renewed < LEASE_S
    if record.pid == os.getpid():
        return files.uri(key) in _HELD
    return pid_alive(record.pid)


def _stale_staging(model_dir: Path) -> list[Path]:
    stale = []
    for entry in model_dir.iterdir():
        if not (entry.is_dir() and entry.name.startswith(STAGING_PREFIX)):
            continue
        parts = entry.name[len(STAGING_PREFIX):].split("-")
        pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0
        if not pid_alive(pid):
            stale.append(entry)
    return stale


def recover(repo: str | Path | RepositoryFiles, model_name: str | None = None, *,
            wait: bool = False) -> list[str]:
    """Undo every deploy of ``repo`` (a directory, ``s3://bucket/prefix`` or its
    :class:`RepositoryFiles`; of ``model_name`` only, if given) whose writer died mid-way, and
    delete stale staging directories. Returns what was done, one line each.

    A live deploy's journal is left alone; with ``wait`` (a deploy about to start) this waits
    up to ``1.25 × LEASE_S`` for it to finish or go stale, then raises
    :class:`DeployInProgressError`.
    """
    files = repo if isinstance(repo, RepositoryFiles) else files_for(repo)
    deadline = time.monotonic() + (1.25 * LEASE_S if wait else 0.0)
    done = []
    for key in files.journal_keys(model_name):
        while True:
            try:
                text = files.read_text(key)
                if text is None:
                    break  # its deploy finished while we looked
                record = JournalRecord.loads(text)
                if not _owner_alive(files, key, record):
                    undo(files, key, record)
                    done.append(f"undid the interrupted deploy of {record.detector} version "
                                f"{record.version} ({record.owner()})")
                    break
            except (OSError, DamoError, ValueError, KeyError, TypeError) as err:
                done.append(f"could not undo {files.uri(key)}: {err}")
                break
            if time.monotonic() >= deadline:
                if wait:
                    age = time.time() - record.renewed
                    raise DeployInProgressError(
                        f"{files.uri(key)}: a deploy of {record.detector} version "
                        f"{record.version} ({record.owner()}, renewed {age:.0f} s ago) is still "
                        "running; retry when it has finished")
                done.append(f"left {files.uri(key)} alone: its deploy ({record.owner()}) "
                            "is still running")
                break
            time.sleep(min(1.0, LEASE_S / 10))
    return done + files.leftovers()


def verify_copy(files: Mapping[str, Path], staged: Path) -> None:
    """Every source file is in ``staged`` with its size (a truncated copy is an error)."""
    for name, source in files.items():
        copied = staged / name
        if not copied.is_file() or copied.stat().st_size != Path(source).stat().st_size:
            raise OSError(f"staging {staged}: {name} is incomplete after the copy from {source}")
