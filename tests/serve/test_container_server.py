"""``damo serve local --container`` without docker (issue 16): the ``docker run`` command
line, the stop that removes the container by name, and the one-line errors for a missing
docker client, a daemon that does not answer and an image that is not built. A fake docker
client (a shell script that records its arguments) stands in for the real one; the real
container runs in tests/containers/test_serve_local_container.py."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.errors import UnavailableError
from damo_core.serve import admin, container_server
from damo_core.serve.container_server import ContainerTriton, find_docker
from damo_core.serve.errors import TritonStartError
from damo_core.serve.local_server import free_ports

IMAGE = "example/damo-triton:test"
KEY = "k" * 32


def fake_docker(tmp_path: Path, inspect: str = "echo sha256:0", run: str = "exit 3") -> Path:
    """A docker client that appends each call's arguments to ``calls`` and answers
    ``image inspect`` and ``run`` with the given shell snippets (anything else: exit 0)."""
    script = tmp_path / "docker"
    script.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> {shlex.quote(str(tmp_path / 'calls'))}
case "$1 $2" in
  "image inspect") {inspect} ;;
  run*) {run} ;;
esac
""")
    script.chmod(0o755)
    return script


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


def test_docker_run_command_then_stop_and_remove_by_name(tmp_path: Path, repo: Path) -> None:
    """A container that exits during start-up: the start fails with the server's output, and
    the container is stopped and removed by its name before the error reaches the caller."""
    docker = fake_docker(tmp_path, run="echo 'E1130 server: cannot bind'; exit 3")
    grpc, http, metrics = free_ports(3)
    server = ContainerTriton(repo, image=IMAGE, docker=str(docker), load=["*"],
                             ports=(grpc, http, metrics), admin_key=KEY)
    with pytest.raises(TritonStartError, match="(?s)code 3 during start-up.*cannot bind"):
        server.start()
    run = next(c for c in calls(tmp_path) if c.startswith("run ")).split()
    assert run[:run.index(IMAGE)] == [
        "run", "--rm", "--name", server.name, "--pull", "never", "--network", "host",
        "--user", f"{os.getuid()}:{os.getgid()}", "--shm-size", container_server.SHM_SIZE,
        "--label", "damo-pipeline.serve=local", "--env", f"TRITON_HTTP_PORT={http}",
        "--volume", f"{repo}:{repo}"]
    flags = run[run.index(IMAGE) + 1:]
    assert flags[0] == f"--model-repository={repo}"
    for flag in ("--model-control-mode=explicit", "--load-model=*", "--grpc-address=127.0.0.1",
                 f"--grpc-port={grpc}", "--http-address=127.0.0.1", f"--http-port={http}",
                 "--metrics-address=127.0.0.1", f"--metrics-port={metrics}",
                 *admin.server_args(KEY)):
        assert flag in flags
    assert not any(f.startswith("--backend-directory") for f in flags)  # the image's own
    assert calls(tmp_path)[-2:] == [f"stop --time {container_server.STOP_GRACE_S} {server.name}",
                                    f"rm -f {server.name}"]
    assert server.temp_dir is None and server.pid is None


def test_image_not_built_is_one_line_with_the_build_command(tmp_path: Path, repo: Path) -> None:
    docker = fake_docker(tmp_path, inspect=f"echo 'Error: No such image: {IMAGE}' >&2; exit 1")
    server = ContainerTriton(repo, image=IMAGE, docker=str(docker))
    with pytest.raises(UnavailableError) as err:
        server.start()
    message = str(err.value)
    assert "\n" not in message and IMAGE in message and "scripts/images.sh triton" in message
    assert not any(c.startswith("run ") for c in calls(tmp_path))
    assert server.temp_dir is None


def test_daemon_down_names_the_image_and_how_to_start_one(tmp_path: Path, repo: Path) -> None:
    said = "Cannot connect to the Docker daemon at unix:///nowhere. Is the daemon running?"
    docker = fake_docker(tmp_path, inspect=f"echo '{said}' >&2; exit 1")
    with pytest.raises(UnavailableError) as err:
        ContainerTriton(repo, image=IMAGE, docker=str(docker)).start()
    message = str(err.value)
    assert "\n" not in message and IMAGE in message and said in message
    assert "scripts/dockerd.sh start" in message


def test_docker_that_hangs_is_bounded(tmp_path: Path, repo: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container_server, "DOCKER_TIMEOUT_S", 0.5)
    docker = fake_docker(tmp_path, inspect="exec sleep 30")
    with pytest.raises(UnavailableError, match="did not answer within"):
        ContainerTriton(repo, image=IMAGE, docker=str(docker)).start()


def test_no_docker_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UnavailableError, match="needs the docker client.*not on PATH"):
        find_docker()


def test_cli_container_without_docker_is_one_line(tmp_path: Path, repo: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "local", "--repo", str(repo), "--container"])
    assert result.exit_code == 2, result.output
    assert "docker client" in result.output and "Traceback" not in result.output


def test_cli_image_needs_container(repo: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "local", "--repo", str(repo), "--image", IMAGE])
    assert result.exit_code == 2 and "--container" in result.output, result.output
