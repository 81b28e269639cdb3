"""Create a training job, watch it to completion with rank 0's log streamed, delete it.

Why here and not in the component: the pipeline step that trains on N nodes is a small pod
that only drives the Kubernetes API; all of that driving is this module, so the component
stays a shell and the control flow (create → wait → logs → delete, even on failure or
timeout) is unit-tested with a stand-in API object. ``kubernetes`` is imported lazily: a
laptop run never needs it. What differs between a Training Operator ``PyTorchJob`` and a
Trainer v2 ``TrainJob`` (API coordinates, the success condition, which pod runs rank 0) is a
:class:`JobKind`, so one loop drives both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from damo_core.cluster import pytorchjob
from damo_core.errors import DamoError

log = logging.getLogger(__name__)
TERMINAL = ("Succeeded", "Failed")  # a PyTorchJob's; a JobKind names its own success


class TrainingJobError(DamoError, RuntimeError):
    """The training job failed or did not finish in time; the message carries its conditions."""


class CustomObjects(Protocol):  # the subset of kubernetes.client.CustomObjectsApi used here
    def create_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                        plural: str, body: dict[str, Any]) -> Any: ...

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                     plural: str, name: str) -> Any: ...

    def delete_namespaced_custom_object(self, group: str, version: str, namespace: str,
                                        plural: str, name: str) -> Any: ...


class PodLogs(Protocol):  # the subset of kubernetes.client.CoreV1Api used here
    def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any: ...

    def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class JobOutcome:
    name: str
    state: str
    seconds: float
    conditions: list[dict[str, Any]]


def kube_apis() -> tuple[CustomObjects, PodLogs]:
    """Clients from the pod's service account, else from ``~/.kube/config``."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def job_state(job: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The last true condition type (Created, Running, Succeeded, Failed ...) and all of them."""
    conditions = list((job.get("status") or {}).get("conditions") or [])
    true = [c for c in conditions if str(c.get("status")) == "True"]
    return (true[-1]["type"] if true else "Pending"), conditions


@dataclass(frozen=True)
class JobKind:
    """One kind of training job as :func:`run_job` drives it.

    ``rank0_pods`` is the label selector (``{name}``: the job's) of the pod whose ``container``
    runs rank 0; ``state`` reads a job object as (state, conditions), where "Running" means
    that pod runs and ``succeeded`` or "Failed" mean the job is over."""

    kind: str
    group: str
    version: str
    plural: str
    succeeded: str
    rank0_pods: str
    container: str
    state: Callable[[dict[str, Any]], tuple[str, list[dict[str, Any]]]] = field(
        default=job_state)

    def ref(self, namespace: str) -> dict[str, str]:
        """The keyword arguments that name this kind's collection in ``CustomObjectsApi``."""
        return {"group": self.group, "version": self.version, "namespace": namespace,
                "plural": self.plural}


PYTORCHJOB = JobKind(pytorchjob.KIND, pytorchjob.GROUP, pytorchjob.VERSION, pytorchjob.PLURAL,
                     succeeded="Succeeded", container=pytorchjob.CONTAINER,
                     rank0_pods=f"{pytorchjob.JOB_NAME_LABEL}={{name}},"
                                f"{pytorchjob.REPLICA_TYPE_LABEL}=master")


def stream_master_logs(core: PodLogs, namespace: str, name: str,
                       sink: Callable[[str], None], kind: JobKind = PYTORCHJOB) -> int:
    """Follow the rank-0 pod's log into ``sink`` line by line; returns lines forwarded.

    Returns 0 without raising when the pod is not there yet, so the caller can retry."""
    selector = kind.rank0_pods.format(name=name)
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    if not pods:
        return 0
    stream = core.read_namespaced_pod_log(pods[0].metadata.name, namespace,
                                          container=kind.container, follow=True,
                                          _preload_content=False)
    count = 0
    lines: Iterable[bytes] = stream.stream() if hasattr(stream, "stream") else stream
    buffer = b""
    for chunk in lines:
        buffer += chunk
        *done, buffer = buffer.split(b"\n")
        for line in done:
            sink(line.decode(errors="replace"))
            count += 1
    if buffer:
        sink(buffer.decode(errors="replace"))
        count += 1
    return count


def run_job(job: dict[str, Any], kind: JobKind, *,
            apis: tuple[CustomObjects, PodLogs] | None = None,
            timeout_s: float = 24 * 3600, poll_s: float = 10.0,
            sink: Callable[[str], None] = print, delete: bool = True,
            clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> JobOutcome:
    """Create ``job`` (a ``kind``), stream its rank-0 log once it runs, wait for it to succeed
    or fail, and delete it (also on failure, timeout or interrupt, unless ``delete=False``).

    Raises ``TrainingJobError`` when the job fails or exceeds ``timeout_s``."""
    custom, core = apis or kube_apis()
    meta = job["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    ref, terminal = kind.ref(namespace), (kind.succeeded, "Failed")
    custom.create_namespaced_custom_object(body=job, **ref)
    log.info("created %s %s/%s", kind.kind, namespace, name)
    started, streamed = clock(), False
    try:
        while True:
            state, conditions = kind.state(custom.get_namespaced_custom_object(name=name,
                                                                               **ref))
            if not streamed and state in ("Running", *terminal):
                streamed = stream_master_logs(core, namespace, name, sink, kind) > 0
            if state in terminal:
                break
            if clock() - started > timeout_s:
                raise TrainingJobError(f"{kind.kind} {namespace}/{name} still {state} after "
                                       f"{timeout_s:.0f} s; conditions {conditions}")
            sleep(poll_s)
        outcome = JobOutcome(name, state, clock() - started, conditions)
        if state == "Failed":
            raise TrainingJobError(f"{kind.kind} {namespace}/{name} failed: "
                                   f"{conditions[-1].get('message', conditions[-1])}")
        return outcome
    finally:
        if delete:
            custom.delete_namespaced_custom_object(name=name, **ref)
            log.info("deleted %s %s/%s", kind.kind, namespace, name)


def run_pytorchjob(job: dict[str, Any], **options: Any) -> JobOutcome:
    """:func:`run_job` for a ``PyTorchJob`` (Training Operator v1)."""
    return run_job(job, PYTORCHJOB, **options)
