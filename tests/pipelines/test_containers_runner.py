"""``damo pipeline run --local --containers`` without Docker: the runner's arguments, the image
plan and the one-line errors when the daemon or an image is missing. The run itself, in the
images, is tests/containers/test_pipeline_in_containers.py (marker ``container``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from components._image import DAMO_GPU_IMAGE, DAMO_IMAGE, DAMO_TRITON_IMAGE
from damo_core.cli.app import app
from damo_core.errors import UnavailableError
from damo_core.serve.admin import ADMIN_KEY_ENV
from pipelines import containers
from pipelines.damo_pipeline import damo_pipeline
from pipelines.local_run import run_local

KEY = "k" * 32


def present(*tags: str):
    return lambda tag: tag in tags


def test_runner_args_clear_the_entrypoint_and_run_as_the_host_user() -> None:
    from kfp import local

    args = containers.container_run_args({"A": "1"}, "run1")
    assert args["entrypoint"] == []  # `damo` would otherwise prefix KFP's `sh -c`
    assert args["user"] == f"{os.getuid()}:{os.getgid()}"
    assert args["network_mode"] == "host" and args["environment"] == {"A": "1"}
    assert args["labels"] == {containers.RUN_LABEL: "run1"}
    runner = local.DockerRunner(**args)  # KFP accepts every key (it rejects unknown ones)
    assert runner.container_run_args["entrypoint"] == []


def test_step_environment_passes_damo_variables_and_the_admin_key() -> None:
    """The steps read S3 (the run's endpoint and credentials, as cluster pods get them from
    the damo-minio Secret); nothing else of the host's environment reaches them."""
    env = containers.step_environment(KEY, {"DAMO_RUN_ID": "r1", "PATH": "/x",
                                            "AWS_SECRET_ACCESS_KEY": "s", "SSH_AUTH_SOCK": "a"})
    assert env == {"DAMO_RUN_ID": "r1", "AWS_SECRET_ACCESS_KEY": "s", ADMIN_KEY_ENV: KEY,
                   "HOME": "/tmp"}


def test_every_image_runs_as_itself_when_built() -> None:
    plan = containers.plan_images([DAMO_IMAGE, DAMO_GPU_IMAGE],
                                  present(DAMO_IMAGE, DAMO_GPU_IMAGE, DAMO_TRITON_IMAGE))
    assert plan.images == {DAMO_IMAGE: DAMO_IMAGE, DAMO_GPU_IMAGE: DAMO_GPU_IMAGE,
                           DAMO_TRITON_IMAGE: DAMO_TRITON_IMAGE}
    assert plan.notes == {}


def test_a_missing_gpu_image_runs_as_the_cpu_image_and_says_so() -> None:
    plan = containers.plan_images([DAMO_IMAGE, DAMO_GPU_IMAGE],
                                  present(DAMO_IMAGE, DAMO_TRITON_IMAGE))
    assert plan.images[DAMO_GPU_IMAGE] == DAMO_IMAGE
    lines = plan.lines({DAMO_GPU_IMAGE: ["distill", "train"]})
    assert f"containers: distill, train in {DAMO_IMAGE} (stand-in for {DAMO_GPU_IMAGE}" \
        in "\n".join(lines)


def test_gpu_image_option_wins_even_over_a_built_gpu_image() -> None:
    other = f"{DAMO_GPU_IMAGE}-cputorch"
    plan = containers.plan_images([DAMO_GPU_IMAGE], present(other, DAMO_GPU_IMAGE,
                                                            DAMO_TRITON_IMAGE), other)
    assert plan.images[DAMO_GPU_IMAGE] == other and "--gpu-image" in plan.notes[DAMO_GPU_IMAGE]


