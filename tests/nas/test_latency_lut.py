"""Latency table: interpolation, persistence, coverage errors."""

from __future__ import annotations

import random

import pytest

from damo_core.nas.latency_lut import (
    LatencyTable,
    LatencyTableError,
    interpolate,
    measure_table,
)
from damo_core.nas.ops import ConvOp, EltOp, backbone_ops
from damo_core.nas.space import SPACES, random_structure

SMALL = 64  # the side conftest.small_table was measured at


def test_interpolation_is_exact_at_points_and_monotone_between():
    pts = [[1e6, 1.0], [4e6, 3.0], [16e6, 10.0]]
    assert interpolate(pts, 4e6) == pytest.approx(3.0)
    assert 1.0 < interpolate(pts, 2e6) < 3.0 < interpolate(pts, 8e6) < 10.0
    assert interpolate(pts, 32e6) == pytest.approx(20.0)  # constant cost per MAC beyond
    assert interpolate(pts, 1e3) == pytest.approx(1.0)  # call overhead below


def test_table_prices_every_op_of_the_space_and_round_trips(small_table, tmp_path):
    stages = random_structure(SPACES["res"], random.Random(2))
    ops = backbone_ops("tinynas_res", stages, SMALL)
    predicted = small_table.predict_ms(ops)
    assert predicted > 0
    again = LatencyTable.from_json(small_table.to_json(tmp_path / "lut.json"))
    assert again.predict_ms(ops) == pytest.approx(predicted)
    assert again.meta["clock"] == "thread_cpu" and again.threads == 1


def test_bigger_convs_cost_more(small_table):
    small = ConvOp(32, 32, 3, 1, SMALL // 8)
    big = ConvOp(256, 256, 3, 1, SMALL // 8)
    assert small_table.op_ms(big) > small_table.op_ms(small)


def test_missing_shape_class_says_how_to_fix(small_table):
    with pytest.raises(LatencyTableError, match="no measurements for 'conv_k7_s1_r999'"):
        small_table.op_ms(ConvOp(32, 32, 7, 1, 999))


def test_missing_or_bad_file(tmp_path):
    with pytest.raises(LatencyTableError, match="damo nas-lut --device cpu"):
        LatencyTable.from_json(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 99}')
    with pytest.raises(LatencyTableError, match="field 'version' should be 1, got 99"):
        LatencyTable.from_json(bad)


def test_only_cpu_tables():
    with pytest.raises(LatencyTableError, match="--device 'cuda'"):
        measure_table([EltOp("act", 100)], device="cuda", progress=False)
