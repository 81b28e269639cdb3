"""The training steps' three placements, through ``damo_core.steps.train.run`` and
``damo_core.steps.distill.run`` as the components call them: in-process, torchrun with two
real gloo ranks on this CPU, and a PyTorchJob whose stand-in runs the job's own ``damo``
command on the "shared volume" (no cluster here). Each leaves a real run directory and returns
the same metadata; each carries the run id."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.cluster import JobOutcome, TrainingJobError, placement
from damo_core.cluster.placement import (
    Mode,
    PlacementError,
    TrainPlacement,
    WorkspaceMissingError,
    dns_label,
    job_name,
)
from damo_core.data.synth import generate
from damo_core.metrics.push import ENV_GATEWAY, ENV_RUN
from damo_core.steps import _common, distill, evaluate, train
from damo_core.steps._training import Placement
from tests.cluster.test_pytorchjob import crd_validator


def train_model(data: Path, out: Path, *, model: str, settings: dict[str, Any],
                run_id: str | None = None, teacher_dir: Path | None = None,
                distill_settings: dict[str, Any] | None = None, nodes: int = 1,
                gpus_per_node: int = 1, workspace_pvc: str = "",
                image: str | None = None) -> dict[str, Any]:
    """The train component's call, or the distill component's with a teacher."""
    where = Placement(nodes, gpus_per_node, workspace_pvc, image)
    if teacher_dir is None:
        return train.run(data, out, model=model, settings=settings, run_id=run_id,
                         placement=where)
    return distill.run(data, out, model=model, teacher=teacher_dir, settings=settings,
                       distill_settings=distill_settings, run_id=run_id, placement=where)

# one epoch of 2 steps at 64 px: seconds on a CPU
TINY = {"epochs": 1, "batch": 4, "img_size": 64, "warmup_epochs": 0, "no_aug_epochs": 0,
        "workers": 0, "precise_bn_batches": 0, "augment": {"mosaic_prob": 0.0}}
RUN = "damo-yolo-20261129-run"
# "epochs" is how many ran, "best_epoch" the one best.pt holds, "train_precision" the forward's
META_KEYS = {"model_name", "image_size", "num_classes", "class_names", "params_m", "epochs",
             "best_epoch", "AP", "AP50", "train_precision"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("placement") / "data"
    generate(root, num_classes=2, num_images=12, image_size=64, seed=3)
    return root


@pytest.fixture(scope="module")
def in_process(data_dir, tmp_path_factory) -> tuple[Path, dict[str, Any], list[str | None]]:
    """The default placement; records the run id the trainer sees in its environment."""
    import damo_core.train as train_pkg

    seen: list[str | None] = []
    real = train_pkg.train

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(os.environ.get(ENV_RUN))
        return real(*args, **kwargs)

    out = tmp_path_factory.mktemp("in_process") / "model"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ENV_RUN, raising=False)
        mp.setattr(train_pkg, "train", spy)
        meta = train_model(data_dir, out, model="damoyolo_ns", settings=TINY, run_id=RUN)
        assert ENV_RUN not in os.environ  # restored after training
    return out, meta, seen


def test_in_process_is_the_default_and_sees_the_run_id(in_process):
    out, meta, seen = in_process
    assert (out / "best.pt").is_file() and (out / "results.csv").is_file()
    assert set(meta) == META_KEYS and meta["model_name"] == "damoyolo_ns"
    assert meta["epochs"] == 1 and meta["num_classes"] == 2
    assert meta["train_precision"] == "fp32"
    assert seen == [RUN]


def test_torchrun_runs_two_real_ranks_in_this_pod(data_dir, in_process, tmp_path, monkeypatch):
    calls: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def recording_run(command: list[str], *, env: dict[str, str], check: bool):
        calls.append((command, env))
        return real_run(command, env={**env, "OMP_NUM_THREADS": "1"}, check=check,
                        timeout=300)

    monkeypatch.setattr(placement.subprocess, "run", recording_run)
    monkeypatch.setenv(ENV_GATEWAY, "http://gateway.invalid:9091")
    out = tmp_path / "model"
    meta = train_model(data_dir, out, model="damoyolo_ns", settings=TINY, run_id=RUN,
                             nodes=1, gpus_per_node=2)
    ((command, env),) = calls
    at = command.index("--nproc-per-node")
    assert command[at + 1] == "2" and command[at + 2:at + 5] == ["-m", "damo_core.cli", "train"]
    assert command[command.index("--out") + 1] == str(out)
    assert env[ENV_RUN] == RUN and env[ENV_GATEWAY] == "http://gateway.invalid:9091"
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    assert set(meta) == set(in_process[1]) and meta["epochs"] == 1
    assert meta["model_name"] == in_process[1]["model_name"]


def test_a_failed_torchrun_fails_the_step(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(placement.subprocess, "run",
                        lambda command, **kw: subprocess.CompletedProcess(command, 1))
    with pytest.raises(TrainingJobError, match="2 ranks exited with 1"):
        train_model(data_dir, tmp_path / "m", model="damoyolo_ns", settings=TINY,
                          gpus_per_node=2)


def _pod(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]


def test_pytorchjob_trains_on_the_shared_volume_and_returns_the_same_metadata(
        data_dir, in_process, tmp_path, monkeypatch):
    """A distillation as a 3-node job; the stand-in is rank 0: it runs the job's damo command."""
    workspace, jobs = tmp_path / "pvc", []
    workspace.mkdir()

    def run_job(job: dict[str, Any]) -> JobOutcome:
        jobs.append(job)
        command = _pod(job)["containers"][0]["command"]
        assert command[:2] == ["torchrun", "--no-python"]
        damo_args = command[command.index("damo") + 1:]
        result = CliRunner().invoke(app, damo_args)
        assert result.exit_code == 0, result.output
        return JobOutcome(job["metadata"]["name"], "Succeeded", 1.0, [])

    monkeypatch.setattr(placement, "run_pytorchjob", run_job)
    monkeypatch.setenv("DAMO_WORKSPACE", str(workspace))
    monkeypatch.setenv("DAMO_NAMESPACE", "team-a")
    monkeypatch.setenv(ENV_GATEWAY, "http://pushgateway.damo.svc.cluster.local:9091")
    monkeypatch.delenv("DAMO_TRAIN_IMAGE", raising=False)
    teacher_dir, _, _ = in_process
    out = tmp_path / "student"
    meta = train_model(data_dir, out, model="damoyolo_ns", settings=TINY, run_id=RUN,
                             teacher_dir=teacher_dir, distill_settings={"tau": 2.0}, nodes=3,
                             workspace_pvc="damo-workspace", image="registry/damo-gpu:1")
    (job,) = jobs
    crd_validator().validate(job)  # with the step's env and labels, still a valid PyTorchJob
    name = job["metadata"]["name"]
    assert name == job_name(RUN, "damoyolo_ns") and len(name) <= 63
    assert job["metadata"]["namespace"] == "team-a"
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
    pod = _pod(job)
    container = pod["containers"][0]
    assert container["image"] == "registry/damo-gpu:1"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[ENV_RUN] == RUN
    assert env[ENV_GATEWAY] == "http://pushgateway.damo.svc.cluster.local:9091"
    assert {"name": "workspace", "mountPath": str(workspace)} in container["volumeMounts"]
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "damo-workspace"}} in (
        pod["volumes"])
    command = container["command"]
    assert "distill" in command and "distill.tau=2.0" in command
    assert command[command.index("--teacher-weights") + 1].startswith(str(workspace / name))
    # the step's output is a full run directory, the staging area is gone
    assert (out / "best.pt").is_file() and (out / "results.csv").is_file()
    assert not (workspace / name).exists()
    # the distill step also names its teacher (the component used to add it)
    assert set(meta) == set(in_process[1]) | {"teacher"} and meta["model_name"] == "damoyolo_ns"


