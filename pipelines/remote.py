"""Submit the pipeline to a Kubeflow Pipelines API server, and rerun one step of an earlier run;
also the client helpers that scheduling (pipelines/schedule.py) and the runs listing
(pipelines/runs.py) share with them.

Rerun, the KFP way: a step is rerun by submitting the earlier run's own compiled spec and
parameters again with caching left on for everything upstream of the step (those tasks are
cache hits, so their recorded output artifacts, the earlier run's, feed the step), caching
switched off for the step itself, and the tasks downstream of it either pruned from the DAG
(``with_dependants=False``: just that step) or rerun as well. Nothing is recomputed or
re-uploaded upstream, and the spec is the one that ran, even if the code changed since.
Parameters can be overridden (a new distillation weight, a new latency budget).
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from damo_core.cluster.pytorchjob import PIPELINE_SERVICE_ACCOUNT
from damo_core.errors import DamoError, UnavailableError, UserInputError
from pipelines.damo_pipeline import compile_pipeline, damo_pipeline
from pipelines.params import PipelineParameterError


class UnknownStepError(UserInputError):
    """The step named for a rerun is not a task of the run's pipeline."""


@dataclass(frozen=True)
class Submitted:
    run_id: str
    url: str
    experiment_id: str | None
    parameters: dict[str, Any]


def pipeline_parameters() -> dict[str, Any]:
    """The pipeline's declared parameters with their default values."""
    from google.protobuf.json_format import MessageToDict

    spec = damo_pipeline.pipeline_spec.root.input_definitions.parameters
    return {k: MessageToDict(v).get("defaultValue") for k, v in spec.items()}


def check_parameters(params: dict[str, Any], known: dict[str, Any], source: str) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise PipelineParameterError(f"{source}: unknown pipeline parameter(s) {unknown}; the "
                                     f"pipeline takes {sorted(known)} (see `damo pipeline "
                                     "params`)")


class KfpUnavailableError(UnavailableError, ValueError):
    """No KFP API server answers at the host (down, wrong URL, no route); names the host."""


