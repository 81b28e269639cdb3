"""The step-side launcher: inputs staged on the shared volume, a damo command that the real
CLI parses, the job built for that volume, and the run directory copied back. The job itself
is a stand-in that writes what rank 0 would (no cluster here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main

from damo_core.cli.app import app
from damo_core.cluster import JobOutcome, train_command, train_with_pytorchjob
from damo_core.train.config import parse_overrides

SETTINGS = {"epochs": 2, "batch": 16, "augment": {"mosaic_prob": 0.0}, "name": "a b"}


def parse(args: list[str]) -> dict[str, Any]:
    """Parse with the real click command, without running it."""
    command = typer.main.get_command(app).commands[args[0]]
    return command.make_context(args[0], list(args[1:])).params


def test_train_command_parses_and_round_trips_settings():
    args = train_command("damoyolo_l", "/ws/data/dataset.yaml", "/ws/run", settings=SETTINGS,
                         config="/ws/train.yaml")
    params = parse(args)
    assert params["model"] == "damoyolo_l" and str(params["out"]) == "/ws/run"
    assert parse_overrides(params["overrides"]) == SETTINGS


def test_distill_command_parses():
    args = train_command("damoyolo_m", "/ws/d.yaml", "/ws/run", teacher_weights="/ws/t.pt")
    params = parse(args)
    assert params["model"] == "damoyolo_m" and str(params["teacher"]) == "/ws/t.pt"


def fake_job(workspace: Path, seen: list[dict[str, Any]]):
    def run(job: dict[str, Any]) -> JobOutcome:
        seen.append(job)
        command = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"][
            "containers"][0]["command"]
        out = Path(command[command.index("--out") + 1])
        assert out.is_relative_to(workspace)  # the pods write onto the shared volume
        out.mkdir(parents=True)
        (out / "best.pt").write_bytes(b"weights")
        return JobOutcome(job["metadata"]["name"], "Succeeded", 1.0, [])
    return run


def test_train_with_pytorchjob_stages_runs_and_copies_back(tmp_path):
    data = tmp_path / "artifact_data"
    data.mkdir()
    (data / "summary.json").write_text("{}")  # a manifest directory (the unify artifact)
    model_yaml = tmp_path / "nas" / "damoyolo_l.yaml"
    model_yaml.parent.mkdir()
    model_yaml.write_text("name: damoyolo_l\n")
    workspace, seen = tmp_path / "pvc", []
    outcome = train_with_pytorchjob(
        data, tmp_path / "model_out", model=str(model_yaml), job_name="teacher-l",
        image="img:1", workspace=workspace, volume_claim="damo-workspace", nodes=3,
        settings={"epochs": 1}, run_job=fake_job(workspace, seen))
    assert outcome.state == "Succeeded"
    assert (tmp_path / "model_out" / "best.pt").read_bytes() == b"weights"
    assert (workspace / "teacher-l" / "data" / "summary.json").is_file()
    (job,) = seen
    spec = job["spec"]["pytorchReplicaSpecs"]
    assert spec["Worker"]["replicas"] == 2
    pod = spec["Master"]["template"]["spec"]
    assert pod["volumes"][-1]["persistentVolumeClaim"]["claimName"] == "damo-workspace"
    assert pod["containers"][0]["volumeMounts"][-1]["mountPath"] == str(workspace)
    command = pod["containers"][0]["command"]
    assert command[command.index("--model") + 1] == str(workspace / "teacher-l" / "model.yaml")


def test_missing_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        train_with_pytorchjob(tmp_path / "empty", tmp_path / "o", model="damoyolo_s", job_name="j",
                              image="i:1", workspace=tmp_path / "ws", volume_claim="c",
                              run_job=lambda job: pytest.fail("must not launch"))
    assert not (tmp_path / "ws" / "j").exists()
