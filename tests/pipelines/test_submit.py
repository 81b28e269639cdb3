"""`damo pipeline submit` and `damo pipeline rerun` against a recording KFP API stand-in."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from damo_core.cli import app
from pipelines.remote import UnknownStepError, find_step, select_step


def _submit(api, *extra: str):
    result = CliRunner().invoke(app, ["pipeline", "submit", "--host", api.host,
                                      "--experiment", "exp-a", *extra])
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1].split()[1].rstrip(":")
    return run_id, result.stdout


def _tasks(body):
    return body["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"]


def test_submit_sends_the_compiled_pipeline_and_parameters(api, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("map_floor: 0.42\nstudent_settings: {epochs: 7}\n")
    run_id, out = _submit(api, "--params", str(params), "latency_budget_ms=12.5")
    assert f"{api.host}/#/runs/details/{run_id}" in out
    [body] = api.created_runs()
    spec = body["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "damo-yolo"
    assert {"train", "distill", "distill-2", "distill-3"} <= set(_tasks(body))
    platform = body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    assert platform["deploymentSpec"]["executors"]  # secrets, GPUs, tolerations travel along
    assert body["runtime_config"]["parameters"] == {
        "map_floor": 0.42, "student_settings": {"epochs": 7}, "latency_budget_ms": 12.5}
    assert body["experiment_id"] == next(iter(api.experiments))
    assert api.experiments[body["experiment_id"]]["display_name"] == "exp-a"


def test_submit_rejects_an_unknown_parameter_before_sending(api, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("map_flor: 0.3\n")
    result = CliRunner().invoke(app, ["pipeline", "submit", "--host", api.host, "--params",
                                      str(params)])
    assert result.exit_code == 2
    assert "params.yaml" in result.output and "map_flor" in result.output
    assert api.created_runs() == []


def test_rerun_one_step_reuses_the_run_and_prunes_its_dependants(api):
    run_id, _ = _submit(api, "map_floor=0.3")
    result = CliRunner().invoke(app, ["pipeline", "rerun", "distill-2", "--from-run", run_id,
                                      "--host", api.host, "distill_settings={weight_end: 0.2}"])
    assert result.exit_code == 0, result.output
    first, again = api.created_runs()
    tasks = _tasks(again)
    assert not _cached(tasks["distill-2"])
    # upstream of distill S: cache hits, i.e. the earlier run's artifacts
    for upstream in ("unify", "train", "distill", "nas-3"):
        assert _cached(tasks[upstream])
    # downstream of S (T's distillation and S's evaluate/export/benchmark/gate) are pruned
    assert "distill-3" not in tasks
    assert not any(_depends_on(tasks, name, "distill-2") for name in tasks)
    assert set(_tasks(first)) - set(tasks)  # something was pruned, nothing was added
    assert again["experiment_id"] == first["experiment_id"]
    assert again["runtime_config"]["parameters"] == {
        "map_floor": 0.3, "distill_settings": {"weight_end": 0.2}}


def test_rerun_rejects_an_override_the_pipeline_does_not_take(api):
    run_id, _ = _submit(api)
    result = CliRunner().invoke(app, ["pipeline", "rerun", "distill-2", "--from-run", run_id,
                                      "--host", api.host, "map_flor=0.3"])
    assert result.exit_code == 2
    assert "unknown pipeline parameter 'map_flor'; did you mean 'map_floor'?" in result.output
    assert len(api.created_runs()) == 1  # only the original run


def test_rerun_with_dependants_keeps_them_uncached(api):
    run_id, _ = _submit(api)
    result = CliRunner().invoke(app, ["pipeline", "rerun", "distill S ◄ M", "--from-run", run_id,
                                      "--host", api.host, "--with-dependants"])
    assert result.exit_code == 0, result.output
    first, again = api.created_runs()
    tasks = _tasks(again)
    assert set(tasks) == set(_tasks(first))
    assert not _cached(tasks["distill-3"]) and not _cached(tasks["gate-3"])
    assert _cached(tasks["distill"])


def test_rerun_of_an_unknown_step_lists_the_tasks(api):
    run_id, _ = _submit(api)
    result = CliRunner().invoke(app, ["pipeline", "rerun", "distil-9", "--from-run", run_id,
                                      "--host", api.host])
    assert result.exit_code == 2
    assert "distil-9" in result.output and "distill-2 (distill S ◄ M)" in result.output
    assert len(api.created_runs()) == 1


def test_rerun_of_an_unknown_run_names_it(api):
    result = CliRunner().invoke(app, ["pipeline", "rerun", "distill-2", "--from-run", "nope",
                                      "--host", api.host])
    assert result.exit_code != 0
    assert "nope" in result.output or "404" in str(result.exception)


def test_select_step_handles_nested_dags():
    spec = {"pipeline_spec": {
        "root": {"dag": {"tasks": {
            "a": {"taskInfo": {"name": "a"}, "componentRef": {"name": "comp-a"}},
            "cond": {"taskInfo": {"name": "condition-1"}, "componentRef": {"name": "comp-cond"},
                     "dependentTasks": ["a"]},
            "after": {"taskInfo": {"name": "after"}, "componentRef": {"name": "comp-a"},
                      "dependentTasks": ["cond"]},
        }}},
        "components": {
            "comp-a": {"executorLabel": "exec-a"},
            "comp-cond": {"dag": {"tasks": {
                "inner": {"taskInfo": {"name": "deploy"}, "componentRef": {"name": "comp-d"}},
                "inner-after": {"taskInfo": {"name": "x"}, "componentRef": {"name": "comp-x"},
                                "inputs": {"parameters": {"p": {"taskOutputParameter": {
                                    "producerTask": "inner", "outputParameterKey": "o"}}}}},
            }}},
            "comp-d": {"executorLabel": "exec-d"},
            "comp-x": {"executorLabel": "exec-x"},
        },
        "deploymentSpec": {"executors": {"exec-a": {}, "exec-d": {}, "exec-x": {}}},
    }}
    assert find_step(spec["pipeline_spec"], "deploy") == ["cond", "inner"]
    out = select_step(spec, "deploy")
    root = out["pipeline_spec"]["root"]["dag"]["tasks"]
    assert set(root) == {"a", "cond"}  # 'after' depended on the condition holding the step
    inner = out["pipeline_spec"]["components"]["comp-cond"]["dag"]["tasks"]
    assert set(inner) == {"inner"} and inner["inner"]["cachingOptions"]["enableCache"] is False
    assert "comp-x" not in out["pipeline_spec"]["components"]
    assert set(out["pipeline_spec"]["deploymentSpec"]["executors"]) == {"exec-a", "exec-d"}
    assert "inner-after" in spec["pipeline_spec"]["components"]["comp-cond"]["dag"]["tasks"]
    with pytest.raises(UnknownStepError, match="is not a task"):
        select_step(spec, "nothing")


def _cached(task) -> bool:
    # proto3 JSON drops a false bool: a missing enableCache is caching off
    return task.get("cachingOptions", {}).get("enableCache", False)


def _depends_on(tasks, name, target) -> bool:
    from pipelines.remote import _upstream

    return target in _upstream(tasks[name])


def test_runs_use_the_service_account_that_may_drive_pytorchjobs(api):
    from damo_core.cluster.pytorchjob import PIPELINE_SERVICE_ACCOUNT

    run_id, _ = _submit(api)
    _submit(api, "--service-account", "team-runner")
    result = CliRunner().invoke(app, ["pipeline", "rerun", "distill-2", "--from-run", run_id,
                                      "--host", api.host])
    assert result.exit_code == 0, result.output
    accounts = [body["service_account"] for body in api.created_runs()]
    assert accounts == [PIPELINE_SERVICE_ACCOUNT, "team-runner", PIPELINE_SERVICE_ACCOUNT]
    assert PIPELINE_SERVICE_ACCOUNT == "damo-pipeline-runner"


def test_an_empty_service_account_is_refused_before_sending(api):
    result = CliRunner().invoke(app, ["pipeline", "submit", "--host", api.host,
                                      "--service-account", " "])
    assert result.exit_code == 2 and "service account" in result.output
    assert api.created_runs() == []
