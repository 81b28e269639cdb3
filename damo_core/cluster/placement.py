"""Where the pipeline's training steps train: in the step's process, torchrun in the step's pod,
or a job of N nodes, a PyTorchJob (Training Operator v1) or a TrainJob (Kubeflow Trainer v2).
One pipeline parameter set (nodes, GPUs per node, workspace PVC, job kind) chooses, and every
path leaves the same run directory (best.pt, last.pt, results.csv ...) in the step's output,
so the train and distill steps return the same metadata whichever ran.

Why the choice lives here and not in the component: components stay shells, and the rules
(which mode, the job's name, its namespace, image and environment) are unit-tested without a
cluster. The command each mode runs is ``launch.train_command``, the one a laptop runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from damo_core.cluster import launch
from damo_core.cluster.jobs import JobOutcome, TrainingJobError, run_pytorchjob
from damo_core.cluster.pytorchjob import build_pytorchjob
from damo_core.cluster.trainjob import build_trainjob, max_name_length, run_trainjob
from damo_core.errors import DamoError, UserInputError
from damo_core.metrics import push

WORKSPACE = "/workspace"  # where the pipeline mounts the workspace PVC (step pod and job pods)
ENV_WORKSPACE = "DAMO_WORKSPACE"  # overrides WORKSPACE (a cluster mounting it elsewhere, tests)
ENV_IMAGE = "DAMO_TRAIN_IMAGE"  # the job pods' image, if not the component's own
ENV_NAMESPACE = "DAMO_NAMESPACE"  # the job's namespace, if not the step pod's own
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_NAMESPACE = "damo"
JOB_KINDS = ("pytorchjob", "trainjob")  # pipeline parameter train_job_kind
_DNS_MAX = 63


class PlacementError(UserInputError):
    """A training placement parameter is out of range or inconsistent."""


class WorkspaceMissingError(DamoError, FileNotFoundError):
    """A job of N nodes needs the shared workspace, and it is not mounted in this pod."""


class Mode(StrEnum):
    IN_PROCESS = "in-process"  # one process: a laptop, CI, a one-GPU pod
    TORCHRUN = "torchrun"  # one pod, gpus_per_node ranks
    PYTORCHJOB = "pytorchjob"  # nodes pods of gpus_per_node ranks each, a PyTorchJob
    TRAINJOB = "trainjob"  # the same pods as a Kubeflow Trainer v2 TrainJob


def _count(what: str, value: Any) -> int:
    try:
        whole = not isinstance(value, bool) and float(value).is_integer()
    except (TypeError, ValueError):
        whole = False
    if not whole or int(value) < 1:
        raise PlacementError(f"training placement: {what} must be an integer >= 1, "
                             f"got {value!r}")
    return int(value)


def _workspace() -> str:
    return os.environ.get(ENV_WORKSPACE, "").strip() or WORKSPACE


@dataclass(frozen=True)
class TrainPlacement:
    """The pipeline's ``train_nodes``, ``gpus_per_node``, ``workspace_pvc`` and
    ``train_job_kind``; checked here."""

    nodes: int = 1
    gpus_per_node: int = 1
    workspace_pvc: str = ""
    workspace: str = field(default_factory=_workspace)
    job_kind: str = JOB_KINDS[0]

    def __post_init__(self) -> None:
        # KFP hands integer parameters over as JSON numbers: 2.0 is 2, 1.5 is an error
        for attr, what in (("nodes", "train_nodes"), ("gpus_per_node", "gpus_per_node")):
            object.__setattr__(self, attr, _count(what, getattr(self, attr)))
        if self.nodes > 1 and not self.workspace_pvc.strip():
            raise PlacementError(
                f"training placement: train_nodes={self.nodes} needs workspace_pvc, the "
                "ReadWriteMany PVC the job's pods share with this step; got an empty name")
        if self.job_kind not in JOB_KINDS:
            raise PlacementError(f"training placement: train_job_kind must be one of "
                                 f"{list(JOB_KINDS)}, got {self.job_kind!r}")

    @property
    def mode(self) -> Mode:
        if self.nodes > 1:
            return Mode(self.job_kind)
        return Mode.TORCHRUN if self.gpus_per_node > 1 else Mode.IN_PROCESS


def dns_label(text: str, limit: int = _DNS_MAX) -> str:
    """``text`` as a Kubernetes object name: lowercase alphanumerics and '-', at most ``limit``
    characters; a cut name ends in a hash of the whole, so two long names stay distinct."""
    label = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")
    if len(label) > limit:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        label = f"{label[:limit - 9].rstrip('-')}-{digest}"
    return label or "damo-train"


def model_name(model: str | Path) -> str:
    """The zoo name of ``model`` (a name, or a model YAML whose ``name`` says it)."""
    path = Path(model)
    if path.is_file():
        spec = yaml.safe_load(path.read_text()) or {}
        if isinstance(spec, dict) and spec.get("name"):
            return str(spec["name"])
        return path.stem
    return str(model)


def job_name(run: str, model: str | Path, limit: int = _DNS_MAX) -> str:
    """One job per run and model: a rerun or another model never collides."""
    return dns_label(f"{run}-{model_name(model)}", limit)


def current_namespace() -> str:
    """``$DAMO_NAMESPACE``, else the step pod's own namespace, else ``damo``."""
    chosen = os.environ.get(ENV_NAMESPACE, "").strip()
    if chosen:
        return chosen
    if SA_NAMESPACE_FILE.is_file():
        return SA_NAMESPACE_FILE.read_text().strip() or DEFAULT_NAMESPACE
    return DEFAULT_NAMESPACE


