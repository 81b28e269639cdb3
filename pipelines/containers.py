"""``damo pipeline run --local --containers``: every step in its image, as on the cluster.

Why: KFP's ``SubprocessRunner`` runs the component bodies in this Python environment, so it
cannot show that the images of scripts/images.sh hold what the steps need. KFP's
``DockerRunner`` runs each task's command in its ``base_image`` with the pipeline root
bind-mounted at its own path; this module supplies what that runner does not decide:

* **images**: each ``base_image`` must already be built on the daemon (it is never pulled:
  no registry has these tags). ``DAMO_GPU_IMAGE`` is rarely built on a CPU-only machine
  (``scripts/images.sh gpu`` makes a ``-cputorch`` stand-in, minutes cold), so when it is
  missing the training steps run in another image, ``DAMO_IMAGE`` by default (the same CPU
  torch), and :class:`ImagePlan` says so in one printed line per image;
* **entrypoint**: the images' ``ENTRYPOINT`` is ``damo``, KFP's command is ``sh -c ...``;
  an empty list clears it (the docker SDK sends ``[]``; ``None`` would keep the image's);
* **user**: the host's uid:gid, as :class:`~damo_core.serve.container_server.ContainerTriton`
  runs, so the run directory stays the caller's to read, rerun and delete (the images' own
  non-root user is tested by tests/containers/test_steps_in_containers.py); ``HOME=/tmp``
  because that uid has no home directory in the image;
* **environment**: the host's ``DAMO_*`` variables (``DAMO_RUN_ID``, ``DAMO_PUSHGATEWAY``,
  ``DAMO_S3_ENDPOINT``, ...), the S3 credentials (``AWS_*``) and the local Triton's admin
  key, which the in-process run hands over through ``os.environ`` but a container only gets
  explicitly;
* **network**: the host's, so 127.0.0.1 (the Triton container's ports) is the host's;
* **exit codes**: KFP assumes success when an auto-removed container is gone before it asks
  for the exit code; :class:`ContainerExits` records every step container's ``die`` event
  (exit code and image) from the daemon, and a non-zero one fails the run.
"""

from __future__ import annotations

import copy
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from components._image import DAMO_GPU_IMAGE, DAMO_IMAGE, DAMO_TRITON_IMAGE
from damo_core.errors import UnavailableError
from damo_core.serve.admin import ADMIN_KEY_ENV
from damo_core.serve.container_server import SHM_SIZE

BUILD_HINT = "build it with scripts/images.sh cpu triton"
DAEMON_HINT = 'start one with eval "$(scripts/dockerd.sh start)" or set DOCKER_HOST'
RUN_LABEL = "damo-pipeline.run"  # marks the step containers of one run (events, clean-up)
PASSED_ENV_PREFIX = "DAMO_"
# the S3 credentials the storage layer reads (the local run's endpoint, or the user's)
PASSED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
              "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
EXIT_WAIT_S = 10.0  # for the last die events after the run (the daemon sends them in ms)


@dataclass(frozen=True)
class ImagePlan:
    """Which local image each pipeline image runs as; ``notes``: why one is substituted."""

    images: dict[str, str]
    notes: dict[str, str] = field(default_factory=dict)

    def lines(self, steps: Mapping[str, list[str]]) -> list[str]:
        """One line per pipeline image: the steps (component names) it runs and in what."""
        out = []
        for wanted, used in self.images.items():
            names = ", ".join(steps.get(wanted, [])) or "(no step)"
            note = f" (stand-in for {wanted}: {self.notes[wanted]})" if wanted in self.notes else ""
            out.append(f"containers: {names} in {used}{note}")
        return out


def docker_client() -> Any:
    """The docker SDK client KFP's runner will use (``DOCKER_HOST`` or the default socket),
    checked to answer, so a missing daemon is one line instead of a traceback mid-run."""
    try:
        import docker
    except ImportError:
        raise UnavailableError("--containers needs the docker SDK: pip install docker") from None
    host = os.environ.get("DOCKER_HOST", "(unset: the default socket)")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as err:
        raise UnavailableError(f"no Docker daemon answers at DOCKER_HOST={host} "
                               f"({_first_line(err)}): {DAEMON_HINT}") from None
    return client


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def image_present(client: Any) -> Callable[[str], bool]:
    """``present(tag)``: whether the daemon has the image (never pulls it)."""
    import docker

    def present(tag: str) -> bool:
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as err:
            raise UnavailableError(f"docker cannot look up image {tag}: "
                                   f"{_first_line(err)}") from None
        return True

    return present


def plan_images(wanted: Iterable[str], present: Callable[[str], bool],
                gpu_image: str | None = None) -> ImagePlan:
    """Map every image of the DAG (and Triton's) to one the daemon has.

    ``DAMO_GPU_IMAGE`` runs as ``gpu_image`` when given, else as itself if built, else as
    ``DAMO_IMAGE`` (CPU torch: all a CPU-only run needs; not TensorRT). Any other missing image
    is an :class:`UnavailableError` naming it and the build command."""
    images: dict[str, str] = {}
    notes: dict[str, str] = {}
    for tag in dict.fromkeys([*wanted, DAMO_TRITON_IMAGE]):
        used = tag
        if tag == DAMO_GPU_IMAGE and (gpu_image or not present(tag)):
            used = gpu_image or DAMO_IMAGE
            notes[tag] = ("--gpu-image" if gpu_image else
                          "not built here; scripts/images.sh gpu builds a CPU-torch one")
        if not present(used):
            raise UnavailableError(f"image {used} is not built on this Docker daemon: "
                                   f"{BUILD_HINT}")
        images[tag] = used
    return ImagePlan(images, notes)


