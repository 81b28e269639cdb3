"""``damo serve local`` stops its tritonserver on SIGTERM, reports a server it does not own,
and fails when its server dies (issue 19, items 2 and 3). Each test runs the real CLI as a
subprocess; every wait is bounded."""

from __future__ import annotations

import http.server
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from damo_core.serve.local_server import free_ports, owns_port, port_in_use

READY_TIMEOUT_S, STOP_TIMEOUT_S = 120.0, 30.0
READY = re.compile(r"Triton ready \(pid (\d+)\).*log (\S+); Ctrl-C")


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); it is gone as far as ports and memory go
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _wait_until(check, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


class _Local:
    """``damo serve local`` in a subprocess (own process group, so a failing test can clean
    up everything it started), its output collected by a thread."""

    def __init__(self, repo: Path, ports: list[int], extra: Sequence[str] = ()) -> None:
        grpc, http, metrics = ports
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "damo_core.cli", "serve", "local", "--repo", str(repo),
             "--grpc-port", str(grpc), "--http-port", str(http), "--metrics-port",
             str(metrics), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self) -> tuple[int, Path]:
        found = _wait_until(lambda: READY.search(self.output) or self.proc.poll() is not None,
                            READY_TIMEOUT_S)
        match = READY.search(self.output)
        assert found and match, f"never ready:\n{self.output}"
        return int(match.group(1)), Path(match.group(2)).parent

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill_all(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture()
def started() -> Iterator[list[_Local]]:
    runs: list[_Local] = []
    yield runs
    for run in runs:
        run.kill_all()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_tritonserver_frees_ports_removes_temp_dir(signum: int, repo: Path,
                                                                 started: list[_Local]) -> None:
    ports = free_ports(3)
    local = _Local(repo, ports)
    started.append(local)
    pid, temp_dir = local.wait_ready()
    assert temp_dir.name.startswith("damo-triton-") and temp_dir.is_dir()
    assert not _pid_gone(pid) and all(port_in_use(p) for p in ports)

    local.proc.send_signal(signum)
    code = local.finish(STOP_TIMEOUT_S)
    assert code == (128 + signum if signum == signal.SIGTERM else 0), local.output
    assert _wait_until(lambda: _pid_gone(pid), 5), f"tritonserver {pid} still runs"
    assert not temp_dir.exists(), f"{temp_dir} left behind"
    assert _wait_until(lambda: not any(port_in_use(p) for p in ports), 5), "ports still bound"


class _FakeReady(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_port_held_by_another_ready_server_is_an_error(repo: Path,
                                                       started: list[_Local]) -> None:
    grpc, _, metrics = free_ports(3)
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeReady)
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    try:
        http_port = int(fake.server_address[1])
        assert owns_port(os.getpid(), http_port) is not False  # the check readiness uses
        local = _Local(repo, [grpc, http_port, metrics])
        started.append(local)
        code = local.finish(READY_TIMEOUT_S)
    finally:
        fake.shutdown()
        fake.server_close()
    assert code != 0, local.output
    assert "Triton ready" not in local.output
    errors = [line for line in local.lines if line.startswith("error:")]
    assert len(errors) == 1 and str(http_port) in errors[0] and "in use" in errors[0], \
        local.output


def test_tritonserver_dying_fails_the_command(repo: Path, started: list[_Local]) -> None:
    local = _Local(repo, free_ports(3))
    started.append(local)
    pid, temp_dir = local.wait_ready()
    os.kill(pid, signal.SIGKILL)
    code = local.finish(STOP_TIMEOUT_S)
    assert code == 1, local.output
    errors = [line for line in local.lines if line.startswith("error:")]
    assert len(errors) == 1 and "tritonserver exited unexpectedly" in errors[0], local.output
    assert not temp_dir.exists()
