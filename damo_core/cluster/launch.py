"""Run the training step as a job of N nodes from inside a pipeline step (the component's side):
a PyTorchJob, or a Kubeflow Trainer v2 TrainJob when the caller passes its builder and runner.

Why staging: the job's pods cannot see the component's KFP artifacts, so the step copies its
inputs (dataset, model YAML, teacher checkpoint, training preset) into a directory on a
ReadWriteMany volume that is mounted at the same path in the step's pod and in every pod of
the job, runs ``damo train`` / ``damo distill`` there through torchrun, and copies the run
directory back into its output artifact. The command is the one a laptop runs, so single-pod
and N-node training differ only in who launches it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from damo_core.cluster.jobs import JobOutcome, TrainingJobError, run_pytorchjob
from damo_core.cluster.pytorchjob import TrainJobSpec, build_pytorchjob, train_job_spec
from damo_core.errors import InputNotFoundError

MINIO_SECRET_ENV = {"AWS_ACCESS_KEY_ID": ("damo-minio", "accesskey"),
                    "AWS_SECRET_ACCESS_KEY": ("damo-minio", "secretkey")}


class JobOutputMissingError(TrainingJobError, FileNotFoundError):
    """The job reported success but its run directory is not on the shared volume: a failed
    job, not the user's input (still a ``FileNotFoundError`` for existing callers)."""


def override_pairs(settings: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``{"augment": {"mosaic_prob": 0}}`` → ``["augment.mosaic_prob=0"]``, the ``key=value``
    form ``damo train`` parses (values as JSON, which YAML reads back unchanged)."""
    pairs: list[str] = []
    for key, value in settings.items():
        if isinstance(value, Mapping):
            pairs += override_pairs(value, f"{prefix}{key}.")
        else:
            pairs.append(f"{prefix}{key}={json.dumps(value)}")
    return pairs


def train_command(model: str, data_yaml: str, out_dir: str, *,
                  settings: Mapping[str, Any] | None = None, config: str | None = None,
                  teacher_weights: str | None = None) -> list[str]:
    """Arguments after ``damo``: ``train`` (teacher) or ``distill`` (with a teacher)."""
    if teacher_weights is None:
        args = ["train", "--model", model]
    else:
        args = ["distill", "--student", model, "--teacher-weights", teacher_weights]
    args += ["--data", data_yaml, "--out", out_dir]
    if config:
        args += ["--config", config]
    return args + override_pairs(settings or {})


def _stage(source: Path, target: Path) -> Path:
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    elif source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    else:
        raise InputNotFoundError(f"training input {source} does not exist")
    return target


def train_with_pytorchjob(
    data: str | Path, out_dir: str | Path, *, model: str, job_name: str, image: str,
    workspace: str | Path, volume_claim: str, nodes: int = 2, gpus_per_node: int = 1,
    settings: Mapping[str, Any] | None = None, config: str | Path | None = None,
    teacher_weights: str | Path | None = None, namespace: str = "damo",
    run_job: Callable[[dict[str, Any]], JobOutcome] = run_pytorchjob,
    build_job: Callable[[TrainJobSpec], dict[str, Any]] = build_pytorchjob, **options: Any,
) -> JobOutcome:
    """Stage inputs under ``workspace/job_name`` (the PVC ``volume_claim`` mounted at
    ``workspace`` here and in the job), run the job, copy its run directory to ``out_dir``.

    ``model`` is a zoo name or a model YAML file (staged); ``data`` is a manifest directory
    (staged: a few small files, the images stay where its rows say) or an ``s3://`` manifest
    URI (passed as is). ``build_job`` turns the spec into the job object ``run_job`` runs
    (``build_trainjob`` with ``run_trainjob`` for a TrainJob). Extra ``options`` go to
    :class:`~damo_core.cluster.pytorchjob.TrainJobSpec`."""
    from damo_core.storage import is_remote

    stage = Path(workspace) / job_name
    if not is_remote(str(data)):
        if not (Path(data) / "summary.json").is_file():
            raise InputNotFoundError(f"training data {data} is not a manifest directory "
                                     "(no summary.json)")
        data = _stage(Path(data), stage / "data")
    if Path(model).suffix in (".yaml", ".yml"):
        model = str(_stage(Path(model), stage / "model.yaml"))
    staged_config = str(_stage(Path(config), stage / "train.yaml")) if config else None
    teacher = (str(_stage(Path(teacher_weights), stage / "teacher.pt"))
               if teacher_weights else None)
    run_dir = stage / "run"
    args = train_command(model, str(data), str(run_dir), settings=settings,
                         config=staged_config, teacher_weights=teacher)
    spec = train_job_spec(job_name, image, args, nodes=nodes, gpus_per_node=gpus_per_node,
                          namespace=namespace, volume_claim=volume_claim,
                          mount_path=str(workspace), secret_env=MINIO_SECRET_ENV, **options)
    job = build_job(spec)
    outcome = run_job(job)
    if not run_dir.is_dir():
        raise JobOutputMissingError(f"{job['kind']} {job_name} finished but wrote no {run_dir}")
    shutil.copytree(run_dir, out_dir, dirs_exist_ok=True)
    return outcome
