"""Real Prometheus and Pushgateway processes on 127.0.0.1.

The binaries are Debian's ``prometheus`` (2.42) and ``prometheus-pushgateway`` (1.5), started
here on free ports with temporary data directories and stopped by the fixtures' finalisers;
the packages' own system services are never used. Missing binaries fail with the install
line, never skip: these tests are the proof that every dashboard query returns data.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

INSTALL = ("apt-get install -y prometheus prometheus-pushgateway (then leave the packages' "
           "services stopped; the tests start the binaries themselves)")
START_TIMEOUT_S = 30.0
MANIFEST_CONFIG = Path(__file__).parents[2] / "manifests" / "base" / "prometheus.yml"


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file()
                                  else None)
    if path is None:
        pytest.fail(f"{name} binary not found; install it with: {INSTALL}", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def prometheus_config(triton_target: str, pushgateway_target: str) -> dict[str, Any]:
    """The manifests' scrape jobs with local targets and a 1 s interval (config kept in sync)."""
    config = yaml.safe_load(MANIFEST_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    targets = {"triton": triton_target, "pushgateway": pushgateway_target}
    for job in config["scrape_configs"]:
        for key in [k for k in job if k.endswith("_sd_configs") or k == "static_configs"]:
            del job[key]
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict[str, Any]:
        """Instant query; returns the API's JSON (errors come back as status 'error')."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            return json.loads(http_get(url))
        except urllib.error.HTTPError as err:  # 400/422 carry the PromQL error as JSON
            return json.loads(err.read())

    def label_values(self, label: str, metric: str) -> list[str]:
        url = (f"{self.url}/api/v1/label/{label}/values?"
               f"{urllib.parse.urlencode({'match[]': metric})}")
        return json.loads(http_get(url))["data"]