def test_train_image_env_overrides_the_components_image(data_dir, tmp_path, monkeypatch):
    images = []

    def run_job(job: dict[str, Any]) -> JobOutcome:
        images.append(_pod(job)["containers"][0]["image"])
        raise TrainingJobError("stop here")

    monkeypatch.setattr(placement, "run_pytorchjob", run_job)
    monkeypatch.setenv("DAMO_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("DAMO_TRAIN_IMAGE", "mirror.example/damo-gpu:1")
    with pytest.raises(TrainingJobError, match="stop here"):
        train_model(data_dir, tmp_path / "m", model="damoyolo_ns", settings=TINY,
                          nodes=2, workspace_pvc="w", image="ghcr.io/x/damo-gpu:1")
    assert images == ["mirror.example/damo-gpu:1"]


def test_a_job_without_the_mounted_workspace_is_refused(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(placement, "run_pytorchjob",
                        lambda job: pytest.fail("must not create a job"))
    monkeypatch.setenv("DAMO_WORKSPACE", str(tmp_path / "not-mounted"))
    with pytest.raises(WorkspaceMissingError, match="mount the PVC 'damo-workspace'"):
        train_model(data_dir, tmp_path / "m", model="damoyolo_ns", settings=TINY,
                          nodes=2, workspace_pvc="damo-workspace", image="i:1")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"nodes": 0}, "train_nodes must be an integer >= 1, got 0"),
    ({"gpus_per_node": 0}, "gpus_per_node must be an integer >= 1, got 0"),
    ({"gpus_per_node": 1.5}, "gpus_per_node must be an integer >= 1, got 1.5"),
    ({"nodes": "two"}, "train_nodes must be an integer >= 1, got 'two'"),
    ({"nodes": 2, "workspace_pvc": " "}, "train_nodes=2 needs workspace_pvc"),
])
def test_bad_placement_is_a_clear_error_before_any_work(kwargs, message, tmp_path):
    with pytest.raises(PlacementError, match=message):
        train_model(tmp_path / "no-data", tmp_path / "m", model="damoyolo_ns",
                          settings={}, **kwargs)
    assert not (tmp_path / "m").exists()
    assert issubclass(PlacementError, ValueError)  # exit_on_user_error: one line, exit 2


