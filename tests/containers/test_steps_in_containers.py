"""The pipeline's steps run inside the images that scripts/images.sh builds, as on a cluster.

Marked ``container``: the default test run deselects it (it needs a Docker daemon and the
built images); ``.ci/run`` starts a private daemon (scripts/dockerd.sh), builds the images and
runs ``pytest -m container``. Each step is the CLI a component calls, in the CPU image as its
non-root user, with no network but the host's loopback: synthetic data → one tiny training
epoch → COCO evaluation → ONNX export → deployment, from the CPU image, to Triton running from
the Triton image with its admin API keyed; then a plain ``tritonclient`` gRPC request from the
host gets detections back.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components._image import DAMO_IMAGE
from components._image import DAMO_TRITON_IMAGE as TRITON_IMAGE
from damo_core.serve import admin
from damo_core.serve.local_server import free_ports

pytestmark = pytest.mark.container

DOCKER = shutil.which("docker", path="/usr/bin") or "docker"  # docker.io's client
STEP_TIMEOUT_S = 600


def _docker(*args: str, timeout: float = STEP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def images() -> None:
    if not os.environ.get("DOCKER_HOST"):
        pytest.fail("DOCKER_HOST is not set: start a daemon with `eval \"$(scripts/dockerd.sh "
                    "start)\"` and build the images with scripts/images.sh first")
    for image in (DAMO_IMAGE, TRITON_IMAGE):
        found = _docker("image", "inspect", image, timeout=60)
        assert found.returncode == 0, f"image {image} is not built: run scripts/images.sh"


@pytest.fixture(scope="module")
def work(images: None) -> Iterator[Path]:
    """A directory both images' users can write: the artifact store the steps share."""
    path = Path(tempfile.mkdtemp(prefix="damo-containers-", dir="/var/tmp"))
    path.chmod(0o777)
    yield path
    # files written by the containers' users: remove them from inside a container too
    _docker("run", "--rm", "--user", "0", "--entrypoint", "rm", "-v", f"{path}:/work",
            DAMO_IMAGE, "-rf", "/work/synth", "/work/run", "/work/export", "/work/repo",
            "/work/eval.json")
    shutil.rmtree(path, ignore_errors=True)


def step(work: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``damo ARGS`` in the CPU image with ``work`` at /work; its exit code must be 0."""
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    done = _docker("run", "--rm", "--network", "host", "-v", f"{work}:/work", "-w", "/work",
                   *flags, DAMO_IMAGE, *args)
    assert done.returncode == 0, (f"`damo {' '.join(args)}` in {DAMO_IMAGE} exited "
                                  f"{done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


@pytest.fixture(scope="module")
def trained(work: Path) -> Path:
    step(work, "data", "synth", "--out", "/work/synth", "--images", "16", "--img-size", "96")
    step(work, "train", "--model", "damoyolo_ns", "--data", "/work/synth/dataset.yaml",
         "--out", "/work/run", "--epochs", "1", "--batch", "4", "--img-size", "64",
         "workers=0", "precise_bn_batches=1")
    assert (work / "run" / "best.pt").is_file() and (work / "run" / "results.csv").is_file()
    return work / "run" / "best.pt"


def test_evaluate_in_the_cpu_image(work: Path, trained: Path) -> None:
    step(work, "eval", "--weights", "/work/run/best.pt", "--data", "/work/synth/dataset.yaml",
         "--out", "/work/eval.json")
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


def test_export_and_deploy_in_containers_then_infer(work: Path, trained: Path,
                                                   triton: tuple[str, str]) -> None:
    url, key = triton
    step(work, "export", "--weights", "/work/run/best.pt", "-f", "onnx", "--out",
         "/work/export")
    assert list((work / "export").glob("*.onnx")), "the export step wrote no ONNX file"
    # Without the key the deploy step is refused by the containerized Triton, in one line.
    refused = _docker("run", "--rm", "--network", "host", "-v", f"{work}:/work", DAMO_IMAGE,
                      "serve", "deploy", "/work/export", "--repo", "/work/repo", "--url", url)
    assert refused.returncode == 2 and admin.ADMIN_KEY_ENV in refused.stderr, refused.stderr
    step(work, "serve", "deploy", "/work/export", "--repo", "/work/repo", "--url", url,
         env={admin.ADMIN_KEY_ENV: key})

    import tritonclient.grpc as grpcclient

    from damo_core.serve import model_config as mc

    buf = io.BytesIO()
    Image.fromarray(np.full((96, 128, 3), 127, np.uint8)).save(buf, format="PNG")
    data = np.frombuffer(buf.getvalue(), dtype=np.uint8)[None]
    client = grpcclient.InferenceServerClient(url)
    tensor = grpcclient.InferInput(mc.IMAGE_INPUT, list(data.shape), "UINT8")
    tensor.set_data_from_numpy(data)
    result = client.infer("damoyolo_ns", [tensor])
    boxes, count = result.as_numpy(mc.DET_BOXES), result.as_numpy(mc.NUM_DETS)
    assert boxes.ndim == 3 and boxes.shape[0] == 1 and boxes.shape[-1] == 4
    assert count.shape[0] == 1 and 0 <= int(count.ravel()[0]) <= boxes.shape[1]
    client.close()


@pytest.mark.parametrize("image", [DAMO_IMAGE, TRITON_IMAGE])
def test_no_builder_credentials_in_any_layer(images: None, image: str) -> None:
    """``scripts/images.sh check=IMAGE``: history, environment and the exported filesystem hold
    no pip configuration, secret mount, pip cache, local index URL or builder CA certificate."""
    root = Path(__file__).parents[2]
    done = subprocess.run(["bash", str(root / "scripts" / "images.sh"), f"check={image}"],
                          capture_output=True, text=True, timeout=600, check=False, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{image}: clean" in done.stderr, done.stderr[-3000:]
