"""The Kubeflow Training Operator ``PyTorchJob`` that trains one model over N nodes.

Why a builder of plain dicts: the object is data the Kubernetes API takes as JSON, so building
it as a dict keeps it testable without a cluster (a test validates it against the operator's
CRD schema kept in ``manifests/crds/``) and the ``kubernetes`` client sends it unchanged.

Shape (kubeflow.org/v1): one ``Master`` replica and ``nodes - 1`` ``Worker`` replicas, each a
pod running ``torchrun --no-python ... damo train ...``. The operator sets ``PET_NNODES``,
``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT``, which torchrun reads as its
rendezvous; torchrun then starts ``gpus_per_node`` ranks per pod with ``RANK``/``WORLD_SIZE``,
and ``damo_core.train.distributed`` joins them with NCCL on GPUs (each rank reads its shard
through ``ShardSampler``). With ``nodes=1`` it is a single pod of ``gpus_per_node`` ranks; the
same ``damo train`` runs single-process on a laptop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from damo_core.errors import UserInputError

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
CONTAINER = "pytorch"  # the operator finds the training container by this name
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
PIPELINE_SERVICE_ACCOUNT = "damo-pipeline-runner"  # manifests/base/rbac.yaml: may drive jobs
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
# every training pod: schedulable on tainted GPU nodes, its container without privileges
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "runAsNonRoot": True}


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable read from a key of a Kubernetes Secret (never a literal)."""

    env: str
    secret: str
    key: str


@dataclass(frozen=True)
class TrainJobSpec:
    """What a job of the training step needs, a PyTorchJob or a Trainer v2 TrainJob
    (``damo_core.cluster.trainjob``); validated on construction.

    ``damo_args`` are the arguments after ``damo`` (``["train", "--model", ...]``);
    ``volume_claim`` (a ReadWriteMany PVC) is mounted at ``mount_path`` on every pod so all
    ranks read the dataset and rank 0 writes checkpoints where the pipeline step finds them.
    """

    name: str
    image: str
    damo_args: tuple[str, ...]
    namespace: str = "damo"
    nodes: int = 1
    gpus_per_node: int = 1
    cpu: str = "4"
    memory: str = "32Gi"
    shm_size: str = "8Gi"
    service_account: str = PIPELINE_SERVICE_ACCOUNT
    volume_claim: str | None = None
    mount_path: str = "/workspace"
    secret_env: tuple[SecretEnv, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    backoff_limit: int = 1
    ttl_seconds_after_finished: int | None = None
    node_selector: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.name) > 63 or not _DNS_LABEL.match(self.name):
            raise UserInputError(f"training job name {self.name!r} must be a DNS label "
                                 "(lowercase letters, digits, '-', at most 63 characters)")
        if not self.image or any(c.isspace() for c in self.image):
            raise UserInputError(f"training job image must be a non-empty reference, got "
                                 f"{self.image!r}")
        if not self.damo_args:
            raise UserInputError("training job damo_args is empty: give the damo command to run")
        for what, value in (("nodes", self.nodes), ("gpus_per_node", self.gpus_per_node)):
            if not isinstance(value, int) or value < 1:
                raise UserInputError(f"training job {what} must be an integer >= 1, got {value!r}")
        for what, value in (("cpu", self.cpu), ("memory", self.memory),
                            ("shm_size", self.shm_size)):
            if not _QUANTITY.match(value):
                raise UserInputError(f"training job {what} {value!r} is not a Kubernetes quantity")

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node


def job_command(spec: TrainJobSpec) -> list[str]:
    """``torchrun --no-python --nproc-per-node=G damo ...``: every job pod's command (a
    PyTorchJob's and a TrainJob's); the job's controller supplies the rendezvous as ``PET_*``."""
    return ["torchrun", "--no-python", f"--nproc-per-node={spec.gpus_per_node}", "damo",
            *spec.damo_args]


def job_env(spec: TrainJobSpec) -> list[dict[str, Any]]:
    """The literal variables, then those read from Secrets (never a credential as a value)."""
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in spec.env]
    return env + [{"name": s.env, "valueFrom": {"secretKeyRef": {"name": s.secret,
                                                                 "key": s.key}}}
                  for s in spec.secret_env]


def job_resources(spec: TrainJobSpec) -> dict[str, dict[str, str]]:
    """Requests equal to limits, so every training pod is scheduled as it will run."""
    resources = {"cpu": spec.cpu, "memory": spec.memory,
                 "nvidia.com/gpu": str(spec.gpus_per_node)}
    return {"requests": dict(resources), "limits": dict(resources)}


def job_volumes(spec: TrainJobSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the training container's mounts: a memory-backed /dev/shm (NCCL
    and DataLoader workers need more than the container default of 64 MiB) and the shared
    workspace PVC, when there is one."""
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if spec.volume_claim:
        volumes.append({"name": "workspace",
                        "persistentVolumeClaim": {"claimName": spec.volume_claim}})
        mounts.append({"name": "workspace", "mountPath": spec.mount_path})
    return volumes, mounts


def _container(spec: TrainJobSpec, mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": CONTAINER, "image": spec.image, "imagePullPolicy": "IfNotPresent",
            "command": job_command(spec), "env": job_env(spec), "volumeMounts": mounts,
            "resources": job_resources(spec), "securityContext": dict(CONTAINER_SECURITY)}


def _replica(spec: TrainJobSpec, replicas: int) -> dict[str, Any]:
    volumes, mounts = job_volumes(spec)
    pod: dict[str, Any] = {
        "serviceAccountName": spec.service_account, "containers": [_container(spec, mounts)],
        "volumes": volumes, "tolerations": [dict(GPU_TOLERATION)]}
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    return {"replicas": replicas, "restartPolicy": "OnFailure",
            "template": {"metadata": {"labels": dict(spec.labels)}, "spec": pod}}


def build_pytorchjob(spec: TrainJobSpec) -> dict[str, Any]:
    """The PyTorchJob object (a dict the Kubernetes API accepts as JSON)."""
    replicas = {"Master": _replica(spec, 1)}
    if spec.nodes > 1:
        replicas["Worker"] = _replica(spec, spec.nodes - 1)
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": spec.backoff_limit}
    if spec.ttl_seconds_after_finished is not None:
        run_policy["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": spec.name, "namespace": spec.namespace,
                         "labels": {"app.kubernetes.io/part-of": "damo-yolo", **dict(spec.labels)}},
            "spec": {"nprocPerNode": str(spec.gpus_per_node), "runPolicy": run_policy,
                     "pytorchReplicaSpecs": replicas}}


def train_job_spec(name: str, image: str, damo_args: Sequence[str], *,
                   secret_env: Mapping[str, tuple[str, str]] | None = None,
                   **options: Any) -> TrainJobSpec:
    """Convenience for callers holding plain dicts: ``secret_env={"ENV": (secret, key)}``."""
    secrets = tuple(SecretEnv(env, secret, key)
                    for env, (secret, key) in (secret_env or {}).items())
    for key in ("env", "node_selector", "labels"):
        if isinstance(options.get(key), Mapping):
            options[key] = tuple(options[key].items())
    return TrainJobSpec(name=name, image=image, damo_args=tuple(damo_args), secret_env=secrets,
                        **options)