def executor_images(pipeline_spec: Any) -> dict[str, str]:
    """Executor label (``exec-train``) → its container image, from the compiled DAG."""
    return {label: executor["container"]["image"]
            for label, executor in pipeline_spec.deployment_spec["executors"].items()}


def steps_by_image(pipeline_spec: Any) -> dict[str, list[str]]:
    """Image → the component names (``train``, ``distill``) whose executors use it."""
    steps: dict[str, list[str]] = {}
    for label, image in sorted(executor_images(pipeline_spec).items()):
        name = label.removeprefix("exec-").rsplit("-", 1)
        base = name[0] if len(name) == 2 and name[1].isdigit() else "-".join(name)
        if base not in steps.setdefault(image, []):
            steps[image].append(base)
    return steps


def with_images(pipeline: Any, images: Mapping[str, str]) -> Any:
    """A copy of the compiled ``pipeline`` whose executors use ``images`` (the module-level
    pipeline object, which later runs and compiles share, is left untouched)."""
    mapped = copy.deepcopy(pipeline)
    for executor in mapped.pipeline_spec.deployment_spec["executors"].values():
        container = executor["container"]
        container["image"] = images.get(container["image"], container["image"])
    return mapped


def step_environment(admin_key: str, environ: Mapping[str, str] | None = None,
                     ) -> dict[str, str]:
    """The step containers' environment: the host's ``DAMO_*`` and S3 credential variables,
    the Triton admin
    key (the deploy step's; in-process steps read it from ``os.environ``) and a writable
    ``HOME`` for a uid the image does not know."""
    environ = os.environ if environ is None else environ
    passed = {k: v for k, v in environ.items()
              if k.startswith(PASSED_ENV_PREFIX) or k in PASSED_ENV}
    return {**passed, ADMIN_KEY_ENV: admin_key, "HOME": "/tmp"}


def container_run_args(environment: Mapping[str, str], label: str) -> dict[str, Any]:
    """``kfp.local.DockerRunner``'s keyword arguments (``docker`` SDK ``containers.run``)."""
    return {
        "entrypoint": [],  # clears the images' `damo` entrypoint; KFP's command is `sh -c`
        "user": f"{os.getuid()}:{os.getgid()}",
        "network_mode": "host",
        "environment": dict(environment),
        "shm_size": SHM_SIZE,  # DataLoader workers share batches through /dev/shm
        "labels": {RUN_LABEL: label},
    }


def docker_runner(environment: Mapping[str, str], label: str) -> Any:
    from kfp import local

    return local.DockerRunner(**container_run_args(environment, label))


@dataclass
class ContainerExit:
    image: str
    name: str
    code: int


class ContainerExits:
    """``with ContainerExits(client) as exits:`` the exit code and image of every container
    labelled with :attr:`label` that stops inside the block, from the daemon's events.

    On leaving, it waits (bounded) until every started container has died, kills any still
    running (an interrupted run leaves no step container behind), and, after a normal run,
    raises if one exited non-zero."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.label = secrets.token_hex(6)
        self.exits: list[ContainerExit] = []
        self._started: set[str] = set()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._collect, daemon=True)

    def __enter__(self) -> ContainerExits:
        self._stream = self.client.events(decode=True, filters={
            "type": "container", "event": ["start", "die"],
            "label": f"{RUN_LABEL}={self.label}"})
        self._thread.start()
        return self

    def _collect(self) -> None:
        try:
            for event in self._stream:
                attrs = event.get("Actor", {}).get("Attributes", {})
                if event.get("Action") == "start":
                    self._started.add(event.get("id", ""))
                elif event.get("Action") == "die":
                    self.exits.append(ContainerExit(attrs.get("image", "?"),
                                                    attrs.get("name", "?"),
                                                    int(attrs.get("exitCode", -1))))
        except Exception:  # noqa: BLE001 - the stream ends with an error when closed
            return

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        deadline = time.monotonic() + EXIT_WAIT_S
        while len(self.exits) < len(self._started) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._kill_leftovers()
        self._stream.close()
        if exc_type is None:
            failed = [e for e in self.exits if e.code != 0]
            if failed:
                raise RuntimeError("step container(s) exited non-zero: " + ", ".join(
                    f"{e.name} ({e.image}) exit {e.code}" for e in failed))

    def _kill_leftovers(self) -> None:
        for container in self.client.containers.list(
                filters={"label": f"{RUN_LABEL}={self.label}"}):
            print(f"containers: stopping {container.name} (the run ended before it)")
            container.kill()


class InContainers:
    """The local run's container mode: KFP's ``DockerRunner`` with :func:`container_run_args`,
    the DAG's images mapped by :func:`plan_images`, Triton from its image, exits recorded.

    Constructing it checks the daemon and every image, before anything starts."""

    def __init__(self, pipeline: Any, gpu_image: str | None = None,
                 echo: Callable[[str], None] = print) -> None:
        self.client = docker_client()
        steps = steps_by_image(pipeline.pipeline_spec)
        self.plan = plan_images(steps, image_present(self.client), gpu_image)
        self.pipeline = with_images(pipeline, self.plan.images)
        self.exits = ContainerExits(self.client)
        for line in self.plan.lines({**steps, DAMO_TRITON_IMAGE: ["the Triton server"]}):
            echo(line)

    def server(self, repo: Any, log_path: Any) -> Any:
        from damo_core.serve.container_server import ContainerTriton

        return ContainerTriton(repo, image=self.plan.images[DAMO_TRITON_IMAGE],
                               log_path=log_path)

    def runner(self, admin_key: str) -> Any:
        return docker_runner(step_environment(admin_key), self.exits.label)

    def watch(self) -> ContainerExits:
        return self.exits

    def step_images(self) -> dict[str, str]:
        """Executor label → the image its container ran in."""
        return executor_images(self.pipeline.pipeline_spec)
