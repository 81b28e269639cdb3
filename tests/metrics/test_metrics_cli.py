"""``damo dashboards``, ``damo metrics push|report`` and ``damo cluster job`` through typer,
on a local app until the lead registers them in damo_core/cli/app.py."""

from __future__ import annotations

import json

import typer
import yaml
from typer.testing import CliRunner

from damo_core.cli.cluster_cmds import cluster_app, dashboards, metrics_app
from damo_core.metrics import ENV_GATEWAY
from damo_core.metrics.dashboards import DASHBOARDS

app = typer.Typer()
app.command("dashboards")(dashboards)
app.add_typer(metrics_app, name="metrics")
app.add_typer(cluster_app, name="cluster")
runner = CliRunner()


def test_dashboards_command_writes_every_dashboard(tmp_path):
    result = runner.invoke(app, ["dashboards", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == sorted(DASHBOARDS)
    assert json.loads((tmp_path / "damo-latency.json").read_text())["uid"] == "damo-latency"


def test_push_without_gateway_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_GATEWAY, raising=False)
    values = tmp_path / "eval.json"
    values.write_text(json.dumps({"AP": 0.3, "AP50": 0.5}))
    result = runner.invoke(app, ["metrics", "push", "eval", str(values), "--run", "r",
                                 "--model", "damoyolo_s"])
    assert result.exit_code == 0, result.output
    assert "not pushed" in result.output


def test_push_bad_kind_and_missing_file_exit_2(tmp_path):
    result = runner.invoke(app, ["metrics", "push", "nope", str(tmp_path / "x.json"), "--run",
                                 "r", "--model", "m"])
    assert result.exit_code == 2 and "nope" in result.output
    result = runner.invoke(app, ["metrics", "push", "eval", str(tmp_path / "x.json"), "--run",
                                 "r", "--model", "m"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_report_command_writes_png(tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"model": "a", "AP": 0.3, "p50_ms": 2.0},
                                {"model": "b", "AP": 0.4, "p50_ms": 3.0}]))
    result = runner.invoke(app, ["metrics", "report", str(rows), "--out",
                                 str(tmp_path / "f.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_cluster_job_prints_the_pytorchjob():
    result = runner.invoke(app, ["cluster", "job", "--name", "teacher-l", "--image", "img:1",
                                 "--nodes", "2", "--", "train", "--model", "damoyolo_l"])
    assert result.exit_code == 0, result.output
    body = yaml.safe_load(result.output)
    assert body["kind"] == "PyTorchJob" and body["spec"]["pytorchReplicaSpecs"]["Worker"][
        "replicas"] == 1
    result = runner.invoke(app, ["cluster", "job", "--name", "Bad_Name", "--image", "img:1",
                                 "--", "train"])
    assert result.exit_code == 2 and "DNS label" in result.output


def test_cluster_job_prints_a_trainjob_and_refuses_an_unknown_kind():
    result = runner.invoke(app, ["cluster", "job", "--name", "teacher-l", "--image", "img:1",
                                 "--nodes", "3", "--kind", "trainjob", "--", "train"])
    assert result.exit_code == 0, result.output
    body = yaml.safe_load(result.output)
    assert body["kind"] == "TrainJob" and body["spec"]["trainer"]["numNodes"] == 3
    result = runner.invoke(app, ["cluster", "job", "--name", "teacher-l", "--image", "img:1",
                                 "--kind", "mpijob", "--", "train"])
    assert result.exit_code == 2 and "--kind must be one of" in result.output
