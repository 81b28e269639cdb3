"""Run the real ``tritonserver`` of the ``nvidia-pytriton`` wheel on this machine (CPU only).

The wheel ships a complete Triton build with the Python backend; pytriton's own ``Triton()``
wrapper does not start on Python 3.11.7, so :class:`LocalTriton` drives the binary directly:

* ``LD_LIBRARY_PATH`` gets the wheel's ``nvidia_pytriton.libs`` (the server's shared
  libraries) and Python's ``LIBDIR`` (``libpython`` for the backend stub);
* a backend directory is assembled in a temporary directory: ``python/`` with
  ``libtriton_python.so`` and the stub built for this Python version;
* the server binds 127.0.0.1 only, on free ports, in explicit model-control mode (models are
  loaded and unloaded through the repository API, which is what deploy uses);
* that API, which can run Python sent in a request, needs the admin key
  (:mod:`~damo_core.serve.admin`): ``DAMO_TRITON_ADMIN_KEY`` when set, else a random one per
  server. Deploy code in this process finds it by the server's URL; child processes (the
  KFP local runner's steps) through the env var, which the server sets while it runs if it
  was unset.

Start-up is bounded (``startup_timeout``) and a failure raises with the server log's tail.
Ready means *this* server is ready: the process is alive and holds the HTTP and gRPC ports
(a fixed port already taken is refused before the launch; another server answering the
health check on it is not mistaken for ours). Before each start, what a killed deploy left
in the repository is undone (:func:`~damo_core.serve.staging.recover`).

The server runs in its own session; stopping it SIGTERMs it, then kills its whole process
group (backend stubs included) and removes its temporary directory. The context manager
always stops it; :func:`stop_on_signals` makes SIGTERM/SIGHUP do so too, as Ctrl-C does.

Where the server runs is four hooks (``_prepare``, ``_command``, ``_server_pid``,
``_terminate``), so :class:`~damo_core.serve.container_server.ContainerTriton` runs the same
flags from the Triton image with this lifecycle (``damo serve local --container``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from damo_core.errors import InputNotFoundError
from damo_core.export.common import BackendUnavailableError
from damo_core.serve import admin, staging
from damo_core.serve.errors import TritonStartError

HOST = "127.0.0.1"
_PORT_RETRIES = 3


def pytriton_root() -> Path:
    """The installed ``pytriton`` package directory (found without importing it: importing
    pytriton pulls in its whole client stack)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError(
            "the local Triton server comes from the 'nvidia-pytriton' wheel, which is not "
            "installed; install it with: pip install --no-deps nvidia-pytriton==0.7.0")
    return Path(next(iter(spec.submodule_search_locations)))


def server_binary() -> Path:
    binary = pytriton_root() / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        raise BackendUnavailableError(f"{binary} is missing: reinstall nvidia-pytriton")
    return binary


def library_path() -> str:
    libs = pytriton_root().parent / "nvidia_pytriton.libs"
    parts = [str(libs), sysconfig.get_config_var("LIBDIR") or "",
             os.environ.get("LD_LIBRARY_PATH", "")]
    return os.pathsep.join(p for p in parts if p)


def make_backend_dir(target: Path) -> Path:
    """``target/python/`` with the Python backend and the stub for this interpreter."""
    tritonserver = pytriton_root() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = tritonserver / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise BackendUnavailableError(f"nvidia-pytriton has no Python backend stub for Python "
                                      f"{version} ({stub} is missing)")
    python = target / "python"
    shutil.copytree(tritonserver / "backends" / "python", python, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, python / stub.name)
    return target


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now (all sockets held open until all are picked)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_in_use(port: int) -> bool:
    """Whether something listens on ``port`` of 127.0.0.1 (or of every address) now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "used"
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on TCP ``port`` (any local address); ``None`` without /proc."""
    inodes: set[str] = set()
    found_table = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found_table = True
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and \
                    int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes if found_table else None


