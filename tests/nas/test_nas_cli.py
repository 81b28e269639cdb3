"""``damo nas`` (the NAS step's command) and ``damo nas-lut``, through typer's runner."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.models import load_model_config
from damo_core.models.backbones.structure import read_structure_file


def test_nas_writes_model_yaml_structure_log_summary_and_plot(tmp_path):
    out = tmp_path / "tinynas_t.yaml"
    result = CliRunner().invoke(app, [
        "nas", "--block", "res", "--budget-gflops", "18", "--budget-params-m", "8.5",
        "--budget-layers", "20", "--img-size", "640", "--out", str(out),
        "--lut", str(tmp_path / "none.json"), "--generations", "2", "--population", "6",
        "--no-warm-start"])
    assert result.exit_code == 0, result.output
    meta = json.loads(result.output[result.output.index("{"):])
    assert meta["gflops"] <= 18.0 and meta["params_m"] <= 8.5 and meta["layers"] <= 20
    summary = json.loads((tmp_path / "tinynas_t_backbone_search.json").read_text())
    assert summary["best_costs"]["gflops"] == meta["gflops"] or abs(
        summary["best_costs"]["gflops"] - meta["gflops"]) < 1e-3
    stages = read_structure_file(tmp_path / "tinynas_t_backbone.txt")
    assert len(stages) == 6
    assert (tmp_path / "tinynas_t_backbone_population.png").is_file()
    assert (tmp_path / "tinynas_t_backbone_search_log.csv").is_file()
    # the model YAML is what `damo train --model` takes: it loads, with the searched backbone
    cfg = load_model_config(out)
    assert cfg.name == "damoyolo_t" and len(cfg.backbone["structure"]) == len(stages)
    assert yaml.safe_load(out.read_text())["expect"] == {}


def test_impossible_budget_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(app, [
        "nas", "--budget-params-m", "0.1", "--out", str(tmp_path / "x.yaml"),
        "--lut", str(tmp_path / "none.json")])
    assert result.exit_code == 2
    assert "--budget-params-m 0.1: no 'res' structure fits; the smallest reachable is" in (
        result.output)
    assert not (tmp_path / "x.yaml").exists()


def test_latency_budget_without_table_says_how_to_measure(tmp_path):
    result = CliRunner().invoke(app, [
        "nas", "--budget-latency-ms", "5", "--out", str(tmp_path / "x.yaml"),
        "--lut", str(tmp_path / "none.json")])
    assert result.exit_code == 2 and "damo nas-lut --device cpu" in result.output


def test_lut_rejects_other_devices(tmp_path):
    result = CliRunner().invoke(app, ["nas-lut", "--device", "cuda", "--out",
                                      str(tmp_path / "l.json")])
    assert result.exit_code == 2 and "only 'cpu'" in result.output


def test_lut_measures_and_calibrates_a_small_space(tmp_path):
    out = tmp_path / "lut.json"
    result = CliRunner().invoke(app, ["nas-lut", "--block", "mob", "--img-size", "64",
                                      "--runs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    assert table["meta"]["scale"] > 0 and len(table["meta"]["calibration_ratios"]) == 6
    assert any(key.startswith("dw_k5_s2") for key in table["points"])
