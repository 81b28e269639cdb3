"""Plain helpers of the container tests (the fixtures are in conftest.py): the docker client,
a ``damo`` step in the CPU image, and a detection request over gRPC."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from components._image import DAMO_IMAGE

DOCKER = shutil.which("docker", path="/usr/bin") or "docker"  # docker.io's client
STEP_TIMEOUT_S = 600


def docker(*args: str, timeout: float = STEP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def step(work: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``damo ARGS`` in the CPU image with ``work`` at /work; its exit code must be 0."""
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    done = docker("run", "--rm", "--network", "host", "-v", f"{work}:/work", "-w", "/work",
                  *flags, DAMO_IMAGE, *args)
    assert done.returncode == 0, (f"`damo {' '.join(args)}` in {DAMO_IMAGE} exited "
                                  f"{done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def detect(url: str, model: str) -> tuple[np.ndarray, np.ndarray]:
    """One PNG through ``model`` on the Triton at gRPC ``url`` with a plain tritonclient:
    (boxes [1, N, 4], count [1, ...]), checked for shape."""
    import tritonclient.grpc as grpcclient

    from damo_core.serve import model_config as mc

    buf = io.BytesIO()
    Image.fromarray(np.full((96, 128, 3), 127, np.uint8)).save(buf, format="PNG")
    data = np.frombuffer(buf.getvalue(), dtype=np.uint8)[None]
    client = grpcclient.InferenceServerClient(url)
    try:
        tensor = grpcclient.InferInput(mc.IMAGE_INPUT, list(data.shape), "UINT8")
        tensor.set_data_from_numpy(data)
        result = client.infer(model, [tensor])
    finally:
        client.close()
    boxes, count = result.as_numpy(mc.DET_BOXES), result.as_numpy(mc.NUM_DETS)
    assert boxes.ndim == 3 and boxes.shape[0] == 1 and boxes.shape[-1] == 4
    assert count.shape[0] == 1 and 0 <= int(count.ravel()[0]) <= boxes.shape[1]
    return boxes, count
