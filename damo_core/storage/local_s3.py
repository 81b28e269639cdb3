"""A real S3 endpoint on 127.0.0.1 for the length of a local run: moto's server mode.

Why: the embedded default should walk the path a cluster run walks (sources named by
``s3://`` URIs, manifests pointing at S3 objects, images read through the on-disk cache), and
a laptop has no MinIO. moto speaks the S3 protocol in one Python process; it is started on a
free loopback port with a bounded wait, the environment the storage layer reads
(``DAMO_S3_ENDPOINT`` and credentials) points at it while it runs, and it is stopped by its PID
however the run ends. Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from damo_core.environ import exported_env
from damo_core.errors import UnavailableError

__all__ = ["START_TIMEOUT_S", "LocalS3", "local_s3", "running", "wait_ready"]

START_TIMEOUT_S = 30.0
_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local-secret",
                "AWS_REGION": "us-east-1"}


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path,
               timeout_s: float = START_TIMEOUT_S) -> None:
    """Until ``url`` answers; a server that exits or never answers is an error with its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}: "
                               f"{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=1.0):  # noqa: S310 - loopback only
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def running(args: Sequence[str], ready_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args`` (output to ``log``), wait until ``ready_url`` answers, stop on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(ready_url, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass(frozen=True)
class LocalS3:
    """A running local endpoint: its URL and the server's PID (e.g. to read its memory)."""

    url: str
    pid: int


@contextlib.contextmanager
def local_s3(log: Path) -> Iterator[LocalS3]:
    """Run moto's S3 server on 127.0.0.1 and point the storage environment at it; yields the
    endpoint (URL and PID). The previous environment is restored afterwards."""
    from damo_core.serve.local_server import free_ports

    if importlib.util.find_spec("moto") is None:
        raise UnavailableError("the local run's S3 endpoint needs moto's server: "
                               "pip install 'moto[server]>=5' (part of the [dev] extra)")
    port = free_ports(1)[0]
    url = f"http://127.0.0.1:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    settings = {"DAMO_S3_ENDPOINT": url, **_CREDENTIALS, "AWS_SESSION_TOKEN": None}
    with running(command, url, log) as proc, exported_env(settings):
        yield LocalS3(url, proc.pid)
