"""A real S3 protocol server (moto's server mode) on 127.0.0.1 for the storage tests.

Started once per session on a free port with a bounded wait, and always stopped. The
environment points ``DAMO_S3_ENDPOINT`` and dummy credentials at it, so code under test
reaches it exactly as it would reach MinIO in the cluster.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.servers import free_port, running


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a running moto S3 server (``moto[server]``)."""
    exe = shutil.which("moto_server")
    cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with running([*cmd, "-H", "127.0.0.1", "-p", str(port)], url, log):
        yield url


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the S3 environment variables at the moto server; returns the endpoint."""
    monkeypatch.setenv("DAMO_S3_ENDPOINT", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return s3_endpoint


@pytest.fixture
def s3_bucket(s3_env: str) -> str:
    """A fresh, empty bucket name on the moto server."""
    from damo_core.storage.s3 import S3Store

    name = f"test-{uuid.uuid4().hex[:12]}"
    S3Store(name).ensure_bucket()
    return name

