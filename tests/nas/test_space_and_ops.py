"""Search space mutations stay valid, and the op list prices a backbone exactly as built."""

from __future__ import annotations

import random

import pytest

from damo_core.models import load_model_config
from damo_core.models.backbones.structure import check_chain, stages_from_config
from damo_core.models.profile import count_macs, count_params
from damo_core.nas.budgets import backbone_graph_kwargs
from damo_core.nas.latency_lut import build_fused_backbone
from damo_core.nas.ops import backbone_ops, count_layers, totals
from damo_core.nas.space import SPACES, minimal_structure, mutate


@pytest.mark.parametrize("block", sorted(SPACES))
def test_mutations_change_one_property_of_one_stage_and_stay_valid(block):
    space = SPACES[block]
    rng = random.Random(7)
    stages = minimal_structure(space)
    for _ in range(150):
        child = mutate(stages, space, rng)
        assert child != stages
        check_chain(child, "child")
        changed = [i for i, (a, b) in enumerate(zip(stages, child, strict=True))
                   if (a.out_channels, a.depth, a.btn, a.kernel) !=
                   (b.out_channels, b.depth, b.btn, b.kernel)]
        # one stage, plus the repairs: a CSP tie copies the width into the stride-1 stage and
        # bottlenecks follow a shrunk width
        assert 1 <= len(changed) <= 2, (stages, child)
        for i, s in enumerate(child):
            lo, hi = space.widths[i]
            assert lo <= s.out_channels <= hi and s.out_channels % 8 == 0
            assert s.depth <= space.max_depth[i]
            if i:
                assert s.btn <= s.out_channels and s.out_channels >= child[i - 1].out_channels
        stages = child


def test_mutation_is_reproducible_from_the_seed():
    space = SPACES["res"]
    runs = []
    for _ in range(2):
        rng, stages = random.Random(3), minimal_structure(space)
        for _ in range(50):
            stages = mutate(stages, space, rng)
        runs.append(stages)
    assert runs[0] == runs[1]


def _built_backbone(cfg, stages):
    kwargs = {k: v for k, v in cfg.backbone.items() if k not in ("type", "structure")}
    return build_fused_backbone(cfg.backbone["type"], stages, kwargs)


@pytest.mark.parametrize(("model", "block"), [("damoyolo_t", "res"), ("damoyolo_m", "csp"),
                                              ("damoyolo_ns", "mob")])
def test_op_totals_equal_the_built_deploy_backbone(model, block):
    cfg = load_model_config(model)
    rng, mutant = random.Random(11), minimal_structure(SPACES[block])
    for _ in range(40):  # a small random member of the space (cheap to build)
        mutant = mutate(mutant, SPACES[block], rng)
    for stages in (stages_from_config(cfg.backbone["structure"], model), mutant):
        backbone = _built_backbone(cfg, stages)
        ops = backbone_ops(cfg.backbone["type"], stages, cfg.image_size,
                           **backbone_graph_kwargs(cfg))
        assert totals(ops) == (count_params(backbone), count_macs(backbone, cfg.image_size))


def test_layer_count_follows_tinynas():
    cfg = load_model_config("damoyolo_t")  # the "L20" search: 1 + 2 * 9 blocks
    assert count_layers("tinynas_res", stages_from_config(cfg.backbone["structure"], "t")) == 19