def client(host: str, token: str | None = None, namespace: str | None = None) -> Any:
    import kfp
    from urllib3.exceptions import HTTPError

    kwargs: dict[str, Any] = {"host": host, "existing_token": token}
    if namespace:
        kwargs["namespace"] = namespace
    try:
        return kfp.Client(**kwargs)  # checks the server's health endpoint
    except (HTTPError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise KfpUnavailableError(f"no Kubeflow Pipelines API answers at {host} ({reason}); "
                                  "check --host and that the cluster is reachable") from None


def submit(host: str, params: dict[str, Any] | None = None, *, experiment: str | None = None,
           run_name: str | None = None, token: str | None = None,
           namespace: str | None = None, params_source: str = "parameters",
           service_account: str = PIPELINE_SERVICE_ACCOUNT) -> Submitted:
    """Compile the DAG and create a run of it on the KFP API server at ``host``.

    The run's pods use ``service_account``: the default one (manifests/base/rbac.yaml) may
    create, watch and delete the PyTorchJobs of multi-node training."""
    params = params or {}
    with compiled_package(params, params_source) as package:
        return _create_run(client(host, token, namespace), package, params, experiment,
                           run_name or "damo-yolo", namespace, service_account)


@contextmanager
def compiled_package(params: dict[str, Any], params_source: str = "parameters"
                     ) -> Iterator[str]:
    """The DAG compiled to a temporary IR YAML, once ``params`` are known to be parameters it
    takes: a run and a recurring run are both created from this package."""
    check_parameters(params, pipeline_parameters(), params_source)
    with tempfile.TemporaryDirectory() as tmp:
        yield compile_pipeline(str(Path(tmp) / "pipeline.yaml"))


def check_service_account(service_account: str) -> None:
    """An empty account would leave the pods on whatever account KFP defaults to, which may
    not drive training jobs (PyTorchJob or TrainJob): refused before anything is sent."""
    if not service_account.strip():
        raise UserInputError("service account: empty name; the run's pods need one that may "
                             f"drive training jobs (default {PIPELINE_SERVICE_ACCOUNT})")


def ui_url(kfp_client: Any, page: str, object_id: str) -> str:
    """The KFP UI's page of a run (``page="runs"``) or recurring run (``"recurringrun"``)."""
    return f"{kfp_client._get_url_prefix()}/#/{page}/details/{object_id}"


@contextmanager
def not_found_as(error: DamoError) -> Iterator[None]:
    """Turn the API's HTTP 404 inside the block into ``error`` (one line naming what is
    missing); any other API error is not the user's and passes through."""
    from kfp_server_api.exceptions import ApiException

    try:
        yield
    except ApiException as err:
        if err.status != 404:
            raise
        raise error from None


def rerun(host: str, run_id: str, step: str, *, with_dependants: bool = False,
          params: dict[str, Any] | None = None, experiment: str | None = None,
          token: str | None = None, namespace: str | None = None,
          service_account: str = PIPELINE_SERVICE_ACCOUNT) -> Submitted:
    """Rerun ``step`` of run ``run_id`` (and what depends on it, if asked); see module doc."""
    kfp_client = client(host, token, namespace)
    earlier = _get_run(kfp_client, run_id, host)
    spec = spec_of(kfp_client, earlier, run_id)
    rerun_spec = select_step(spec, step, with_dependants=with_dependants)
    runtime = earlier.runtime_config.parameters if earlier.runtime_config else None
    declared = spec["pipeline_spec"]["root"].get("inputDefinitions", {}).get("parameters", {})
    check_parameters(params or {}, declared, "overrides")
    merged = {**(runtime or {}), **(params or {})}
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "pipeline.yaml"
        docs = [rerun_spec["pipeline_spec"]]
        if rerun_spec.get("platform_spec"):
            docs.append(rerun_spec["platform_spec"])
        package.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return _create_run(kfp_client, str(package), merged, experiment,
                           f"rerun {step} of {run_id}", namespace, service_account,
                           experiment_id=None if experiment else earlier.experiment_id)


class UnknownExperimentError(UserInputError):
    """An experiment named to filter by does not exist (or is ambiguous) on that server."""


def experiment_id_of(kfp_client: Any, name: str, host: str, namespace: str | None = None
                     ) -> str:
    """The id of the experiment called ``name``: listings filter by id, users know names."""
    try:
        return kfp_client.get_experiment(experiment_name=name, namespace=namespace
                                         ).experiment_id
    except ValueError as err:  # kfp.Client's "No experiment is found" / "Multiple ..."
        raise UnknownExperimentError(f"experiment {name!r} on {host}: "
                                     f"{str(err).rstrip('.')}") from None


class UnknownRunError(UserInputError):
    """The run to rerun does not exist on that KFP server."""


def _get_run(kfp_client: Any, run_id: str, host: str) -> Any:
    with not_found_as(UnknownRunError(
            f"no run {run_id!r} on {host} (HTTP 404); take the run id from the run's page or "
            "`damo pipeline submit`'s output")):
        return kfp_client.get_run(run_id)


def _create_run(kfp_client: Any, package: str, params: dict[str, Any], experiment: str | None,
                run_name: str, namespace: str | None, service_account: str,
                experiment_id: str | None = None) -> Submitted:
    check_service_account(service_account)
    result = kfp_client.create_run_from_pipeline_package(
        package, arguments=params, run_name=run_name, namespace=namespace,
        experiment_name=None if experiment_id else (experiment or "damo-yolo"),
        experiment_id=experiment_id, service_account=service_account)
    run = result.run_info
    return Submitted(run.run_id, ui_url(kfp_client, "runs", run.run_id), run.experiment_id,
                     params)


def spec_of(kfp_client: Any, run: Any, run_id: str) -> dict[str, Any]:
    """The compiled spec the run executed: inline, or from the pipeline version it referenced."""
    spec = run.pipeline_spec
    if not spec and run.pipeline_version_reference:
        ref = run.pipeline_version_reference
        spec = kfp_client.get_pipeline_version(ref.pipeline_id, ref.pipeline_version_id
                                               ).pipeline_spec
    if not spec:
        raise UserInputError(f"run {run_id}: the server returned no pipeline spec to rerun")
    return spec if "pipeline_spec" in spec else {"pipeline_spec": spec}


def select_step(spec: dict[str, Any], step: str, *, with_dependants: bool = False
                ) -> dict[str, Any]:
    """A copy of ``spec`` (``{"pipeline_spec", "platform_spec"}``) that reruns only ``step``.

    Upstream tasks keep their caching (cache hits reuse the earlier outputs); the step gets
    caching off; its dependants, at its level and at every enclosing level, are removed, or,
    with ``with_dependants``, kept with caching off.
    """
    out = copy.deepcopy(spec)
    pipeline = out["pipeline_spec"]
    path = find_step(pipeline, step)
    dags = [pipeline["root"]["dag"]]
    for key in path[:-1]:
        dags.append(_component_of(pipeline, dags[-1]["tasks"][key])["dag"])
    for dag, key in zip(dags, path, strict=True):
        downstream = _dependants(dag["tasks"], key)
        for name in downstream:
            if with_dependants:
                _disable_cache(pipeline, dag["tasks"][name])
            else:
                del dag["tasks"][name]
    _disable_cache(pipeline, dags[-1]["tasks"][path[-1]])
    _drop_unused_components(out)
    return out


def find_step(pipeline: dict[str, Any], step: str) -> list[str]:
    """Task keys from the root DAG down to the task named ``step`` (key or display name)."""
    matches = [path for path, task in walk_tasks(pipeline)
               if path[-1] == step or task.get("taskInfo", {}).get("name", "").casefold()
               == step.casefold()]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(f"{path[-1]} ({task.get('taskInfo', {}).get('name', '')})"
                        for path, task in walk_tasks(pipeline))
    what = "matches several tasks" if matches else "is not a task of this pipeline"
    raise UnknownStepError(f"step {step!r} {what}; tasks: {listing}")


def walk_tasks(pipeline: dict[str, Any]) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """Every task of a compiled pipeline, with its path of task keys, condition groups' too."""
    return _walk(pipeline, pipeline["root"]["dag"], [])


def _walk(pipeline: dict[str, Any], dag: dict[str, Any], prefix: list[str]
          ) -> Iterator[tuple[list[str], dict[str, Any]]]:
    for key, task in dag.get("tasks", {}).items():
        yield [*prefix, key], task
        inner = _component_of(pipeline, task).get("dag")
        if inner:
            yield from _walk(pipeline, inner, [*prefix, key])


def _component_of(pipeline: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    return pipeline["components"][task["componentRef"]["name"]]


def _upstream(task: dict[str, Any]) -> set[str]:
    deps = set(task.get("dependentTasks", []))
    for kind in ("artifacts", "parameters"):
        for value in task.get("inputs", {}).get(kind, {}).values():
            for ref in ("taskOutputArtifact", "taskOutputParameter"):
                if ref in value:
                    deps.add(value[ref]["producerTask"])
    return deps


def _dependants(tasks: dict[str, dict[str, Any]], key: str) -> list[str]:
    """Tasks of one DAG that depend on ``key``, directly or through others."""
    found: set[str] = set()
    frontier = {key}
    while frontier:
        nxt = {name for name, task in tasks.items()
               if name not in found and name != key and _upstream(task) & frontier}
        found |= nxt
        frontier = nxt
    return sorted(found)


def _disable_cache(pipeline: dict[str, Any], task: dict[str, Any]) -> None:
    task["cachingOptions"] = {**task.get("cachingOptions", {}), "enableCache": False}
    inner = _component_of(pipeline, task).get("dag")
    for sub in (inner or {}).get("tasks", {}).values():
        _disable_cache(pipeline, sub)


def _drop_unused_components(spec: dict[str, Any]) -> None:
    """Remove components and executors no remaining task uses (pruned dependants)."""
    pipeline = spec["pipeline_spec"]
    used = {task["componentRef"]["name"] for _, task in walk_tasks(pipeline)}
    executors = {pipeline["components"][name].get("executorLabel") for name in used}
    pipeline["components"] = {k: v for k, v in pipeline["components"].items() if k in used}
    deploy = pipeline.get("deploymentSpec", {}).get("executors", {})
    for label in list(deploy):
        if label not in executors:
            del deploy[label]
    platform = spec.get("platform_spec", {}).get("platforms", {}).get("kubernetes", {})
    k8s = platform.get("deploymentSpec", {}).get("executors", {})
    for label in list(k8s):
        if label not in executors:
            del k8s[label]
