"""Budgets: whole-model deploy params/FLOPs priced without building, exactly."""

from __future__ import annotations

import dataclasses
import random

import pytest

from damo_core.models import build_model, load_model_config
from damo_core.models.backbones.structure import stages_to_config
from damo_core.models.config import config_from_dict
from damo_core.models.profile import model_info
from damo_core.nas.budgets import (
    BudgetError,
    Budgets,
    CostModel,
    check_reachable,
    parse_count,
    violations,
)
from damo_core.nas.space import SPACES, minimal_structure, mutate


def _info(cfg, stages):
    raw = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "source"}
    raw["backbone"] = {**cfg.backbone, "structure": stages_to_config(stages)}
    return model_info(build_model(config_from_dict(raw)))


@pytest.mark.parametrize(("model", "block"), [("damoyolo_t", "res"), ("damoyolo_ns", "mob")])
def test_costs_equal_the_built_deploy_model(model, block):
    """res exercises the exact quadratic neck/head model, mob (halved nano widths) the
    per-width-triple fallback; both must equal profile.model_info on the built model."""
    cfg = load_model_config(model)
    pricer = CostModel(cfg)
    rng, stages = random.Random(5), minimal_structure(SPACES[block])
    for _ in range(25):
        stages = mutate(stages, SPACES[block], rng)
    for candidate in (pricer.published_structure(), stages):
        costs, info = pricer.costs(candidate), _info(cfg, candidate)
        assert costs.params_m == pytest.approx(info.deploy_params_m, abs=1e-9)
        assert costs.gflops == pytest.approx(info.deploy_gflops, abs=1e-9)


@pytest.mark.parametrize(("text", "value"), [("18G", 18e9), ("8.5M", 8.5e6), ("1200", 1200.0),
                                             ("2.5k", 2500.0)])
def test_parse_count(text, value):
    assert parse_count(text, "--budget-flops") == value


def test_parse_count_names_the_option():
    with pytest.raises(ValueError, match="--budget-params = '8.5 MB'"):
        parse_count("8.5 MB", "--budget-params")


def test_unreachable_budget_names_budget_and_smallest_value():
    cfg = load_model_config("damoyolo_t")
    minimal = CostModel(cfg).costs(minimal_structure(SPACES["res"]))
    assert violations(minimal, Budgets(params_m=minimal.params_m)) == []
    with pytest.raises(BudgetError, match=r"--budget-params-m 1: .*smallest reachable is "
                                          rf"{minimal.params_m:.4g}M params"):
        check_reachable(minimal, Budgets(params_m=1.0), "res")
    with pytest.raises(BudgetError, match="--budget-layers 5: .*smallest reachable is 11 layers"):
        check_reachable(minimal, Budgets(layers=5), "res")
