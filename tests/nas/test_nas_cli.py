"""``damo nas`` sub-app, driven through typer's runner (the lead registers it in app.py)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from damo_core.cli.nas_cmds import nas_app
from damo_core.models.backbones.structure import read_structure_file


def test_search_writes_structure_log_summary_and_plot(tmp_path):
    out = tmp_path / "tinynas_t.txt"
    result = CliRunner().invoke(nas_app, [
        "search", "--block", "res", "--budget-flops", "18G", "--budget-params", "8.5M",
        "--budget-layers", "20", "--image-size", "640", "--out", str(out),
        "--lut", str(tmp_path / "none.json"), "--generations", "2", "--population", "6"])
    assert result.exit_code == 0, result.output
    assert "best score" in result.output
    summary = json.loads((tmp_path / "tinynas_t_search.json").read_text())
    assert summary["best_costs"]["gflops"] <= 18.0 and summary["best_costs"]["params_m"] <= 8.5
    assert len(read_structure_file(out)) == 6
    assert (tmp_path / "tinynas_t_population.png").is_file()
    assert (tmp_path / "tinynas_t_search_log.csv").is_file()


def test_impossible_budget_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(nas_app, [
        "search", "--budget-params", "0.1M", "--out", str(tmp_path / "x.txt"),
        "--lut", str(tmp_path / "none.json")])
    assert result.exit_code == 2
    assert "--budget-params 0.1: no 'res' structure fits; the smallest reachable is" in (
        result.output)
    assert not (tmp_path / "x.txt").exists()


def test_latency_budget_without_table_says_how_to_measure(tmp_path):
    result = CliRunner().invoke(nas_app, [
        "search", "--budget-latency-ms", "5", "--out", str(tmp_path / "x.txt"),
        "--lut", str(tmp_path / "none.json")])
    assert result.exit_code == 2 and "damo nas lut --device cpu" in result.output


def test_lut_rejects_other_devices(tmp_path):
    result = CliRunner().invoke(nas_app, ["lut", "--device", "cuda", "--out",
                                          str(tmp_path / "l.json")])
    assert result.exit_code == 2 and "only 'cpu'" in result.output


def test_lut_measures_and_calibrates_a_small_space(tmp_path):
    out = tmp_path / "lut.json"
    result = CliRunner().invoke(nas_app, ["lut", "--block", "mob", "--image-size", "64",
                                          "--runs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    assert table["meta"]["scale"] > 0 and len(table["meta"]["calibration_ratios"]) == 6
    assert any(key.startswith("dw_k5_s2") for key in table["points"])
