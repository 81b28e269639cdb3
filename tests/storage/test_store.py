"""The Store API on both backends: a local directory and a real S3 server (moto)."""

from __future__ import annotations

from pathlib import Path

import pytest

from damo_core.storage import StorageError, StorageNotFoundError, open_store
from damo_core.storage.local import LocalStore
from damo_core.storage.s3 import S3Store
from tests.servers import free_port


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "local":
        return open_store(tmp_path / "root")
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/some/prefix")


def test_round_trip_list_exists_delete(store, tmp_path: Path) -> None:
    assert store.list() == []
    assert not store.exists("a/b.txt")
    uri = store.write_bytes("a/b.txt", b"hello")
    assert uri.endswith("a/b.txt")
    store.write_text("a/c/d.json", '{"x": 1}')
    src = tmp_path / "local.bin"
    src.write_bytes(bytes(range(256)) * 100)
    store.put_file(src, "blobs/x.bin")
    assert store.list() == ["a/b.txt", "a/c/d.json", "blobs/x.bin"]
    assert store.list("a") == ["a/b.txt", "a/c/d.json"]
    assert store.read_bytes("a/b.txt") == b"hello"
    assert store.exists("a/c/d.json")
    got = store.get_file("blobs/x.bin", tmp_path / "out" / "x.bin")
    assert got.read_bytes() == src.read_bytes()
    with store.open_read("blobs/x.bin") as stream:
        assert stream.read(3) == bytes([0, 1, 2])
        assert len(stream.read()) == 256 * 100 - 3
    store.delete("a/b.txt")
    store.delete("a/b.txt")  # idempotent
    assert not store.exists("a/b.txt")
    assert store.child("a").list() == ["c/d.json"]


def test_missing_key_is_file_not_found(store) -> None:
    with pytest.raises(StorageNotFoundError, match="nope.txt"):
        store.read_bytes("nope.txt")
    assert isinstance(StorageNotFoundError("x"), FileNotFoundError)


@pytest.mark.parametrize("key", ["", "../escape", "a/../../b"])
def test_bad_keys_rejected(tmp_path: Path, key: str) -> None:
    with pytest.raises(StorageError, match="key"):
        LocalStore(tmp_path).write_bytes(key, b"x")


def test_uri_dispatch(tmp_path: Path, s3_env: str) -> None:
    assert isinstance(open_store(tmp_path), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    s3 = open_store("s3://bkt/pre/fix/")
    assert isinstance(s3, S3Store) and s3.uri("k") == "s3://bkt/pre/fix/k"
    assert s3.endpoint == s3_env
    with pytest.raises(StorageError, match="unsupported"):
        open_store("gs://bucket/x")


def test_missing_bucket_named(s3_env: str) -> None:
    with pytest.raises(StorageError, match="no-such-bucket-xyz.*does not exist"):
        open_store("s3://no-such-bucket-xyz/p").read_bytes("k")


def test_unreachable_endpoint_names_bucket_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # released: nobody listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.delenv("DAMO_S3_ENDPOINT", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(StorageError, match=rf"bucket 'far-away'.*{endpoint}"):
        open_store("s3://far-away/data").list()


def test_bad_endpoint_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAMO_S3_ENDPOINT", "ftp://host")
    with pytest.raises(StorageError, match="ftp://host"):
        open_store("s3://b/p")
