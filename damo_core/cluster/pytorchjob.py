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


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable read from a key of a Kubernetes Secret (never a literal)."""

    env: str
    secret: str
    key: str


@dataclass(frozen=True)
class TrainJobSpec:
    """What a PyTorchJob of the training step needs; validated on construction.

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
            raise UserInputError(f"PyTorchJob name {self.name!r} must be a DNS label "
                                 "(lowercase letters, digits, '-', at most 63 characters)")
        if not self.image or any(c.isspace() for c in self.image):
            raise UserInputError(f"PyTorchJob image must be a non-empty reference, got "
                                 f"{self.image!r}")
        if not self.damo_args:
            raise UserInputError("PyTorchJob damo_args is empty: give the damo command to run")
        for what, value in (("nodes", self.nodes), ("gpus_per_node", self.gpus_per_node)):
            if not isinstance(value, int) or value < 1:
                raise UserInputError(f"PyTorchJob {what} must be an integer >= 1, got {value!r}")
        for what, value in (("cpu", self.cpu), ("memory", self.memory),
                            ("shm_size", self.shm_size)):
            if not _QUANTITY.match(value):
                raise UserInputError(f"PyTorchJob {what} {value!r} is not a Kubernetes quantity")

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node


def _container(spec: TrainJobSpec) -> dict[str, Any]:
    gpus = str(spec.gpus_per_node)
    command = ["torchrun", "--no-python", f"--nproc-per-node={gpus}", "damo", *spec.damo_args]
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in spec.env]
    env += [{"name": s.env, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": s.key}}}
            for s in spec.secret_env]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}]
    if spec.volume_claim:
        mounts.append({"name": "workspace", "mountPath": spec.mount_path})
    resources = {"cpu": spec.cpu, "memory": spec.memory, "nvidia.com/gpu": gpus}
    return {"name": CONTAINER, "image": spec.image, "imagePullPolicy": "IfNotPresent",
            "command": command, "env": env, "volumeMounts": mounts,
            "resources": {"requests": dict(resources), "limits": dict(resources)},
            "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True}}


def _replica(spec: TrainJobSpec, replicas: int) -> dict[str, Any]:
    # NCCL and DataLoader workers need a /dev/shm larger than the container default of 64 MiB.
    volumes: list[dict[str, Any]] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}]
    if spec.volume_claim:
        volumes.append({"name": "workspace",
                        "persistentVolumeClaim": {"claimName": spec.volume_claim}})
    pod: dict[str, Any] = {
        "serviceAccountName": spec.service_account, "containers": [_container(spec)],
        "volumes": volumes,
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
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
