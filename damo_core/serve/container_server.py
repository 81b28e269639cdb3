"""``damo serve local --container``: the local Triton run from the Triton image (docker).

Why: the image (docker/Dockerfile.triton, tag ``DAMO_TRITON_IMAGE``) is what the cluster runs;
serving from it locally tries exactly that server, its Python and this package as installed
there, with no ``nvidia-pytriton`` wheel on the host. Everything else is
:class:`~damo_core.serve.local_server.LocalTriton`'s: the same flags (explicit model control,
127.0.0.1 ports, the admin key), the same readiness check of *this* server (the container's
process must hold the ports), the same start retries, log tail and stop on signals.

What differs is only how the server runs: ``docker run`` in the foreground (its output is the
server log; its exit code is the server's), with the host's network (so 127.0.0.1 is the
host's), the host user's uid/gid, and the model repository mounted at its own path (so deploy
writes and Triton reads the same paths). The container is named; stopping stops it
(``docker stop``, bounded), then removes it by name (``docker rm -f``), then reaps the client.
A missing docker client, an unreachable daemon or a missing image is an
:class:`~damo_core.errors.UnavailableError` in one line that says how to fix it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from damo_core.errors import UnavailableError
from damo_core.serve.local_server import LocalTriton

DOCKER_TIMEOUT_S = 30.0  # one docker client call (inspect, rm): the daemon answers in ms
STOP_GRACE_S = 10  # docker stop: SIGTERM, then SIGKILL after this many seconds
SHM_SIZE = "1g"  # the Python backend passes tensors through /dev/shm (docker's default: 64 MB)
BUILD_HINT = "build it with scripts/images.sh triton"


def find_docker(docker: str | None = None) -> str:
    """The docker client to use: ``docker`` if given, else the one on PATH."""
    found = docker or shutil.which("docker")
    if not found:
        raise UnavailableError("`damo serve local --container` needs the docker client, which "
                               "is not on PATH (Debian: apt-get install docker.io); or run "
                               "without --container")
    return found


def _docker(docker: str, *args: str, timeout: float | None = None,
            ) -> subprocess.CompletedProcess[str]:
    """One bounded docker client call (``timeout``, default :data:`DOCKER_TIMEOUT_S`); a hang
    or a client that cannot run is unavailable."""
    timeout = DOCKER_TIMEOUT_S if timeout is None else timeout
    try:
        return subprocess.run([docker, *args], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        host = os.environ.get("DOCKER_HOST", "(unset)")
        raise UnavailableError(f"`docker {args[0]}` did not answer within {timeout:.0f} s "
                               f"(DOCKER_HOST={host})") from None
    except OSError as err:
        raise UnavailableError(f"cannot run the docker client {docker}: {err}") from None


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["(no output)"])[-1]


def require_image(docker: str, image: str) -> None:
    """Fail in one line unless the daemon answers and has ``image`` (never pulled: the
    image is this repository's build, not a registry's)."""
    done = _docker(docker, "image", "inspect", "--format", "{{.Id}}", image)
    if done.returncode == 0:
        return
    said = _last_line(done.stderr)
    if "no such image" in said.lower():
        raise UnavailableError(f"image {image} is not built on this Docker daemon: {BUILD_HINT}")
    raise UnavailableError(f"docker cannot look up image {image}: {said} (start a daemon: "
                           f"eval \"$(scripts/dockerd.sh start)\", or set DOCKER_HOST); "
                           f"then {BUILD_HINT} if it is missing")


def container_command(docker: str, image: str, name: str, repo: Path, http_port: int,
                      server_args: Sequence[str]) -> list[str]:
    """``docker run`` of ``image``'s tritonserver, in the foreground, with ``repo`` mounted at
    its own path and the host's network, user and server flags."""
    return [docker, "run", "--rm", "--name", name, "--pull", "never", "--network", "host",
            "--user", f"{os.getuid()}:{os.getgid()}", "--shm-size", SHM_SIZE,
            "--label", "damo-pipeline.serve=local", "--env", f"TRITON_HTTP_PORT={http_port}",
            "--volume", f"{repo}:{repo}", image, f"--model-repository={repo}", *server_args]


class ContainerTriton(LocalTriton):
    """:class:`LocalTriton` whose server runs in a container of ``image``.

    ``docker``: the client (default: the one on PATH). ``pid`` is the ``docker run`` client's
    (it exits with the server); :attr:`name` is the container's.
    """

    def __init__(self, repo: str | Path, *, image: str, docker: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(repo, **kwargs)
        self.image, self._docker_arg = image, docker
        self.docker = ""
        self.name = f"damo-triton-local-{secrets.token_hex(4)}"

    def _prepare(self) -> None:
        self.docker = find_docker(self._docker_arg)
        require_image(self.docker, self.image)

    def _command(self) -> tuple[list[str], dict[str, str]]:
        return container_command(self.docker, self.image, self.name, self.repo, self.http_port,
                                 self.server_args()), dict(os.environ)

    def _server_pid(self) -> int | None:
        """The container's main process (tritonserver) as the host sees it."""
        done = _docker(self.docker, "inspect", "--format", "{{.State.Pid}}", self.name)
        pid = done.stdout.strip()
        return int(pid) if done.returncode == 0 and pid.isdigit() and int(pid) > 0 else None

    @property
    def where(self) -> str:
        return f"container {self.name} of {self.image}, pid {self.pid}"

    def _terminate(self) -> None:
        """Stop the container (graceful, bounded), remove it by name, then reap the client."""
        if self._proc is not None:
            self._remove_container()
        super()._terminate()

    def _remove_container(self) -> None:
        for args in (("stop", "--time", str(STOP_GRACE_S), self.name), ("rm", "-f", self.name)):
            try:
                _docker(self.docker, *args, timeout=DOCKER_TIMEOUT_S + STOP_GRACE_S)
            except UnavailableError as err:  # still try the next step and the client
                print(f"container {self.name}: {err}; remove it with: docker rm -f {self.name}",
                      file=sys.stderr)
