"""``damo serve local --container``: the local Triton from the Triton image behaves as the
bundled one (issue 16): ready only when its own server is, an export deployed from the host
answers over gRPC, SIGTERM stops it and removes its container, a server that dies fails the
command, and a missing image is one line naming it and how to build it. Each run is the real
CLI in a subprocess (tests/security/test_serve_signals.py's runner); every wait is bounded."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from components._image import DAMO_TRITON_IMAGE
from damo_core.serve import admin
from damo_core.serve.local_server import free_ports, port_in_use
from tests.containers.helpers import detect, docker
from tests.security.test_serve_signals import _Local, _wait_until

pytestmark = pytest.mark.container

READY_TIMEOUT_S, STOP_TIMEOUT_S = 120.0, 60.0
READY = re.compile(r"Triton ready \(container (\S+) of (\S+), pid (\d+)\)")
KEY = re.compile(rf"export {admin.ADMIN_KEY_ENV}=(\S+)")


@pytest.fixture()
def runs(images: None) -> Iterator[list[tuple[_Local, list[str]]]]:
    """Started servers with their containers' names: killed and removed after the test."""
    started: list[tuple[_Local, list[str]]] = []
    yield started
    for local, names in started:
        local.kill_all()
        for name in names:
            docker("rm", "-f", name, timeout=60)


def _start(repo: Path, runs: list[tuple[_Local, list[str]]], *extra: str,
           ) -> tuple[_Local, list[int], str]:
    """``damo serve local --container`` on free ports; waits until it says ready."""
    ports = free_ports(3)
    env_key = os.environ.pop(admin.ADMIN_KEY_ENV, None)  # let the server make up a key
    try:
        local = _Local(repo, ports, ["--container", *extra])
    finally:
        if env_key is not None:
            os.environ[admin.ADMIN_KEY_ENV] = env_key
    names: list[str] = []
    runs.append((local, names))
    _wait_until(lambda: READY.search(local.output) or local.proc.poll() is not None,
                READY_TIMEOUT_S)
    match = READY.search(local.output)
    assert match, f"never ready:\n{local.output}"
    names.append(match.group(1))
    assert match.group(2) == (extra[extra.index("--image") + 1] if "--image" in extra
                              else DAMO_TRITON_IMAGE)
    return local, ports, match.group(1)


def _container_gone(name: str) -> bool:
    listed = docker("ps", "-aq", "--filter", f"name=^{name}$", timeout=60)
    return listed.returncode == 0 and not listed.stdout.strip()


def test_deploy_to_it_infer_then_sigterm_removes_the_container(
        work: Path, exported: Path, runs: list[tuple[_Local, list[str]]]) -> None:
    repo = work / "local-repo"
    repo.mkdir()
    local, (grpc, http, metrics), name = _start(repo, runs)
    key = KEY.search(local.output)
    assert key, local.output
    url = f"127.0.0.1:{grpc}"
    deployed = subprocess.run(
        [sys.executable, "-m", "damo_core.cli", "deploy", str(exported), "--repo", str(repo),
         "--url", url], capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, admin.ADMIN_KEY_ENV: key.group(1)})
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-3000:]
    detect(url, "damoyolo_ns")

    local.proc.send_signal(signal.SIGTERM)
    assert local.finish(STOP_TIMEOUT_S) == 128 + signal.SIGTERM, local.output
    assert _container_gone(name), docker("ps", "-a").stdout
    assert not any(port_in_use(p) for p in (grpc, http, metrics))


def test_container_dying_fails_the_command(work: Path,
                                           runs: list[tuple[_Local, list[str]]]) -> None:
    repo = work / "empty-repo"
    repo.mkdir()
    local, _, name = _start(repo, runs)
    assert docker("kill", name, timeout=60).returncode == 0
    assert local.finish(STOP_TIMEOUT_S) == 1, local.output
    assert "exited unexpectedly with code" in local.output, local.output
    assert _container_gone(name)


def test_missing_image_is_one_line_naming_it(tmp_path: Path, images: None) -> None:
    image = "damo-no-such-image:0"
    done = subprocess.run(
        [sys.executable, "-m", "damo_core.cli", "serve", "local", "--repo", str(tmp_path),
         "--container", "--image", image], capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and image in lines[0] and "scripts/images.sh triton" in lines[0], \
        done.stderr
