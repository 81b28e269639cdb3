"""The blob cache against a real S3 server (moto): one download per object, a bounded total
evicted by recency, never a half-written entry, several processes at once, prefetch, and
S3 failures named by URI."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from damo_core.data import blob_cache
from damo_core.data.blob_cache import BlobCache
from damo_core.errors import InputNotFoundError
from damo_core.storage import StorageError, StorageNotFoundError, open_store
from tests.servers import free_port


def _upload(bucket: str, objects: dict[str, bytes]) -> dict[str, bytes]:
    """Put ``objects`` (key -> bytes) into the bucket; returns them keyed by URI."""
    store = open_store(f"s3://{bucket}")
    for key, data in objects.items():
        store.write_bytes(key, data)
    return {f"s3://{bucket}/{key}": data for key, data in objects.items()}


def _entries_total(root: Path) -> int:
    """Bytes in cache entries, counted from disk (independent of the cache's running total)."""
    return sum(p.stat().st_size for p in root.glob("??/*") if p.is_file())


def test_fetch_once_then_warm_hits(s3_bucket: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    uris = _upload(s3_bucket, {"imgs/a.jpg": b"A" * 100})
    uri = next(iter(uris))
    cache = BlobCache(tmp_path, 1000)
    path = cache.local_path(uri)
    assert path == cache.entry_path(uri) and path.suffix == ".jpg"
    assert path.read_bytes() == b"A" * 100 and cache.size_bytes() == 100
    open_store(f"s3://{s3_bucket}").delete("imgs/a.jpg")  # a second download would now fail

    def no_scan(self: BlobCache) -> list:
        raise AssertionError("a warm hit must not scan the cache directory")

    monkeypatch.setattr(BlobCache, "_entries", no_scan)
    for _ in range(3):
        assert cache.read_bytes(uri) == b"A" * 100
    assert cache.size_bytes() == 100


def test_eviction_keeps_limit_and_recently_used(s3_bucket: str, tmp_path: Path) -> None:
    uris = list(_upload(s3_bucket, {f"k{i}.png": bytes([i]) * 300 for i in range(5)}))
    cache = BlobCache(tmp_path, 1000)
    for uri in uris[:3]:
        cache.read_bytes(uri)
    cache.local_path(uris[0])  # k0 used again: k1 is now the least recently used
    cache.read_bytes(uris[3])  # 1200 > 1000: evict down to 900
    alive = [cache.entry_path(u).exists() for u in uris]
    assert alive == [True, False, True, True, False]
    cache.read_bytes(uris[4])
    assert [cache.entry_path(u).exists() for u in uris] == [True, False, False, True, True]
    assert cache.size_bytes() == _entries_total(tmp_path) == 900


def test_object_over_limit_is_served_not_kept(s3_bucket: str, tmp_path: Path) -> None:
    uri = next(iter(_upload(s3_bucket, {"big.jpg": b"B" * 500})))
    cache = BlobCache(tmp_path, 200)
    assert cache.read_bytes(uri) == b"B" * 500
    assert not cache.entry_path(uri).exists() and not list((tmp_path / "tmp").iterdir())
    path = cache.local_path(uri)  # kept for the current read only, outside the accounting
    assert path.read_bytes() == b"B" * 500 and path.suffix == ".jpg"
    assert cache.size_bytes() == 0
    cache.close()
    assert not path.exists()


def test_failed_download_leaves_no_entry(s3_bucket: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    uri = next(iter(_upload(s3_bucket, {"half.jpg": b"H" * 1000})))
    cache = BlobCache(tmp_path, 10_000)
    copy = shutil.copyfileobj

    def dies_midway(src, dst, length=0) -> None:  # noqa: ANN001 - shutil's signature
        dst.write(src.read(400))
        raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(shutil, "copyfileobj", dies_midway)
    with pytest.raises(StorageError, match="half.jpg"):
        cache.local_path(uri)
    assert not cache.entry_path(uri).exists()
    assert not list((tmp_path / "tmp").iterdir()) and cache.size_bytes() == 0
    monkeypatch.setattr(shutil, "copyfileobj", copy)
    assert cache.read_bytes(uri) == b"H" * 1000


def test_missing_object_and_unreachable_endpoint_are_named(
        s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = BlobCache(tmp_path, 1000)
    uri = f"s3://{s3_bucket}/no/such.jpg"
    with pytest.raises(StorageNotFoundError, match=f"{uri} .*no such object") as err:
        cache.read_bytes(uri)
    assert isinstance(err.value, InputNotFoundError)
    cache.prefetch([uri])  # swallowed: the read above is where it is reported
    cache.close()
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("DAMO_S3_ENDPOINT", dead)
    with pytest.raises(StorageError, match=f"cannot reach bucket '{s3_bucket}' at endpoint {dead}"):
        cache.local_path(f"s3://{s3_bucket}/x.jpg")


def test_prefetch_fills_cache(s3_bucket: str, tmp_path: Path) -> None:
    uris = list(_upload(s3_bucket, {f"p/{i}.jpg": os.urandom(64) for i in range(6)}).items())
    local = tmp_path / "local.jpg"
    local.write_bytes(b"L")
    with BlobCache(tmp_path / "c", 10_000, prefetch_threads=3) as cache:
        order = [u for u, _ in uris] + [uris[0][0], str(local)]
        cache.prefetch(order)
        deadline = time.monotonic() + 10
        while not all(cache.entry_path(u).exists() for u, _ in uris):
            assert time.monotonic() < deadline, "prefetch did not fill the cache"
            time.sleep(0.02)
    store = open_store(f"s3://{s3_bucket}")
    for key in store.list("p"):
        store.delete(key)
    assert store.list("p") == []
    assert all(cache.read_bytes(u) == data for u, data in uris)  # no S3 needed any more
    assert cache.size_bytes() == 6 * 64


def test_prefetch_threads_keep_their_connections(s3_bucket: str, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Threads sharing one S3 client each keep a pooled connection: none is discarded (urllib3
    keeps one per host by default and logs every connection it throws away)."""
    uris = _upload(s3_bucket, {f"q/{i}.jpg": os.urandom(4096) for i in range(32)})
    with caplog.at_level("WARNING", logger="urllib3.connectionpool"), \
            BlobCache(tmp_path / "c", 10_000_000, prefetch_threads=4) as cache:
        cache.prefetch(list(uris))
        deadline = time.monotonic() + 10
        while not all(cache.entry_path(u).exists() for u in uris):
            assert time.monotonic() < deadline, "prefetch did not fill the cache"
            time.sleep(0.02)
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_threads_share_one_download(s3_bucket: str, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    uri, data = next(iter(_upload(s3_bucket, {"same.jpg": os.urandom(50_000)}).items()))
    store, downloads = blob_cache._store(s3_bucket), []
    real_get = store.get_file

    def counted(key: str, local: str) -> Path:
        downloads.append(key)
        time.sleep(0.2)  # keep the download in flight while the others ask
        return real_get(key, local)

    monkeypatch.setattr(store, "get_file", counted)
    cache = BlobCache(tmp_path, 1_000_000)
    cache.prefetch([uri])
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(cache.read_bytes, [uri] * 6))
    cache.close()
    assert results == [data] * 6 and downloads == ["same.jpg"]


def _read_all(args: tuple[BlobCache, list[str], dict[str, str], int]) -> int:
    """One worker process: read every URI four times in its own order; count wrong bytes."""
    cache, uris, digests, seed = args  # pickled across: no startup rescan hides drift
    order = uris * 4
    random.Random(seed).shuffle(order)
    return sum(hashlib.sha256(cache.read_bytes(u)).hexdigest() != digests[u] for u in order)


def test_processes_share_a_small_cache(s3_bucket: str, tmp_path: Path) -> None:
    objects = _upload(s3_bucket, {f"mp/{i}.jpg": os.urandom(2048 + i) for i in range(12)})
    digests = {u: hashlib.sha256(d).hexdigest() for u, d in objects.items()}
    limit = 5 * 2100  # about five of twelve objects: constant eviction and refetching
    cache = BlobCache(tmp_path, limit)
    cache.read_bytes(next(iter(objects)))  # the parent's S3 client exists before the fork
    jobs = [(cache, list(objects), digests, seed) for seed in range(4)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        wrong = pool.map(_read_all, jobs)
    assert wrong == [0, 0, 0, 0]
    assert cache.size_bytes() == _entries_total(tmp_path) <= limit  # running total exact
    assert not list((tmp_path / "tmp").iterdir())
