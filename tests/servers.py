"""Real servers started by tests: a free loopback port, start-and-wait, always stopped.

One copy for every test that runs a server process (Prometheus, Pushgateway, moto's S3) or
needs a port nobody listens on, so each fixture only says what to run and where it answers.
"""

from __future__ import annotations

import urllib.request

from damo_core.serve.local_server import free_ports
from damo_core.storage.local_s3 import START_TIMEOUT_S, running, wait_ready

__all__ = ["START_TIMEOUT_S", "free_port", "http_get", "running", "wait_ready"]


def free_port() -> int:
    """A loopback port free right now (also: a port nobody answers on, once released)."""
    return free_ports(1)[0]


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
        return response.read()
