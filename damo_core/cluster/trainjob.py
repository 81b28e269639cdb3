"""The Kubeflow Trainer v2 ``TrainJob`` that trains one model over N nodes.

Why a second job kind: clusters that moved from the Training Operator v1 to Kubeflow Trainer v2
(``trainer.kubeflow.org/v1alpha1``) no longer serve ``PyTorchJob``. The pipeline parameter
``train_job_kind`` chooses; both kinds are built from the same
:class:`~damo_core.cluster.pytorchjob.TrainJobSpec` and run the same command, so the choice
changes who starts the pods, not what they run. The object validates against the Trainer's
CRD schema kept in ``manifests/crds/`` (``tests/cluster/test_trainjob.py``).

Shape: ``runtimeRef`` names the ``ClusterTrainingRuntime`` ``damo-torch-distributed``
(``manifests/trainer-v2/``), whose replicated job ``node`` is the pod frame (GPU toleration,
restart policy, unprivileged container). The TrainJob's ``trainer`` sets the image, the
``torchrun --no-python ... damo ...`` command, the environment, ``numNodes``, ``numProcPerNode``
and ``resourcesPerNode``; the Trainer's torch plugin sets ``PET_NNODES``,
``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT`` in
container ``node``, which torchrun reads as its rendezvous. What a trainer has no field for
(the service account, /dev/shm and the workspace PVC, node selector, pod labels) goes in a
``runtimePatches`` entry for that replicated job. The PyTorchJob's run-policy fields have no
TrainJob field: the runtime's Job ``backoffLimit`` is the spec's default ``backoff_limit`` and
:func:`run_trainjob` deletes the job when it ends, so a spec that asks for another
``backoff_limit`` or a ``ttl_seconds_after_finished`` is refused rather than ignored.
"""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

from damo_core.cluster.jobs import JobKind, JobOutcome, job_state, run_job
from damo_core.cluster.pytorchjob import (
    TrainJobSpec,
    job_command,
    job_env,
    job_resources,
    job_volumes,
)
from damo_core.errors import UserInputError

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
RUNTIME = "damo-torch-distributed"  # manifests/trainer-v2/torch-runtime.yaml
NODE = "node"  # the runtime's replicated job and container that the trainer fields fill
PATCH_MANAGER = "damo-yolo/pipeline"  # a runtime patch's owner: a domain-prefixed path
SUCCEEDED = "Complete"  # the TrainJob condition of a finished job (the other end: Failed)
# set by the Trainer's torch plugin; its webhook refuses a TrainJob whose env sets one
RESERVED_ENV = frozenset({"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK",
                          "PET_MASTER_ADDR", "PET_MASTER_PORT"})
# the CRD's rule for metadata.name (RFC 1035: a letter first)
_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_POD_SUFFIX = "-abcde"  # JobSet checks its longest pod name with a 5-character random suffix
_DNS_MAX = 63


class TrainJobNameError(UserInputError):
    """A TrainJob name the Trainer or JobSet would refuse; the message says the rule."""


def max_name_length(nodes: int) -> int:
    """The longest TrainJob name whose pods JobSet accepts: it names them
    ``<name>-node-0-<index>-<5 random>`` and refuses the job if that exceeds 63 characters."""
    return _DNS_MAX - len(f"-{NODE}-0-{nodes - 1}{_POD_SUFFIX}")


def _check_name(spec: TrainJobSpec) -> None:
    if not _RFC1035.match(spec.name):
        raise TrainJobNameError(f"TrainJob name {spec.name!r} must start with a letter "
                                "(RFC 1035 label: lowercase letters, digits, '-')")
    limit = max_name_length(spec.nodes)
    if len(spec.name) > limit:
        raise TrainJobNameError(f"TrainJob name {spec.name!r} has {len(spec.name)} characters; "
                                f"with {spec.nodes} nodes JobSet's pod names allow {limit}")


def _check_run_policy(spec: TrainJobSpec) -> None:
    default = {f.name: f.default for f in fields(TrainJobSpec)}
    for what in ("backoff_limit", "ttl_seconds_after_finished"):
        if getattr(spec, what) != default[what]:
            raise UserInputError(f"TrainJob has no {what}: the runtime {RUNTIME} sets "
                                 f"{default[what]!r}, got {getattr(spec, what)!r}")


def _pod_patch(spec: TrainJobSpec) -> dict[str, Any]:
    volumes, mounts = job_volumes(spec)
    pod: dict[str, Any] = {"serviceAccountName": spec.service_account, "volumes": volumes,
                           "containers": [{"name": NODE, "volumeMounts": mounts}]}
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    return {"metadata": {"labels": dict(spec.labels)}, "spec": pod}


def build_trainjob(spec: TrainJobSpec, runtime: str = RUNTIME) -> dict[str, Any]:
    """The TrainJob object (a dict the Kubernetes API accepts as JSON) on ``runtime``."""
    _check_name(spec)
    _check_run_policy(spec)
    env = job_env(spec)
    reserved = sorted(RESERVED_ENV & {e["name"] for e in env})
    if reserved:
        raise UserInputError(f"TrainJob env must not set {reserved}: the Trainer sets them")
    trainer = {"image": spec.image, "command": job_command(spec), "env": env,
               "numNodes": spec.nodes, "numProcPerNode": spec.gpus_per_node,
               "resourcesPerNode": job_resources(spec)}
    patch = {"manager": PATCH_MANAGER, "trainingRuntimeSpec": {"template": {"spec": {
        "replicatedJobs": [{"name": NODE, "template": {"spec": {
            "template": _pod_patch(spec)}}}]}}}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": spec.name, "namespace": spec.namespace,
                         "labels": {"app.kubernetes.io/part-of": "damo-yolo",
                                    **dict(spec.labels)}},
            "spec": {"runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime",
                                    "name": runtime},
                     "trainer": trainer, "runtimePatches": [patch]}}


def trainjob_state(job: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Like :func:`~damo_core.cluster.jobs.job_state`, and "Running" once the ``node`` Job is
    ready: a TrainJob has no Running condition, its ``jobsStatus`` says when the pods run."""
    state, conditions = job_state(job)
    if state in (SUCCEEDED, "Failed"):
        return state, conditions
    jobs = (job.get("status") or {}).get("jobsStatus") or []
    if any(j.get("name") == NODE and (j.get("ready") or 0) > 0 for j in jobs):
        return "Running", conditions
    return state, conditions


TRAINJOB = JobKind(KIND, GROUP, VERSION, PLURAL, succeeded=SUCCEEDED, container=NODE,
                   rank0_pods=f"jobset.sigs.k8s.io/jobset-name={{name}},"
                              f"jobset.sigs.k8s.io/replicatedjob-name={NODE},"
                              "batch.kubernetes.io/job-completion-index=0",
                   state=trainjob_state)


def run_trainjob(job: dict[str, Any], **options: Any) -> JobOutcome:
    """:func:`~damo_core.cluster.jobs.run_job` for a ``TrainJob`` (Kubeflow Trainer v2)."""
    return run_job(job, TRAINJOB, **options)
