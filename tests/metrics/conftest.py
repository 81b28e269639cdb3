"""Fixtures starting a real Pushgateway and Prometheus (see ``prom_servers``) once per module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prom_servers import (
    TRITON_MODELS,
    FakeTritonMetrics,
    Prometheus,
    binary,
    free_port,
    prometheus_config,
    running,
)


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = binary("prometheus-pushgateway")
    tmp = tmp_path_factory.mktemp("pushgateway")
    address = f"127.0.0.1:{free_port()}"
    # Debian's build defaults --persistence.file to /var/lib/prometheus; keep state in tmp.
    args = [exe, f"--web.listen-address={address}",
            f"--persistence.file={tmp / 'pushgateway.data'}"]
    with running(args, f"http://{address}/-/ready", tmp / "log.txt"):
        yield f"http://{address}"


@pytest.fixture(scope="module")
def triton_metrics() -> Iterator[str]:
    """``host:port`` of Triton's metrics: a real one from $DAMO_TEST_TRITON_METRICS, else the
    Triton-shaped stand-in (FakeTritonMetrics)."""
    real = os.environ.get("DAMO_TEST_TRITON_METRICS")
    if real:
        yield real
        return
    with FakeTritonMetrics(TRITON_MODELS) as fake:
        yield fake.target


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, pushgateway: str,
               triton_metrics: str) -> Iterator[Prometheus]:
    exe = binary("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(yaml.safe_dump(
        prometheus_config(triton_metrics, pushgateway.removeprefix("http://"))))
    address = f"127.0.0.1:{free_port()}"
    args = [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address={address}", "--storage.tsdb.retention.time=1h"]
    with running(args, f"http://{address}/-/ready", Path(tmp / "log.txt")):
        yield Prometheus(f"http://{address}")
