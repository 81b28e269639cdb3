"""What killed or repeated unify runs leave behind: staging directories of dead runs are
swept by the next run, and re-unifying with larger shards removes the shards it replaced."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from damo_core.data import scratch
from damo_core.data.unify import SCRATCH_PREFIX, iter_manifest, read_summary, unify
from tests.data.test_unify import sources  # noqa: F401  (module fixture)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_leftover(parent: Path, pid: int, host: str | None = None) -> Path:
    path = parent / f"{SCRATCH_PREFIX}{host or scratch.host_tag()}-{pid}-abc123"
    (path / "manifest").mkdir(parents=True)
    (path / "manifest" / "coco-00000.parquet").write_bytes(b"x" * 1000)
    return path


def test_next_run_sweeps_staging_of_dead_runs_only(sources, tmp_path: Path) -> None:  # noqa: F811
    specs, root = sources
    out = tmp_path / "out"
    out.mkdir()
    dead = fake_leftover(out, dead_pid())
    live = fake_leftover(out, os.getppid())  # a running process: a concurrent run
    other_host = fake_leftover(out, 1, host="deadbeef")  # may be alive elsewhere
    legacy = out / f"{SCRATCH_PREFIX}0123abcd-old"  # name without an owner, old
    legacy.mkdir()
    old = time.time() - scratch.STALE_AFTER_S - 60
    os.utime(legacy, (old, old))
    unify(specs, str(root / "labels.csv"), out, shard_images=5, progress=False)
    assert not dead.exists() and not legacy.exists()
    assert live.exists() and other_host.exists()
    read_summary(out)


def test_exception_mid_run_removes_staging(sources, tmp_path: Path,  # noqa: F811
                                           monkeypatch) -> None:
    specs, root = sources
    import damo_core.data.unify as unify_mod

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash while publishing")

    monkeypatch.setattr(unify_mod, "_publish", boom)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated"):
        unify(specs, str(root / "labels.csv"), out, shard_images=5, progress=False)
    assert not [p for p in out.iterdir() if p.name.startswith(SCRATCH_PREFIX)]


def test_reunify_with_larger_shards_removes_stale_shards(sources, tmp_path: Path) -> None:  # noqa: F811
    specs, root = sources
    out = tmp_path / "out"
    unify(specs, str(root / "labels.csv"), out, shard_images=2, progress=False)
    before = sorted(p.name for p in (out / "manifest").iterdir())
    unify(specs, str(root / "labels.csv"), out, shard_images=1000, progress=False)
    after = sorted(p.name for p in (out / "manifest").iterdir())
    summary = read_summary(out)
    assert len(before) > len(after)
    assert sorted(k.split("/", 1)[1] for k in summary["shards"]) == after
    assert sum(b.num_rows for b in iter_manifest(out)) == summary["num_images"]


def test_killed_publish_leaves_stale_shards_for_next_run(sources, tmp_path: Path,  # noqa: F811
                                                         monkeypatch) -> None:
    """A kill after the old summary went but before the move: the next run still cleans."""
    specs, root = sources
    out = tmp_path / "out"
    unify(specs, str(root / "labels.csv"), out, shard_images=2, progress=False)
    (out / "summary.json").unlink()  # as a kill right after the commit marker's deletion
    (out / "manifest" / "gone-00099.parquet").write_bytes(b"stale")
    (out / "notes.txt").write_text("not ours")  # files outside manifest/ are left alone
    unify(specs, str(root / "labels.csv"), out, shard_images=1000, progress=False)
    assert not (out / "manifest" / "gone-00099.parquet").exists()
    assert (out / "notes.txt").exists()
    assert len(list((out / "manifest").iterdir())) == len(read_summary(out)["shards"])
