"""A tiny latency table: enough for the res space at 64×64, measured in a second or two."""

from __future__ import annotations

import pytest

from damo_core.models import load_model_config
from damo_core.nas.budgets import backbone_graph_kwargs
from damo_core.nas.latency_lut import measure_table, space_ops
from damo_core.nas.space import SPACES

SMALL = 64  # image side for fast latency tables and searches


@pytest.fixture(scope="session")
def small_table():
    cfg = load_model_config("damoyolo_t")
    ops = space_ops("tinynas_res", SPACES["res"], SMALL, backbone_graph_kwargs(cfg), samples=8)
    return measure_table(ops, runs=1, progress=False)