def test_modes_and_kfp_numbers():
    assert TrainPlacement().mode is Mode.IN_PROCESS
    assert TrainPlacement(1, 4).mode is Mode.TORCHRUN
    assert TrainPlacement(2.0, 8, "pvc").mode is Mode.PYTORCHJOB  # KFP JSON numbers
    assert TrainPlacement(2.0, 8, "pvc").nodes == 2


def test_job_names_are_dns_labels_and_stay_distinct(tmp_path):
    long_run = "Damo_YOLO pipeline " + "x" * 80
    a, b = job_name(long_run + "1", "damoyolo_l"), job_name(long_run + "2", "damoyolo_l")
    assert a != b and len(a) <= 63 and len(b) <= 63
    assert a == dns_label(a) and a[0].isalnum() and a[-1].isalnum()
    model_yaml = tmp_path / "model_config"  # a KFP artifact path: the name is inside
    model_yaml.write_text("name: damoyolo_m\nimage_size: 640\n")
    assert job_name("run-7", model_yaml) == "run-7-damoyolo-m"
    assert dns_label("___") == "damo-train"


def test_push_steps_label_with_the_given_run(monkeypatch):
    from damo_core import metrics

    pushed = []
    monkeypatch.setattr(metrics, "push_eval", lambda values, labels: pushed.append(labels))
    monkeypatch.setenv(ENV_RUN, "from-env")
    _common.push("eval", {"AP": 0.1, "AP50": 0.2}, "damoyolo_s", "pytorch", "cpu", RUN)
    _common.push("eval", {"AP": 0.1, "AP50": 0.2}, "damoyolo_s", "pytorch", "cpu")
    assert [labels.run for labels in pushed] == [RUN, "from-env"]


def test_evaluate_model_pushes_under_the_run_id(in_process, data_dir, monkeypatch):
    from damo_core import metrics

    pushed = []
    monkeypatch.setattr(metrics, "push_eval", lambda values, labels: pushed.append(labels))
    result = evaluate.run(in_process[0], data_dir, run_id=RUN)
    ((labels),) = pushed
    assert labels.run == RUN and labels.model == "damoyolo_ns"
    assert 0.0 <= result["AP50"] <= 1.0


def test_a_retry_starts_from_a_clean_staging_directory(data_dir, tmp_path, monkeypatch):
    """A failed attempt's run directory must not be copied back as the retry's result."""
    name = job_name(RUN, "damoyolo_ns")
    stale = tmp_path / name / "run"
    stale.mkdir(parents=True)
    (stale / "best.pt").write_bytes(b"stale")
    seen = []

    def run_job(job: dict[str, Any]) -> JobOutcome:
        seen.append((tmp_path / name / "run" / "best.pt").exists())
        return JobOutcome(name, "Succeeded", 1.0, [])  # a job that wrote nothing

    monkeypatch.setattr(placement, "run_pytorchjob", run_job)
    monkeypatch.setenv("DAMO_WORKSPACE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="wrote no"):
        train_model(data_dir, tmp_path / "m", model="damoyolo_ns", settings=TINY,
                          run_id=RUN, nodes=2, workspace_pvc="w", image="i:1")
    assert seen == [False] and not (tmp_path / "m").exists()
