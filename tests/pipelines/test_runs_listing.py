"""`damo pipeline runs` against the KFP API stand-in: states, durations and the gates'
verdicts as the run's task states record them (see pipelines/runs.py for the rules)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from damo_core.cli import app
from pipelines.runs import gate_verdicts


def _runs(api, *args: str):
    return CliRunner().invoke(app, ["pipeline", "runs", "--host", api.host, *args])


def _listed(api, *args: str) -> list[dict]:
    result = _runs(api, "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture()
def three_runs(api):
    """One run submitted through `damo pipeline submit` (its compiled spec reused by two more,
    put straight into the stand-in, each a day apart and in another state)."""
    submitted = CliRunner().invoke(app, ["pipeline", "submit", "--host", api.host,
                                         "--experiment", "exp-a"])
    assert submitted.exit_code == 0, submitted.output
    [newest] = api.runs.values()
    body = {k: newest[k] for k in ("pipeline_spec", "runtime_config", "experiment_id")}
    done = api.add_run({**body, "display_name": "nightly", "recurring_run_id": "sched-1"})
    # task keys, as Argo names the tasks: gate L passed, M failed, S broke, T was a cache hit
    api.set_run(done["run_id"], "SUCCEEDED", {
        "gate": "SUCCEEDED", "condition-1": "SUCCEEDED", "deploy": "SUCCEEDED",
        "gate-2": "SUCCEEDED", "condition-2": "SKIPPED",
        "gate-3": "FAILED",
        "gate-4": "SKIPPED", "condition-4": "RUNNING", "gate-4-driver": "SUCCEEDED",
    }, created_at="2024-05-01T10:00:00Z", minutes=95)
    running = api.add_run({**body, "display_name": "by hand", "experiment_id": "other"})
    # display names (as the KFP UI shows them) work as well
    api.set_run(running["run_id"], "RUNNING", {"gate L": "SUCCEEDED", "gate L passed":
                                               "SKIPPED", "gate M": "RUNNING"},
                created_at="2024-05-02T10:00:00Z")
    return newest["run_id"], running["run_id"], done["run_id"]


def test_runs_list_newest_first_with_states_durations_and_verdicts(api, three_runs):
    submitted, running, done = three_runs
    rows = _listed(api)
    assert [r["run_id"] for r in rows] == [submitted, running, done]
    assert [r["state"] for r in rows] == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert rows[2]["gates"] == {"L": "PASS", "M": "FAIL", "S": "ERROR", "T": "PASS"}
    assert rows[1]["gates"] == {"L": "FAIL", "M": "RUNNING"}
    assert rows[0]["gates"] == {}  # nothing ran yet: no verdict is made up
    assert rows[2]["duration_s"] == 95 * 60 and rows[2]["created_at"].startswith("2024-05-01")
    assert rows[0]["duration_s"] is None and rows[0]["finished_at"] is None  # 1970: not yet
    assert rows[2]["recurring_run_id"] == "sched-1" and rows[2]["name"] == "nightly"
    assert rows[2]["url"].endswith(f"/#/runs/details/{done}")

    table = _runs(api)
    assert table.exit_code == 0, table.output
    assert "L PASS  M FAIL  S ERROR  T PASS" in table.stdout
    assert "1h35m" in table.stdout and "2024-05-01 10:00 UTC" in table.stdout
    for run_id in three_runs:
        assert run_id in table.stdout


def test_limit_and_experiment_narrow_the_listing(api, three_runs):
    submitted, running, _ = three_runs
    assert [r["run_id"] for r in _listed(api, "--limit", "2")] == [submitted, running]
    [listed] = [r for r in api.requests if r.method == "GET" and r.path.endswith("/runs")][-1:]
    assert listed.query["page_size"] == ["2"] and listed.query["sort_by"] == ["created_at desc"]
    rows = _listed(api, "--experiment", "exp-a")
    assert [r["run_id"] for r in rows] == [submitted, three_runs[2]]


def test_a_run_whose_spec_cannot_be_had_lists_without_verdicts(api):
    ref = {"pipeline_id": "p-gone", "pipeline_version_id": "v-gone"}
    run = api.add_run({"display_name": "from a deleted version",
                       "pipeline_version_reference": ref})
    api.set_run(run["run_id"], "FAILED", {"gate": "SUCCEEDED", "condition-1": "SKIPPED"})
    [row] = _listed(api)
    assert (row["state"], row["gates"]) == ("FAILED", {})


def test_an_unknown_experiment_or_a_bad_limit_is_one_line(api):
    result = _runs(api, "--experiment", "nope")
    assert result.exit_code == 2 and "experiment 'nope'" in result.output
    assert len(result.output.strip().splitlines()) == 1
    before = len(api.requests)
    result = _runs(api, "--limit", "0")
    assert result.exit_code == 2 and "limit must be at least 1 run, got 0" in result.output
    assert len(api.requests) == before


def test_verdict_rules():
    tasks = {"gate": {"componentRef": {"name": "comp-gate"}, "taskInfo": {"name": "gate L"}},
             "condition-1": {"componentRef": {"name": "comp-condition-1"},
                             "taskInfo": {"name": "gate L passed"},
                             "triggerPolicy": {"condition": "x == true"},
                             "inputs": {"parameters": {"p": {"taskOutputParameter": {
                                 "producerTask": "gate", "outputParameterKey": "Output"}}}}},
             "other": {"componentRef": {"name": "comp-report"}}}
    spec = {"pipeline_spec": {"root": {"dag": {"tasks": tasks}}}}
    cases = [({}, {}),
             ({"gate": "PENDING"}, {"L": "PENDING"}),
             ({"gate": "SUCCEEDED"}, {"L": "?"}),
             ({"gate": "SUCCEEDED", "condition-1": "SKIPPED"}, {"L": "FAIL"}),
             ({"gate": "SUCCEEDED", "condition-1": "FAILED"}, {"L": "PASS"}),  # deploy broke
             ({"gate": "FAILED", "condition-1": "RUNTIME_STATE_UNSPECIFIED"}, {"L": "ERROR"}),
             ({"gate": "SUCCEEDED", "condition-1": "RUNTIME_STATE_UNSPECIFIED"}, {"L": "?"})]
    for states, expected in cases:
        assert gate_verdicts(spec, states) == expected, states
    # a second gate listed first by the server still comes second (pipeline order: L, M)
    second = {"gate-2": {**tasks["gate"], "taskInfo": {"name": "gate M"}},
              "condition-2": {**tasks["condition-1"], "inputs": {"parameters": {"p": {
                  "taskOutputParameter": {"producerTask": "gate-2"}}}}}}
    spec["pipeline_spec"]["root"]["dag"]["tasks"] = {**second, **tasks}
    states = {"gate": "SUCCEEDED", "condition-1": "SKIPPED", "gate-2": "FAILED"}
    assert list(gate_verdicts(spec, states).items()) == [("L", "FAIL"), ("M", "ERROR")]
