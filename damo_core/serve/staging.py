"""Crash safety of a local model repository: staging names, the deploy journal, recovery.

A deploy that is killed (``kill -9``, OOM, a lost node) must not leave the repository in a
state the next server start cannot load, nor one that serves a version nobody verified:

* a new version directory is assembled under a hidden staging name in the model's directory,
  ``.staging-<version>-<pid>-<random>`` (Triton only loads version directories whose names
  are numbers), its files are checked against their sources and only then renamed to
  ``<version>``;
* before a deploy that will load the version on a server touches the repository, it writes
  a journal, ``<repo>/.damo-deploy-<model>.json`` (a file: Triton only looks at
  directories in the repository root), holding the version it is about to add and the four
  ``config.pbtxt`` texts as they were. The journal is removed once the version serves or
  has been rolled back;
* :func:`recover` (run before every local server start and at the start of every deploy)
  undoes what a dead deploy left: its journalled version is removed, the configs are put
  back, stale staging directories are deleted. The previous version then loads and serves.

A journal or staging directory whose process is still alive is left alone (a concurrent
deploy is not a crash).

:func:`fault_point` is the hook the fault-injection tests use to stop a deploy at a chosen
step (``DAMO_DEPLOY_FAULT=<point>``: touch ``DAMO_DEPLOY_FAULT_MARKER`` and wait to be
killed); it does nothing unless that env var names the point.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from damo_core.atomic import atomic_write_text
from damo_core.data.scratch import pid_alive

STAGING_PREFIX = ".staging-"
JOURNAL_PREFIX = ".damo-deploy-"
FAULT_ENV, FAULT_MARKER_ENV = "DAMO_DEPLOY_FAULT", "DAMO_DEPLOY_FAULT_MARKER"
_FAULT_WAIT_S = 120.0  # bounded: a test that forgets to kill does not hang forever


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


def journal_path(root: Path, model_name: str) -> Path:
    return root / f"{JOURNAL_PREFIX}{model_name}.json"


def write_journal(root: Path, model_name: str, *, version: int, previous: int | None,
                  models: Sequence[str], detector: str,
                  configs: Mapping[str, str | None]) -> Path:
    path = journal_path(root, model_name)
    atomic_write_text(path, json.dumps({
        "pid": os.getpid(), "version": version, "previous": previous, "models": list(models),
        "detector": detector, "configs": dict(configs)}, indent=2))
    return path


def _config_path(root: Path, name: str) -> Path:
    return root / name / "config.pbtxt"


def undo(root: Path, journal: Path) -> None:
    """Put back what the journalled deploy changed, then drop the journal."""
    record = json.loads(journal.read_text(encoding="utf-8"))
    version_dir = root / record["detector"] / str(int(record["version"]))
    shutil.rmtree(version_dir, ignore_errors=True)
    for name, text in record["configs"].items():
        if text is not None:
            path = _config_path(root, name)
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                atomic_write_text(path, text)
        elif record.get("previous") is None:
            shutil.rmtree(root / name, ignore_errors=True)  # the dead deploy created it
    journal.unlink(missing_ok=True)


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


def recover(repo: str | Path, model_name: str | None = None) -> list[str]:
    """Undo every deploy of ``repo`` (or of ``model_name`` only) whose process died
    mid-way, and delete stale staging directories. Returns what was done, one line each."""
    root = Path(repo)
    if not root.is_dir():
        return []
    done = []
    pattern = f"{JOURNAL_PREFIX}{model_name or '*'}.json"
    for journal in sorted(root.glob(pattern)):
        try:
            record = json.loads(journal.read_text(encoding="utf-8"))
            if pid_alive(int(record.get("pid", 0))) and int(record["pid"]) != os.getpid():
                continue
            undo(root, journal)
            done.append(f"undid the interrupted deploy of {record['detector']} version "
                        f"{record['version']}")
        except (OSError, ValueError, KeyError, TypeError) as err:
            done.append(f"could not undo {journal.name}: {err}")
    for model_dir in (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for stale in _stale_staging(model_dir):
            shutil.rmtree(stale, ignore_errors=True)
            done.append(f"removed the leftover staging directory {stale}")
    return done


def verify_copy(files: Mapping[str, Path], staged: Path) -> None:
    """Every source file is in ``staged`` with its size (a truncated copy is an error)."""
    for name, source in files.items():
        copied = staged / name
        if not copied.is_file() or copied.stat().st_size != Path(source).stat().st_size:
            raise OSError(f"staging {staged}: {name} is incomplete after the copy from {source}")
