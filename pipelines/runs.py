"""Recent runs on a Kubeflow Pipelines API server and what each run's gates decided.

What is read, all from the v2beta1 run API (one list request, then one ``get_run`` per run,
since the task states come with a run's details): each run's name, id, state, creation and
finish times, the recurring run that started it, its compiled spec (inline, or its pipeline
version's) and ``run_details.task_details``, which names each task and gives its state.

The gate's decision itself is the component's boolean ``Output`` and the ``verdict``
artifact's metadata (passed, AP50, latency, reason); both are kept in ML Metadata, which this
API does not serve. What the API does show is the decision's effect: ``deploy`` sits in a
``dsl.If`` on that output, a task of its own (``condition-N``, shown as "gate S passed"), and
the scheduler skips that task when the gate said no. So, for each gate of a run's spec:

* PASS: the gate's ``dsl.If`` task was started: PENDING, RUNNING, SUCCEEDED or FAILED (a
  failed deploy is still a passed gate);
* FAIL: the ``dsl.If`` task is SKIPPED;
* ERROR: the gate task itself FAILED (e.g. a threshold it refused), so it decided nothing;
* the gate task's state (PENDING, RUNNING) while it has not decided, and ``?`` when the run
  records no decision (e.g. it was cancelled in between).

A gate the run never reached is left out. Tasks are matched by task key (``gate-3``,
``condition-3``: the names Argo gives them) or by display name (``gate S``); for the reason
behind a verdict, open the run's page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from damo_core.errors import DamoError, UserInputError
from pipelines.remote import client, experiment_id_of, spec_of, ui_url

_GATE_COMPONENT = re.compile(r"comp-gate(-\d+)?$")
# States of a dsl.If task that mean its condition held: the task was started.
_BRANCH_TAKEN = {"PENDING", "RUNNING", "SUCCEEDED", "FAILED"}


@dataclass(frozen=True)
class RunRow:
    """One run as listed: what the table and ``--json`` show."""

    name: str
    run_id: str
    state: str
    created_at: datetime | None
    finished_at: datetime | None
    experiment_id: str | None = None
    recurring_run_id: str | None = None
    gates: dict[str, str] = field(default_factory=dict)
    url: str = ""

    @property
    def duration_s(self) -> float | None:
        """Seconds from creation to finish; None while it runs (the API then sends a zero
        time, 1970-01-01, or nothing)."""
        if not self.created_at or not self.finished_at or self.finished_at <= self.created_at:
            return None
        return (self.finished_at - self.created_at).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "run_id": self.run_id, "state": self.state,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "finished_at": self.finished_at.isoformat() if self.duration_s is not None
                else None,
                "duration_s": self.duration_s, "experiment_id": self.experiment_id,
                "recurring_run_id": self.recurring_run_id, "gates": dict(self.gates),
                "url": self.url}


def gate_verdicts(spec: dict[str, Any], task_states: dict[str, str]) -> dict[str, str]:
    """Each gate of ``spec`` (``{"pipeline_spec": ...}``) → its verdict read from the run's
    task states (task name → state), by the rules of the module doc; the label is the gate's
    display name without "gate " (``L``, ``M``, ...), in the pipeline's order."""
    tasks = spec["pipeline_spec"]["root"]["dag"]["tasks"]
    found: list[tuple[tuple[str, int], str, str]] = []
    for key, task in tasks.items():
        if not task.get("triggerPolicy", {}).get("condition"):
            continue
        for value in task.get("inputs", {}).get("parameters", {}).values():
            gate = value.get("taskOutputParameter", {}).get("producerTask")
            if gate not in tasks or not _GATE_COMPONENT.match(
                    tasks[gate]["componentRef"]["name"]):
                continue
            verdict = _verdict(_state(task_states, gate, tasks[gate]),
                               _state(task_states, key, task))
            if verdict:
                display = tasks[gate].get("taskInfo", {}).get("name") or gate
                found.append((_task_order(gate), display.removeprefix("gate ").strip() or gate,
                              verdict))
    return {label: verdict for _, label, verdict in sorted(found)}


def _task_order(key: str) -> tuple[str, int]:
    """``gate``, ``gate-2``, ... in the order the pipeline defined them (L, M, S, T), whatever
    order the server's JSON lists the tasks in."""
    stem, _, number = key.rpartition("-")
    return (stem, int(number)) if stem and number.isdigit() else (key, 1)


def _state(task_states: dict[str, str], key: str, task: dict[str, Any]) -> str | None:
    return task_states.get(key) or task_states.get(task.get("taskInfo", {}).get("name", ""))


def _verdict(gate: str | None, branch: str | None) -> str | None:
    if gate == "FAILED":
        return "ERROR"
    if branch == "SKIPPED":
        return "FAIL"
    if branch in _BRANCH_TAKEN:
        return "PASS"
    if gate in ("PENDING", "RUNNING"):
        return gate
    return "?" if gate else None


def list_runs(host: str, *, limit: int = 10, experiment: str | None = None,
              token: str | None = None, namespace: str | None = None) -> list[RunRow]:
    """The ``limit`` newest runs (of ``experiment`` if named) with their gates' verdicts."""
    if limit < 1:
        raise UserInputError(f"limit must be at least 1 run, got {limit}")
    kfp_client = client(host, token, namespace)
    experiment_id = experiment_id_of(kfp_client, experiment, host, namespace) \
        if experiment else None
    listed = kfp_client.list_runs(page_size=limit, sort_by="created_at desc",
                                  experiment_id=experiment_id, namespace=namespace)
    specs: dict[tuple[str, str], dict[str, Any]] = {}
    return [_row(kfp_client, kfp_client.get_run(run.run_id), specs)
            for run in (listed.runs or [])[:limit]]


def _row(kfp_client: Any, run: Any, specs: dict[tuple[str, str], dict[str, Any]]) -> RunRow:
    details = run.run_details.task_details if run.run_details else None
    states = {t.display_name: t.state for t in details or [] if t.display_name and t.state}
    spec = _spec(kfp_client, run, specs)
    return RunRow(run.display_name or "", run.run_id, run.state or "", run.created_at,
                  run.finished_at, run.experiment_id, run.recurring_run_id,
                  gate_verdicts(spec, states) if spec else {},
                  ui_url(kfp_client, "runs", run.run_id))


def _spec(kfp_client: Any, run: Any, specs: dict[tuple[str, str], dict[str, Any]]
          ) -> dict[str, Any] | None:
    """The run's compiled spec; one request per pipeline version however many runs use it;
    None when the server has none to give, e.g. its pipeline version was deleted (the run
    then lists without verdicts)."""
    from kfp_server_api.exceptions import ApiException

    ref = run.pipeline_version_reference
    key = (ref.pipeline_id, ref.pipeline_version_id) if ref and not run.pipeline_spec else None
    if key in specs:
        return specs[key]  # type: ignore[index]
    try:
        spec = spec_of(kfp_client, run, run.run_id)
    except (DamoError, ApiException):
        return None
    if key:
        specs[key] = spec
    return spec
