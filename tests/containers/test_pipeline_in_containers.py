"""``damo pipeline run --local --containers``: the whole DAG with KFP's DockerRunner, each step
in its image (as on the cluster), deploying to Triton running from the Triton image, and the
same table as KFP's SubprocessRunner for the same seed and parameters.

Both runs use the tiny parameters of tests/pipelines/test_local_run.py (nano models, 64 px,
one epoch, published NAS structures) so the module stays within minutes on 2 CPU cores.
Marked ``container``: it needs the daemon and the images of ``scripts/images.sh cpu triton``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from components._image import DAMO_GPU_IMAGE, DAMO_IMAGE, DAMO_TRITON_IMAGE
from damo_core.serve.container_server import ContainerTriton
from damo_core.serve.local_server import LocalTriton
from damo_core.train import load_trained
from pipelines.local_run import LocalRun, run_local, summary_rows
from tests.containers.helpers import detect, docker
from tests.pipelines.test_local_run import TINY

pytestmark = pytest.mark.container

# Everything in the table but latency: the same code, seed and wheels give the same numbers.
# latency_ms is a measurement (a container's CPU share, the other run's load), never equal.
DETERMINISTIC = ("AP", "AP50", "params_m", "gflops", "gate", "served")


def _answer_every_deployed_model(found: dict[str, Any]):
    """``serving`` hook: a plain tritonclient gRPC request to each model the run deployed,
    on the run's own server before it stops; keeps the boxes and where the server ran."""

    def check(server: LocalTriton) -> None:
        found["server"] = server
        # a deployed model is an ensemble (preprocess, detector, postprocess) of its name
        names = sorted(c.parent.name for c in server.repo.glob("*/config.pbtxt")
                       if 'platform: "ensemble"' in c.read_text())
        found["boxes"] = {name: detect(server.grpc_url, name)[0] for name in names}

    return check


@pytest.fixture(scope="module")
def both(images: None, tmp_path_factory: pytest.TempPathFactory,
         ) -> Iterator[dict[str, Any]]:
    """The same parameters with SubprocessRunner, then with DockerRunner; seconds of each."""
    out: dict[str, Any] = {"served": {}}
    started = time.perf_counter()
    out["subprocess"] = run_local(TINY, tmp_path_factory.mktemp("subprocess"))
    out["subprocess_s"] = time.perf_counter() - started
    started = time.perf_counter()
    out["docker"] = run_local(TINY, tmp_path_factory.mktemp("docker"), containers=True,
                              serving=_answer_every_deployed_model(out["served"]))
    out["docker_s"] = time.perf_counter() - started
    print(f"\nSubprocessRunner run: {out['subprocess_s']:.0f} s; "
          f"DockerRunner run: {out['docker_s']:.0f} s")
    yield out
    leftover = docker("ps", "-aq", "--filter", "label=damo-pipeline.run", timeout=60)
    assert leftover.stdout.strip() == "", f"step containers left behind: {leftover.stdout}"


def test_every_step_ran_in_its_image_and_exited_zero(both: dict[str, Any]) -> None:
    run: LocalRun = both["docker"]
    assert run.exits and all(e.code == 0 for e in run.exits), run.exits
    assert len(run.exits) == len(run.tasks)  # one container per task, each recorded
    # a CPU-only machine has no GPU image: train and distill run in the CPU image, said so
    gpu_tasks = {label: image for label, image in run.images.items()
                 if label.startswith(("exec-train", "exec-distill"))}
    assert len(gpu_tasks) == 5  # teacher, 3 distillations, the control
    expected = DAMO_GPU_IMAGE if any(e.image == DAMO_GPU_IMAGE for e in run.exits) \
        else DAMO_IMAGE
    assert set(gpu_tasks.values()) == {expected}
    assert {e.image for e in run.exits} <= {DAMO_IMAGE, DAMO_GPU_IMAGE}


def test_deployed_models_answer_from_the_triton_container(both: dict[str, Any]) -> None:
    server = both["served"]["server"]
    assert isinstance(server, ContainerTriton) and server.image == DAMO_TRITON_IMAGE
    deployed = {r.artifacts["deployment"]["model_name"] for r in both["docker"].by_prefix(
        "deploy")}
    passed = {r.artifacts["verdict"]["model_name"] for r in both["docker"].by_prefix("gate")
              if r.outputs.get("Output")}
    assert deployed == passed and deployed  # map_floor 0: every model passes, is deployed
    assert set(both["served"]["boxes"]) == deployed
    for name, boxes in both["served"]["boxes"].items():
        assert boxes.shape[0] == 1 and boxes.shape[-1] == 4, name


def test_the_table_equals_the_subprocess_runners(both: dict[str, Any]) -> None:
    def table(run: LocalRun) -> dict[str, dict[str, Any]]:
        return {r["model"]: {k: r.get(k) for k in DETERMINISTIC} for r in summary_rows(run)}

    in_process, in_containers = table(both["subprocess"]), table(both["docker"])
    assert in_containers == in_process
    # latency_ms is measured in both runs but not compared (a measurement, not a result)
    assert all(r.get("latency_ms") for r in summary_rows(both["docker"]) if r.get("runtime"))


def test_the_trained_weights_equal_the_subprocess_runners(both: dict[str, Any]) -> None:
    """At these tiny sizes every AP is 0.0, so equal tables alone would prove little: the
    five trainings' checkpoints (teacher, three students, the control) are compared tensor by
    tensor as well."""

    def weights(run: LocalRun) -> dict[str, dict[str, torch.Tensor]]:
        return {rec.task: load_trained(rec.artifacts["model"]["uri"] + "/best.pt")[0]
                .state_dict() for rec in run.by_prefix("train") + run.by_prefix("distill")}

    in_process, in_containers = weights(both["subprocess"]), weights(both["docker"])
    assert in_process.keys() == in_containers.keys() and len(in_process) == 5
    for task, state in in_process.items():
        other = in_containers[task]
        differ = [k for k in state if not torch.equal(state[k], other[k])]
        assert not differ, f"{task}: {len(differ)} tensors differ, e.g. {differ[:3]}"
