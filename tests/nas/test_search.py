"""Evolutionary search: budgets respected, seed-deterministic, clear errors, usable outputs."""

from __future__ import annotations

import pytest
import yaml

from damo_core.models import build_model, load_model_config
from damo_core.models.backbones.structure import read_structure_file, stages_from_config
from damo_core.nas.budgets import BudgetError, Budgets, CostModel, violations
from damo_core.nas.latency_lut import LatencyTableError
from damo_core.nas.report import output_paths, write_outputs
from damo_core.nas.search import (
    SearchConfig,
    model_yaml_with_backbone,
    run_search,
)
from damo_core.steps import nas as nas_step

SMALL = 64  # the side conftest.small_table was measured at

TINY = SearchConfig(population=8, generations=4, children=8, seed=3)


@pytest.fixture(scope="module")
def budgets(small_table):
    # Half of the published T's cost: the search must work to stay inside.
    cfg = load_model_config("damoyolo_t")
    published = CostModel(cfg, SMALL, small_table).costs(
        stages_from_config(cfg.backbone["structure"], "t"))
    return Budgets(params_m=published.params_m * 0.8, gflops=published.gflops * 0.8,
                   layers=17, latency_ms=published.latency_ms)


@pytest.fixture(scope="module")
def result(budgets, small_table):
    return run_search("damoyolo_t", budgets, TINY, image_size=SMALL, latency=small_table,
                      progress=False)


def test_every_reported_candidate_respects_every_budget(result, budgets):
    assert len(result.log) == TINY.generations
    assert result.evaluated > len(result.population) > 1
    for candidate in result.population:
        assert violations(candidate.costs, budgets) == []
    for row in result.log:
        assert row["params_m"] <= budgets.params_m and row["layers"] <= budgets.layers
    scores = [row["score"] for row in result.log]
    assert scores == sorted(scores) and scores[-1] > scores[0]  # elitist: never gets worse


def test_same_seed_same_result_other_seed_other_path(result, budgets, small_table):
    again = run_search("damoyolo_t", budgets, TINY, image_size=SMALL, latency=small_table,
                       progress=False)
    assert again.best.stages == result.best.stages and again.log == result.log
    other = run_search("damoyolo_t", budgets, SearchConfig(population=8, generations=4,
                                                           children=8, seed=4),
                       image_size=SMALL, latency=small_table, progress=False)
    assert other.log != result.log


def test_outputs_load_in_the_model_builder(result, tmp_path):
    paths = write_outputs(result, tmp_path / "tinynas_t.txt")
    assert set(paths) == {"structure", "log", "summary", "plot"}
    assert read_structure_file(paths["structure"]) == result.best.stages
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    rows = paths["log"].read_text().splitlines()
    assert rows[0].startswith("generation,score") and len(rows) == TINY.generations + 1
    cfg_yaml = model_yaml_with_backbone("damoyolo_t", paths["structure"], tmp_path / "m.yaml")
    model = build_model(cfg_yaml)
    cfg = load_model_config(cfg_yaml)
    assert stages_from_config(cfg.backbone["structure"], "m") == result.best.stages
    assert model.backbone.out_channels[-1] == result.best.stages[-1].out_channels
    assert output_paths(tmp_path / "x.txt")["summary"].name == "x_search.json"


def test_unreachable_budget_is_a_clear_error(small_table):
    with pytest.raises(BudgetError, match=r"--budget-latency-ms 0.001: .*smallest reachable"):
        run_search("damoyolo_t", Budgets(latency_ms=0.001), TINY, image_size=SMALL,
                   latency=small_table, progress=False)


def test_latency_budget_needs_a_table():
    with pytest.raises(LatencyTableError, match="damo nas-lut"):
        run_search("damoyolo_t", Budgets(latency_ms=5.0), TINY, progress=False)


def test_block_must_match_the_model():
    with pytest.raises(ValueError, match="--block csp: model damoyolo_t builds a tinynas_res"):
        run_search("damoyolo_t", Budgets(), TINY, block="csp", progress=False)


def test_pipeline_entry_writes_a_buildable_model_yaml(tmp_path):
    out = tmp_path / "model.yaml"
    meta = nas_step.run("damoyolo_t", out, budget_params_m=8.5, budget_gflops=18.1,
                        generations=3, population=6, seed=0)
    # no layer budget given: the published T's 19 TinyNAS layers bound the depth
    assert meta["params_m"] <= 8.5 and meta["gflops"] <= 18.1 and meta["layers"] <= 19
    # the pipeline's short search starts from the published structure: it may only improve
    assert meta["nas_score"] >= meta["published_score"]
    raw = yaml.safe_load(out.read_text())
    assert raw["name"] == "damoyolo_t" and "MAE-NAS res" in raw["description"]
    assert build_model(out).config.backbone["structure"] == raw["backbone"]["structure"]


def test_forward_score_variant_drives_a_search(budgets, small_table):
    config = SearchConfig(population=4, generations=1, children=4, seed=1, score="forward")
    result = run_search("damoyolo_t", budgets, config, image_size=SMALL, latency=small_table,
                        progress=False)
    analytic = run_search("damoyolo_t", budgets, SearchConfig(population=4, generations=1,
                                                              children=4, seed=1),
                          image_size=SMALL, latency=small_table, progress=False)
    assert result.best.score == pytest.approx(analytic.best.score, rel=0.03)
    assert result.best.score != analytic.best.score
