"""Real servers started by tests: a free loopback port, start-and-wait, always stopped.

One copy for every test that runs a server process (Prometheus, Pushgateway, moto's S3, an
MLflow tracking server) or needs a port nobody listens on, so each fixture only says what to
run and where it answers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from damo_core.serve.local_server import free_ports
from damo_core.storage.local_s3 import START_TIMEOUT_S, running, wait_ready

__all__ = ["MLFLOW_START_TIMEOUT_S", "START_TIMEOUT_S", "free_port", "http_get",
           "mlflow_server", "running", "running_group", "wait_ready"]

# `mlflow server` imports its whole web app and creates its database before /health answers:
# ~20 s on a shared 2-core machine.
MLFLOW_START_TIMEOUT_S = 90.0


def free_port() -> int:
    """A loopback port free right now (also: a port nobody answers on, once released)."""
    return free_ports(1)[0]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
        return response.read()


@contextlib.contextmanager
def running_group(args: Sequence[str], ready_url: str, log: Path, *,
                  env: Mapping[str, str] | None = None,
                  timeout_s: float = START_TIMEOUT_S) -> Iterator[subprocess.Popen[bytes]]:
    """As :func:`~damo_core.storage.local_s3.running`, for a server that starts workers of its
    own (``mlflow server`` runs uvicorn): it gets a session and process group of its own, and
    that whole group is stopped by its id (SIGTERM, then SIGKILL), so no worker outlives it."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, **(env or {})})
    try:
        wait_ready(ready_url, proc, log, timeout_s)
        yield proc
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM to the whole group; whatever is left of it after ``grace_s`` gets SIGKILL."""
    group = proc.pid  # start_new_session: the leader's pid is the group's id
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, or it stays in the group as a zombie
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    proc.wait(timeout=10)


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real ``mlflow server`` on a free loopback port, one worker, its runs in a SQLite
    database and its artifacts in ``root/artifacts`` (served through the server, as a remote
    client would see them); yields its URL. The server's job runner (extra processes for
    MLflow's GenAI jobs) is switched off: nothing here uses it."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts"]
    with running_group(args, f"{url}/health", root / "mlflow-server.log",
                       env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                       timeout_s=MLFLOW_START_TIMEOUT_S):
        yield url
