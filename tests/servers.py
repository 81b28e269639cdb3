"""Real servers started by tests: a free loopback port, start-and-wait, always stopped.

One copy for every test that runs a server process (Prometheus, Pushgateway, moto's S3) or
needs a port nobody listens on, so each fixture only says what to run and where it answers.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from damo_core.serve.local_server import free_ports

START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A loopback port free right now (also: a port nobody answers on, once released)."""
    return free_ports(1)[0]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
        return response.read()


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}: "
                               f"{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            http_get(url, timeout=1.0)
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def running(args: list[str], ready_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args`` (output to ``log``), wait until ``ready_url`` answers, stop on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
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