def owns_port(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the listening socket of ``port`` (``None``: cannot tell
    on this system)."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return None
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


class SignalExit(SystemExit):
    """SIGTERM/SIGHUP as an exception: ``with`` blocks (the server's ``stop``) run, then the
    process exits with 128 + the signal's number, without a traceback."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


@contextmanager
def stop_on_signals(signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Turn ``signals`` into :class:`SignalExit` inside the block, so a ``LocalTriton`` in it
    is stopped (process group killed, temporary directory removed) as on Ctrl-C, which Python
    already raises as ``KeyboardInterrupt``. Only the first signal raises: a second one
    during the clean-up does not cut it short. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        if not fired:
            fired.append(signum)
            raise SignalExit(signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class LocalTriton:
    """``with LocalTriton(repo) as server:`` a ready server; ``server.grpc_url`` for clients.

    ``load`` names the models loaded at start-up (``("*",)``: every model in the repository;
    empty: none, deploy loads them later). ``ports`` = (gRPC, HTTP, metrics); ``None`` picks
    free ones (and retries if another process grabs one first). The server's log goes to
    ``log_path`` (default: a file in the server's temporary directory, removed on stop).
    ``admin_key`` guards the model-repository API (default: the env var's, else random);
    ``key_generated`` says whether nobody chose it (``damo serve local`` then prints it).
    """

    def __init__(self, repo: str | Path, *, load: Sequence[str] = (),
                 ports: tuple[int, int, int] | None = None, startup_timeout: float = 120.0,
                 log_path: str | Path | None = None, extra_args: Sequence[str] = (),
                 admin_key: str | None = None) -> None:
        self.repo = Path(repo).resolve()
        if not self.repo.is_dir():
            raise InputNotFoundError(f"model repository {self.repo} does not exist")
        self.load, self.startup_timeout = tuple(load), startup_timeout
        self.extra_args = tuple(extra_args)
        chosen = admin_key or os.environ.get(admin.ADMIN_KEY_ENV)
        self.admin_key = admin.check_key(chosen or admin.new_key())
        self.key_generated = not chosen
        self._exported_key = False
        self._fixed_ports = ports
        self._log_arg = Path(log_path) if log_path else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._backends = Path()
        self._proc: subprocess.Popen[bytes] | None = None
        self.grpc_port = self.http_port = self.metrics_port = 0

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        assert self._tmp is not None or self._log_arg is not None, "server not started"
        return self._log_arg or Path(self._tmp.name) / "tritonserver.log"  # type: ignore[union-attr]

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> LocalTriton:
        if self._proc is not None:
            raise RuntimeError("this LocalTriton is already running")
        for line in staging.recover(self.repo):  # what a killed deploy left behind
            print(f"model repository: {line}", file=sys.stderr)
        self._tmp = tempfile.TemporaryDirectory(prefix="damo-triton-")
        try:
            self._prepare()
            for attempt in range(_PORT_RETRIES):
                try:
                    self._launch()
                    self._wait_ready()
                    self._share_key()
                    return self
                except TritonStartError as err:
                    self._terminate()
                    if "address already in use" not in str(err).lower() or \
                            self._fixed_ports or attempt == _PORT_RETRIES - 1:
                        raise
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def _prepare(self) -> None:
        """Once per start, before the launches: the backend directory the binary needs.
        Subclasses that run the server elsewhere check their own prerequisites here."""
        assert self._tmp is not None
        self._backends = make_backend_dir(Path(self._tmp.name) / "backends")

    def server_args(self) -> list[str]:
        """``tritonserver`` flags besides the repository and backend locations: explicit model
        control, 127.0.0.1 ports, the admin key; the same wherever the binary runs."""
        return ["--model-control-mode=explicit", *(f"--load-model={name}" for name in self.load),
                f"--grpc-address={HOST}", f"--grpc-port={self.grpc_port}",
                f"--http-address={HOST}", f"--http-port={self.http_port}",
                f"--metrics-address={HOST}", f"--metrics-port={self.metrics_port}",
                "--allow-gpu-metrics=false", "--exit-timeout-secs=5",
                *admin.server_args(self.admin_key), *self.extra_args]

    def _command(self) -> tuple[list[str], dict[str, str]]:
        """The process to start (argv, environment): the wheel's binary, its libraries."""
        args = [str(server_binary()), f"--model-repository={self.repo}",
                f"--backend-directory={self._backends}", *self.server_args()]
        return args, {**os.environ, "LD_LIBRARY_PATH": library_path()}

    def _launch(self) -> None:
        self.grpc_port, self.http_port, self.metrics_port = self._fixed_ports or free_ports(3)
        taken = [p for p in (self.grpc_port, self.http_port, self.metrics_port) if port_in_use(p)]
        if taken:
            raise TritonStartError(f"port {', '.join(map(str, taken))} on {HOST}: address "
                                   "already in use by another process; choose free ports")
        args, env = self._command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Own session: stop() can signal the server and the backend stubs it spawned.
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            code = self._exit_code()
            if code is not None:
                raise TritonStartError(f"tritonserver exited with code {code} "
                                       f"during start-up; log tail:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    answered = response.status == 200
            except (urllib.error.URLError, OSError):
                answered = False
            if answered:
                self._check_ours()
                return
            time.sleep(0.2)
        raise TritonStartError(f"tritonserver was not ready within {self.startup_timeout:.0f} s; "
                               f"log tail:\n{self.log_tail()}")

    def _check_ours(self) -> None:
        """A ready answer counts only from our server: alive, holding the HTTP and gRPC ports
        (another server on a port would answer the same health check)."""
        code = self._exit_code()
        if code is not None:
            raise TritonStartError(f"tritonserver exited with code {code} "
                                   f"during start-up; log tail:\n{self.log_tail()}")
        server_pid = self._server_pid()
        for port in (self.http_port, self.grpc_port):
            if server_pid is not None and owns_port(server_pid, port) is False:
                raise TritonStartError(f"port {port} on {HOST} answers, but not from this "
                                       "tritonserver: address already in use by another "
                                       f"process; log tail:\n{self.log_tail()}")

    def _server_pid(self) -> int | None:
        """The process that should hold the server's ports (``None``: cannot tell)."""
        return self.pid

    @property
    def pid(self) -> int | None:
        """The process this object started (its process group's id too), while it runs:
        here tritonserver itself."""
        return self._proc.pid if self._proc is not None else None

    @property
    def where(self) -> str:
        """What runs the server, for messages: ``pid N``."""
        return f"pid {self.pid}"

    @property
    def temp_dir(self) -> Path | None:
        """The server's temporary directory (backends, default log), removed on stop."""
        return Path(self._tmp.name) if self._tmp is not None else None

    def _share_key(self) -> None:
        """Hand the key to deploy code: by URL in this process, by env var to children."""
        admin.remember((self.grpc_url, self.http_url), self.admin_key)
        if admin.ADMIN_KEY_ENV not in os.environ:
            os.environ[admin.ADMIN_KEY_ENV] = self.admin_key
            self._exported_key = True

    def _unshare_key(self) -> None:
        admin.forget((self.grpc_url, self.http_url))
        if self._exported_key and os.environ.get(admin.ADMIN_KEY_ENV) == self.admin_key:
            del os.environ[admin.ADMIN_KEY_ENV]
        self._exported_key = False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _terminate(self) -> None:
        """SIGTERM the server (it unloads its models and stops its stubs), SIGKILL its whole
        process group after ``grace`` s, and SIGKILL whatever of the group outlived it.

        The server is not reaped until its group has been killed: while it is a zombie its
        pid, which is the group's id, cannot be reused, so ``killpg`` reaches only the group
        this object started."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with _suppress_gone():
                os.kill(proc.pid, signal.SIGTERM)
            if not _exited(proc.pid, 15.0):
                with _suppress_gone():
                    os.killpg(proc.pid, signal.SIGKILL)
                _exited(proc.pid, 10.0)
            with _suppress_gone():
                os.killpg(proc.pid, signal.SIGKILL)  # stubs left behind by the server
        proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server (graceful, then forced) and delete its temporary files."""
        self._unshare_key()
        self._terminate()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _exit_code(self, block: bool = False) -> int | None:
        """The server's exit code (negative: killed by that signal), ``None`` while it runs.

        The process is not reaped (``WNOWAIT``): until :meth:`stop` its process group id
        stays reserved, so the group (backend stubs included) can still be killed safely."""
        assert self._proc is not None, "server not started"
        if self._proc.returncode is not None:
            return self._proc.returncode
        flags = os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG)
        try:
            info = os.waitid(os.P_PID, self._proc.pid, flags)
        except ChildProcessError:
            return self._proc.wait()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def running(self) -> bool:
        return self._proc is not None and self._exit_code() is None

    def wait(self) -> int:
        """Block until the server exits (``damo serve local`` in the foreground); returns its
        exit code. The caller then calls :meth:`stop`, which reaps it and its group."""
        code = self._exit_code(block=True)
        assert code is not None
        return code


@contextmanager
def _suppress_gone() -> Iterator[None]:
    try:
        yield
    except (ProcessLookupError, PermissionError):
        pass


def _exited(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for child ``pid`` to exit, without reaping it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True  # already reaped
        if info is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
