"""The pipeline's steps run inside the images that scripts/images.sh builds, as on a cluster.

Marked ``container``: the default test run deselects it (it needs a Docker daemon and the
built images); ``.ci/run`` starts a private daemon (scripts/dockerd.sh), builds the images and
runs ``pytest -m container``. Each step is the CLI a component calls, in the CPU image as its
non-root user, with no network but the host's loopback: synthetic data → one tiny training
epoch → COCO evaluation → ONNX export → deployment, from the CPU image, to Triton running from
the Triton image with its admin API keyed; then a plain ``tritonclient`` gRPC request from the
host gets detections back. The shared fixtures (images, work directory, training, export) are
in conftest.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from components._image import DAMO_IMAGE
from components._image import DAMO_TRITON_IMAGE as TRITON_IMAGE
from damo_core.serve import admin
from damo_core.serve.local_server import free_ports
from tests.containers.helpers import detect, step
from tests.containers.helpers import docker as _docker

pytestmark = pytest.mark.container


def test_evaluate_in_the_cpu_image(work: Path, trained: Path) -> None:
    step(work, "evaluate", "--weights", "/work/run/best.pt", "--data",
         "/work/synth/dataset.yaml", "--out", "/work/eval.json")
    metrics = json.loads((work / "eval.json").read_text())
    assert 0.0 <= metrics["AP50"] <= 1.0


@pytest.fixture(scope="module")
def triton(work: Path) -> Iterator[tuple[str, str]]:
    """Triton from its image on free 127.0.0.1 ports, explicit model control, admin keyed."""
    key = admin.new_key()
    grpc_port, http_port, metrics_port = free_ports(3)
    (work / "repo").mkdir(mode=0o777, exist_ok=True)
    (work / "repo").chmod(0o777)
    name = f"damo-triton-test-{os.getpid()}"
    started = _docker(
        "run", "-d", "--rm", "--name", name, "--network", "host", "-v", f"{work}:/work",
        "-e", f"TRITON_HTTP_PORT={http_port}", TRITON_IMAGE,
        "--model-repository=/work/repo", "--model-control-mode=explicit",
        "--http-address=127.0.0.1", f"--http-port={http_port}", "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}", "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}", *admin.server_args(key), timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    logs = _docker("logs", name, timeout=30)
                    pytest.fail(f"Triton from {TRITON_IMAGE} not ready in 120 s:\n"
                                f"{logs.stdout[-2000:]}{logs.stderr[-2000:]}")
                time.sleep(0.5)
        yield f"127.0.0.1:{grpc_port}", key
    finally:
        _docker("rm", "-f", name, timeout=60)


def test_export_and_deploy_in_containers_then_infer(work: Path, exported: Path,
                                                   triton: tuple[str, str]) -> None:
    url, key = triton
    # Without the key the deploy step is refused by the containerized Triton, in one line.
    refused = _docker("run", "--rm", "--network", "host", "-v", f"{work}:/work", DAMO_IMAGE,
                      "deploy", "/work/export", "--repo", "/work/repo", "--url", url)
    assert refused.returncode == 2 and admin.ADMIN_KEY_ENV in refused.stderr, refused.stderr
    step(work, "deploy", "/work/export", "--repo", "/work/repo", "--url", url,
         env={admin.ADMIN_KEY_ENV: key})

    detect(url, "damoyolo_ns")


@pytest.mark.parametrize("image", [DAMO_IMAGE, TRITON_IMAGE])
def test_no_builder_credentials_in_any_layer(images: None, image: str) -> None:
    """``scripts/images.sh check=IMAGE``: history, environment and the exported filesystem hold
    no pip configuration, secret mount, pip cache, local index URL or builder CA certificate."""
    root = Path(__file__).parents[2]
    done = subprocess.run(["bash", str(root / "scripts" / "images.sh"), f"check={image}"],
                          capture_output=True, text=True, timeout=600, check=False, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{image}: clean" in done.stderr, done.stderr[-3000:]