@pytest.mark.parametrize("missing", [DAMO_IMAGE, DAMO_TRITON_IMAGE])
def test_a_missing_image_is_one_line_naming_it_and_the_build(missing: str) -> None:
    built = {DAMO_IMAGE, DAMO_GPU_IMAGE, DAMO_TRITON_IMAGE} - {missing}
    with pytest.raises(UnavailableError) as err:
        containers.plan_images([DAMO_IMAGE, DAMO_GPU_IMAGE], present(*built))
    assert missing in str(err.value) and "scripts/images.sh cpu triton" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_gpu_image_option_is_named() -> None:
    with pytest.raises(UnavailableError, match="nope:1 is not built"):
        containers.plan_images([DAMO_GPU_IMAGE], present(DAMO_IMAGE, DAMO_TRITON_IMAGE),
                               "nope:1")


def test_the_dag_trains_in_the_gpu_image_and_the_copy_maps_it() -> None:
    steps = containers.steps_by_image(damo_pipeline.pipeline_spec)
    assert sorted(steps[DAMO_GPU_IMAGE]) == ["distill", "train"]
    assert {"unify", "nas", "evaluate", "export", "benchmark", "gate", "deploy",
            "report"} == set(steps[DAMO_IMAGE])
    mapped = containers.with_images(damo_pipeline, {DAMO_GPU_IMAGE: DAMO_IMAGE})
    assert set(containers.executor_images(mapped.pipeline_spec).values()) == {DAMO_IMAGE}
    # the shared pipeline object (compile, submit, the in-process run) is untouched
    assert containers.executor_images(damo_pipeline.pipeline_spec)["exec-train"] == \
        DAMO_GPU_IMAGE


def test_no_daemon_is_one_line_before_anything_starts(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    with pytest.raises(UnavailableError) as err:
        run_local({}, tmp_path / "root", containers=True)
    assert "no Docker daemon answers" in str(err.value) and "dockerd.sh start" in str(err.value)
    assert not (tmp_path / "root").exists()  # nothing started, nothing written


class FakeStream:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events, self.closed = events, False

    def __iter__(self):
        return iter(self.events)

    def close(self) -> None:
        self.closed = True


class FakeContainer:
    name = "left-over"

    def __init__(self) -> None:
        self.killed = False

    def kill(self) -> None:
        self.killed = True


class FakeClient:
    def __init__(self, events: list[dict[str, Any]], running: list[FakeContainer]) -> None:
        self.stream, self.running = FakeStream(events), running
        self.containers = self

    def events(self, **_: Any) -> FakeStream:
        return self.stream

    def list(self, **_: Any) -> list[FakeContainer]:
        return self.running


def event(action: str, cid: str, code: int = 0) -> dict[str, Any]:
    return {"Action": action, "id": cid, "Actor": {"Attributes": {
        "image": DAMO_IMAGE, "name": f"c{cid}", "exitCode": str(code)}}}


def test_exits_are_recorded_and_a_nonzero_one_fails_the_run() -> None:
    ok = FakeClient([event("start", "1"), event("die", "1")], [])
    with containers.ContainerExits(ok) as exits:
        pass
    assert [(e.image, e.code) for e in exits.exits] == [(DAMO_IMAGE, 0)] and ok.stream.closed
    bad = FakeClient([event("start", "1"), event("die", "1", 3)], [])
    with pytest.raises(RuntimeError, match=r"c1 \(.*damo-cpu.*\) exit 3"):
        with containers.ContainerExits(bad):
            pass


def test_an_interrupted_run_kills_its_step_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "EXIT_WAIT_S", 0.2)
    left = FakeContainer()
    client = FakeClient([event("start", "1")], [left])
    with pytest.raises(KeyboardInterrupt), containers.ContainerExits(client):
        raise KeyboardInterrupt
    assert left.killed


def test_cli_gpu_image_needs_containers() -> None:
    result = CliRunner().invoke(app, ["pipeline", "run", "--local", "--gpu-image", "x:1"])
    assert result.exit_code == 2 and "add --containers" in result.output


def test_image_lookup_never_pulls_and_a_missing_one_is_false() -> None:
    import docker

    class Images:
        def get(self, tag: str) -> object:
            if tag != DAMO_IMAGE:
                raise docker.errors.ImageNotFound(f"No such image: {tag}")
            return object()

    class Client:
        images = Images()

    found = containers.image_present(Client())
    assert found(DAMO_IMAGE) and not found(DAMO_TRITON_IMAGE)
