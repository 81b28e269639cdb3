"""Fixtures starting a real Pushgateway, Prometheus and Triton (see ``prom_servers``) once per
module. Triton is the project's local CPU server with the serving tests' exported model
deployed, answering a few real requests, so the latency dashboard's series are Triton's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prom_servers import Prometheus, binary, prometheus_config

from damo_core.serve.client import TritonDetector
from damo_core.serve.deploy import deploy
from damo_core.serve.local_server import LocalTriton
from tests.serve.conftest import MODEL, make_exported
from tests.servers import free_port, running


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
def triton_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a real Triton's metrics, serving ``MODEL`` after a few requests."""
    exported = make_exported(tmp_path_factory.mktemp("served_model"))
    repo = tmp_path_factory.mktemp("triton_repo")
    with LocalTriton(repo, startup_timeout=120) as server:
        deploy(exported.exported_dir, repo, server.grpc_url, metadata=exported.metadata,
               variant="python")
        detector = TritonDetector(server.grpc_url, MODEL)
        for _ in range(3):
            detector.detect(exported.images[:1])
        yield server.metrics_url.removeprefix("http://").removesuffix("/metrics")


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
