"""`damo pipeline schedule` against the recording KFP API stand-in: create, list, pause, delete,
and the triggers refused before anything is sent."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from damo_core.cli import app
from pipelines.schedule import ScheduleError, check_cron, check_trigger


def _schedule(api, *args: str):
    return CliRunner().invoke(app, ["pipeline", "schedule", "--host", api.host, *args])


def _listed(api, *args: str) -> list[dict]:
    result = _schedule(api, "--list", "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_cron_schedule_round_trips_with_its_settings(api, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("map_floor: 0.42\n")
    result = _schedule(api, "--cron", "0 30 2 * * mon-fri", "--experiment", "nightly",
                       "--name", "nightly-damo", "--params", str(params),
                       "latency_budget_ms=12.5")
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert "cron '0 30 2 * * mon-fri'" in last and "catch-up off" in last
    [body] = api.created_recurring_runs()
    assert body["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * mon-fri"}}
    assert body["max_concurrency"] == 1 and body["no_catchup"] is True
    assert body["mode"] == "ENABLE" and body["display_name"] == "nightly-damo"
    assert body["runtime_config"]["parameters"] == {"map_floor": 0.42, "latency_budget_ms": 12.5}
    spec = body["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "damo-yolo" and "gate-4" in spec["root"]["dag"]["tasks"]
    assert body["service_account"] == "damo-pipeline-runner"
    assert api.experiments[body["experiment_id"]]["display_name"] == "nightly"

    [job] = _listed(api)
    assert job["recurring_run_id"] in last and job["url"].endswith(job["recurring_run_id"])
    assert (job["cron"], job["interval_s"]) == ("0 30 2 * * mon-fri", None)
    assert (job["max_concurrency"], job["no_catchup"], job["status"]) == (1, True, "ENABLED")
    assert job["experiment_id"] == body["experiment_id"] and job["name"] == "nightly-damo"


def test_an_interval_schedule_with_catchup_and_concurrency(api):
    result = _schedule(api, "--interval", "3600", "--max-concurrency", "3", "--catchup")
    assert result.exit_code == 0, result.output
    [body] = api.created_recurring_runs()
    assert body["trigger"] == {"periodic_schedule": {"interval_second": 3600}}
    assert body["max_concurrency"] == 3 and body["no_catchup"] is False
    [job] = _listed(api)  # the server sends int64 as strings; the listing has numbers again
    assert (job["cron"], job["interval_s"], job["max_concurrency"]) == (None, 3600, 3)
    assert job["no_catchup"] is False
    table = _schedule(api, "--list")
    assert table.exit_code == 0 and "every 3600 s" in table.stdout
    assert job["recurring_run_id"] in table.stdout


def test_disable_enable_and_delete_by_id(api):
    _schedule(api, "--interval", "60")
    _schedule(api, "--cron", "@daily", "--experiment", "other")
    first, second = api.recurring_runs
    result = _schedule(api, "--disable", first)
    assert result.exit_code == 0 and "disabled" in result.stdout
    assert {j["recurring_run_id"]: j["status"] for j in _listed(api)} == {
        first: "DISABLED", second: "ENABLED"}
    assert _schedule(api, "--enable", first).exit_code == 0
    assert api.recurring_runs[first]["status"] == "ENABLED"
    assert [j["recurring_run_id"] for j in _listed(api, "--experiment", "other")] == [second]
    result = _schedule(api, "--delete", second)
    assert result.exit_code == 0 and "deleted" in result.stdout
    assert [j["recurring_run_id"] for j in _listed(api)] == [first]


def test_an_unknown_id_is_one_line_naming_it(api):
    for action in ("--disable", "--enable", "--delete"):
        result = _schedule(api, action, "no-such-id")
        assert result.exit_code == 2, result.output
        assert "no recurring run 'no-such-id'" in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_an_unknown_experiment_to_list_is_one_line(api):
    result = _schedule(api, "--list", "--experiment", "nope")
    assert result.exit_code == 2
    assert "experiment 'nope'" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "said"), [
    (["--cron", "0 3 * * *"], "has 5 fields"),  # standard crontab: KFP would read it shifted
    (["--cron", "0 0 3 * *"], "e.g. '0 0 0 3 * *'"),
    (["--cron", "0 0 25 * * *"], "hour '25' is outside 0-23"),
    (["--cron", "0 0 3 * * 7"], "day-of-week '7' is outside 0-6"),
    (["--cron", "*/0 * * * * *"], "second '*/0' needs a step"),
    (["--cron", "0 0 3 * * * *"], "has 7 fields"),
    (["--cron", "0 0 3 * foo *"], "month 'foo' is not a number or a name"),
    (["--cron", "0 0 9-5 * * *"], "starts after it ends"),
    (["--cron", "@every 1h"], "use --interval"),
    (["--cron", "@fortnightly"], "unknown descriptor"),
    (["--interval", "0"], "interval must be a whole number of seconds > 0, got 0"),
    (["--interval", "-60"], "got -60"),
    (["--interval", "60", "--cron", "@daily"], "exactly one of --cron"),
    ([], "exactly one of --cron"),
    (["--interval", "60", "--max-concurrency", "0"], "max concurrency must be 1-10"),
    (["--interval", "60", "--max-concurrency", "11"], "got 11"),
    (["--list", "--delete", "x"], "--list and --delete"),
    (["--list", "--cron", "@daily"], "do not go with --list"),
    (["--interval", "60", "--json"], "add --list"),
])
def test_a_bad_schedule_is_one_line_and_sends_nothing(api, args, said):
    result = _schedule(api, *args)
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert api.requests == []  # not even the health check


def test_a_bad_parameter_is_refused_before_the_server_is_asked(api):
    result = _schedule(api, "--cron", "@daily", "map_flor=0.3")
    assert result.exit_code == 2 and "map_flor" in result.output
    assert api.requests == []


@pytest.mark.parametrize("cron", ["0 0 3 * * *", "*/15 * * * * ?", "0 0 9 ? * 2-6",
                                  "0 5,35 8-18/2 1-15 JAN-jun SUN", "30 0 0 1 */3 *",
                                  "@weekly", "  0 0 3 * * *  "])
def test_what_kfp_parses_passes(cron):
    assert check_cron(cron) == " ".join(cron.split())


def test_the_library_checks_match_the_cli():
    assert check_trigger(None, 90) == (None, 90)
    with pytest.raises(ScheduleError, match="got True"):
        check_trigger(None, True)  # a bool is not a number of seconds
    with pytest.raises(ScheduleError, match="minute '60' is outside 0-59"):
        check_cron("0 60 * * * *")


def test_what_the_server_refuses_anyway_is_one_line(api, monkeypatch):
    import pipelines.schedule as schedules

    monkeypatch.setattr(schedules, "check_trigger", lambda cron, interval, n: (cron, interval))
    with pytest.raises(ScheduleError) as err:
        schedules.create(api.host, cron="@daily", max_concurrency=11)
    assert str(err.value) == (f"{api.host} refused the recurring run (HTTP 400): The max "
                              "concurrency of the recurring run is out of range. Support 1-10.")
    assert len(api.created_recurring_runs()) == 1 and api.recurring_runs == {}