def training_env(run: str) -> dict[str, str]:
    """What training processes need from the step's environment: the run label of their
    metric pushes and, when set, the Pushgateway (the job's pods do not read the ConfigMap)."""
    env = {push.ENV_RUN: run}
    gateway = os.environ.get(push.ENV_GATEWAY, "").strip()
    if gateway:
        env[push.ENV_GATEWAY] = gateway
    return env


def torchrun_command(gpus: int, damo_args: list[str]) -> list[str]:
    """``torchrun --standalone --nproc-per-node G -m damo_core.cli ...`` with this interpreter
    (``--standalone``: one node, a rendezvous on a free local port)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(gpus), "-m", "damo_core.cli", *damo_args]


def command_settings(settings: Mapping[str, Any] | None,
                     distill_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The overrides of ``damo train``/``damo distill``: distillation keys as ``distill.*``."""
    merged = dict(settings or {})
    if distill_settings:
        merged["distill"] = dict(distill_settings)
    return merged


def train_placed(placement: TrainPlacement, data: str | Path, out_dir: str | Path, *,
                 model: str, run: str | None = None,
                 settings: Mapping[str, Any] | None = None, config: str | Path | None = None,
                 teacher_weights: str | Path | None = None,
                 distill_settings: Mapping[str, Any] | None = None,
                 image: str | None = None) -> JobOutcome | None:
    """Train in a torchrun subprocess or a job of N nodes (``placement.mode``), into
    ``out_dir``.

    The in-process mode is the caller's own (``damo_core.steps._training.fit``); this raises for
    it so a wrong dispatch cannot silently train twice. Returns the job's outcome, if a job ran.
    """
    run = run or push.run_id()
    merged = command_settings(settings, distill_settings)
    teacher = str(teacher_weights) if teacher_weights else None
    if placement.mode is Mode.TORCHRUN:
        args = launch.train_command(model, str(data), str(out_dir),
                                    settings=merged, config=str(config) if config else None,
                                    teacher_weights=teacher)
        run_torchrun(placement.gpus_per_node, args, training_env(run))
        return None
    if placement.mode in (Mode.PYTORCHJOB, Mode.TRAINJOB):
        return run_as_job(placement, data, out_dir, model=model, run=run, settings=merged,
                          config=config, teacher_weights=teacher, image=image)
    raise PlacementError(f"train_placed: mode {placement.mode.value} trains in the caller")


def run_torchrun(gpus: int, damo_args: list[str], env: Mapping[str, str]) -> None:
    """The ranks' output goes to the step's log as it comes; a failed rank fails the step."""
    command = torchrun_command(gpus, damo_args)
    done = subprocess.run(command, env={**os.environ, **env}, check=False)
    if done.returncode != 0:
        raise TrainingJobError(f"torchrun with {gpus} ranks exited with {done.returncode}: "
                               f"{' '.join(command)}")


def run_as_job(placement: TrainPlacement, data: str | Path, out_dir: str | Path, *,
               model: str, run: str, settings: Mapping[str, Any],
               config: str | Path | None, teacher_weights: str | None,
               image: str | None) -> JobOutcome:
    """Stage on the shared workspace, run the job (``launch.train_with_pytorchjob``: a
    PyTorchJob, or a TrainJob when ``placement.mode`` says so), and remove the staging
    directory once its run directory is copied back. A failed job's is kept for inspection
    until the step's retry, which starts from a clean one (no stale best.pt)."""
    workspace = Path(placement.workspace)
    if not workspace.is_dir():
        raise WorkspaceMissingError(
            f"workspace {workspace} does not exist in this pod: mount the PVC "
            f"{placement.workspace_pvc!r} there (pipeline parameter workspace_pvc)")
    chosen_image = os.environ.get(ENV_IMAGE, "").strip() or (image or "").strip()
    if not chosen_image:
        raise PlacementError(f"training job image: set ${ENV_IMAGE} or pass the component's "
                             "image")
    trainjob = placement.mode is Mode.TRAINJOB
    name = job_name(run, model, max_name_length(placement.nodes) if trainjob else _DNS_MAX)
    shutil.rmtree(workspace / name, ignore_errors=True)
    outcome = launch.train_with_pytorchjob(
        data, out_dir, model=model, job_name=name, image=chosen_image,
        workspace=workspace, volume_claim=placement.workspace_pvc, nodes=placement.nodes,
        gpus_per_node=placement.gpus_per_node, settings=settings, config=config,
        teacher_weights=teacher_weights, namespace=current_namespace(),
        build_job=build_trainjob if trainjob else build_pytorchjob,
        run_job=run_trainjob if trainjob else run_pytorchjob, env=training_env(run),
        labels={"damo.run": dns_label(run), "damo.model": dns_label(model_name(model))})
    shutil.rmtree(workspace / name, ignore_errors=True)
    return outcome
