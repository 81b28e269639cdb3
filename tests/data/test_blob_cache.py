"""The blob cache without S3: local paths pass through, settings are checked, a new cache
starts from the truth (dead processes' downloads swept, the limit enforced by recency).

The S3 half (fetch, warm hits, eviction on insert, failures, processes) is in
``tests/storage/test_blob_cache_s3.py``, next to the S3 server fixtures."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from damo_core.data.blob_cache import BlobCache, BlobNotFoundError, default_cache
from damo_core.data.errors import DatasetError
from damo_core.data.scratch import host_tag


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _put_entry(cache: BlobCache, uri: str, size: int, mtime_s: int) -> Path:
    path = cache.entry_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime_s, mtime_s))
    return path


def test_local_path_passes_through(tmp_path: Path) -> None:
    image = tmp_path / "img.jpg"
    image.write_bytes(b"jpeg")
    cache = BlobCache(tmp_path / "cache", 1000)
    assert cache.local_path(str(image)) == image
    assert cache.local_path(f"file://{image}") == image
    assert cache.read_bytes(str(image)) == b"jpeg"
    assert image.exists() and cache.size_bytes() == 0  # never copied, never deleted


def test_missing_local_file_is_named(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", 1000)
    missing = str(tmp_path / "nope.jpg")
    for read in (cache.local_path, cache.read_bytes):
        with pytest.raises(BlobNotFoundError, match="nope.jpg: image file does not exist") as err:
            read(missing)
        assert isinstance(err.value, DatasetError) and isinstance(err.value, FileNotFoundError)
    with pytest.raises(DatasetError, match=r"gs://b/k\.jpg: unsupported image URI scheme"):
        cache.local_path("gs://b/k.jpg")


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_limit_must_be_positive_bytes(tmp_path: Path, bad: object) -> None:
    with pytest.raises(DatasetError, match=f"max_bytes must be a positive integer, got {bad!r}"):
        BlobCache(tmp_path, bad)  # type: ignore[arg-type]


def test_default_cache_reads_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAMO_CACHE_DIR", str(tmp_path / "blobs"))
    monkeypatch.setenv("DAMO_CACHE_MAX_GB", "0.5")
    cache = default_cache()
    assert cache.root == tmp_path / "blobs" / "blobs" and cache.max_bytes == 500_000_000
    assert default_cache() is cache  # one per setting: one prefetch pool per process
    for bad in ("lots", "0", "-1", "nan", "inf"):
        monkeypatch.setenv("DAMO_CACHE_MAX_GB", bad)
        with pytest.raises(DatasetError, match=rf"\$DAMO_CACHE_MAX_GB .* got '{bad}'"):
            default_cache()


def test_unwritable_root_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DatasetError, match=f"blob cache directory {blocker}/c: cannot create"):
        BlobCache(blocker / "c", 1000)


def test_startup_sweeps_dead_processes_temps(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    dead, live = _dead_pid(), os.getpid()
    names = {
        "dead_part": f"{'a' * 32}.jpg.{host_tag()}-{dead}-7.part",
        "dead_inner": f".{'a' * 32}.jpg.{host_tag()}-{dead}-7.part.k2j3.tmp",  # get_file's own
        "dead_pass": f"pass.{host_tag()}-{dead}-7.blob.png",
        "live_part": f"{'b' * 32}.{host_tag()}-{live}-9.part",
        "other_host": f"{'c' * 32}.0000beef-{dead}-1.part",  # may be alive elsewhere
    }
    for name in names.values():
        (tmp_path / "tmp" / name).write_bytes(b"partial")
    BlobCache(tmp_path, 1000)
    left = {p.name for p in (tmp_path / "tmp").iterdir()}
    assert left == {names["live_part"], names["other_host"]}


def test_startup_enforces_limit_by_recency(tmp_path: Path) -> None:
    first = BlobCache(tmp_path, 10_000)
    paths = {k: _put_entry(first, f"s3://b/{k}.jpg", 300, mtime)
             for k, mtime in (("old", 1000), ("mid", 2000), ("new", 3000), ("used", 500))}
    os.utime(paths["used"], (4000, 4000))  # touched last: most recently used
    (tmp_path / "state.json").write_text("{broken")  # an unreadable total: rescanned
    assert first.size_bytes() == 1200
    second = BlobCache(tmp_path, 1000)  # a smaller limit: evict down to 90 % of it
    assert {k for k, p in paths.items() if p.exists()} == {"mid", "new", "used"}
    assert second.size_bytes() == 900
    assert json.loads((tmp_path / "state.json").read_text()) == {"total_bytes": 900}
    BlobCache(tmp_path, 500)
    assert {k for k, p in paths.items() if p.exists()} == {"used"}


def test_entry_names_keep_suffix_and_shard(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, 1000)
    path = cache.entry_path("s3://bucket/dir/image.PNG")
    assert path.suffix == ".PNG" and path.parent.name == path.name[:2]
    assert path.parent.parent == tmp_path
    assert cache.entry_path("s3://bucket/no_suffix").suffix == ""
    assert cache.entry_path("s3://bucket/weird.j p g").suffix == ""


def test_pickles_for_spawned_workers(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path, 1000, prefetch_threads=2)
    copy = pickle.loads(pickle.dumps(cache))
    assert (copy.root, copy.max_bytes, copy.prefetch_threads) == (tmp_path, 1000, 2)
    image = tmp_path / "x.png"
    image.write_bytes(b"png")
    assert copy.read_bytes(str(image)) == b"png"
