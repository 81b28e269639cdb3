"""Latency table: interpolation, persistence, coverage errors, measurement precision."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch
from typer.testing import CliRunner

from damo_core.cli import app
from damo_core.cli.nas_cmds import DEFAULT_LUT
from damo_core.errors import UserInputError
from damo_core.nas.budgets import Budgets
from damo_core.nas.latency_lut import (
    LatencyTable,
    LatencyTableError,
    _conv_fn,
    _elt_fn,
    conv_key,
    default_lut_path,
    elt_key,
    interpolate,
    lut_precision,
    measure_modules_ms,
    measure_table,
)
from damo_core.nas.ops import ConvOp, EltOp, backbone_ops
from damo_core.nas.search import SearchConfig, run_search
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


NO_BF16 = "fpu sse2 avx avx2 fma"
AMX = f"{NO_BF16} avx512f amx_tile amx_bf16 amx_int8"
NATIVE_ONLY = "needs a CPU with AMX or AVX-512-BF16"  # require_supported's refusal


def test_a_table_records_its_precision_and_serves_only_that_one(small_table, tmp_path):
    assert small_table.precision == "fp32"
    path = small_table.to_json(tmp_path / "lut.json")
    assert json.loads(path.read_text())["precision"] == "fp32"
    assert LatencyTable.from_json(path).precision == "fp32"
    with pytest.raises(LatencyTableError, match="measured at fp32, but bf16 latencies are "
                       r"wanted; measure one with `damo nas-lut --precision bf16`"):
        LatencyTable.from_json(path, precision="bf16")
    bf16 = dataclasses.replace(small_table, precision="bf16")
    other = bf16.to_json(tmp_path / "lut_bf16.json")
    assert LatencyTable.from_json(other, precision="bf16").precision == "bf16"
    with pytest.raises(LatencyTableError, match="lut_bf16.json.*measured at bf16, but fp32"):
        LatencyTable.from_json(other)  # what `damo nas` loads: an fp32 table


def test_a_search_refuses_a_table_of_another_precision(small_table):
    bf16 = dataclasses.replace(small_table, precision="bf16")
    budgets = Budgets(params_m=None, gflops=None, layers=None, latency_ms=None)
    config = SearchConfig(population=2, generations=1, children=2, seed=0)
    with pytest.raises(LatencyTableError, match="measured at bf16, but fp32"):
        run_search("damoyolo_t", budgets, config, image_size=SMALL, latency=bf16,
                   progress=False)
    with pytest.raises(LatencyTableError, match="measured at fp32, but bf16"):
        run_search("damoyolo_t", budgets, config, image_size=SMALL, latency=small_table,
                   precision="bf16", progress=False)


def test_tables_written_before_the_field_are_fp32(small_table, tmp_path):
    path = small_table.to_json(tmp_path / "lut.json")
    raw = json.loads(path.read_text())
    del raw["precision"]
    path.write_text(json.dumps(raw))
    assert LatencyTable.from_json(path).precision == "fp32"


def test_bf16_is_refused_without_native_bf16(cpu_flags, tmp_path):
    cpu_flags(NO_BF16)
    with pytest.raises(UserInputError, match=NATIVE_ONLY):
        measure_table([EltOp("act", 100)], precision="bf16", progress=False)
    assert lut_precision("auto") == "fp32"
    out = tmp_path / "lut.json"
    result = CliRunner().invoke(app, ["nas-lut", "--precision", "bf16", "--out", str(out)])
    assert result.exit_code == 2 and NATIVE_ONLY in result.output
    assert not out.exists()
    with pytest.raises(LatencyTableError, match="'int8'.*INT8 is a property of a quantised"):
        lut_precision("int8")
    with pytest.raises(LatencyTableError, match="'bogus': latency tables are measured at one "
                       r"of \['fp32', 'bf16', 'auto'\]"):
        lut_precision("bogus")


def test_a_bf16_table_times_bf16_tensors(cpu_flags):
    """Where BF16 is native the table times bf16 weights and inputs (no fp32 op under
    autocast). The flags are faked so that this runs on any CPU: it checks dtypes and the
    record, not speed."""
    cpu_flags(AMX)
    assert lut_precision("auto") == "bf16"
    conv = ConvOp(8, 8, 3, 1, SMALL // 8)
    assert _conv_fn(conv, torch.bfloat16)().dtype == torch.bfloat16
    assert _elt_fn("add", 1, 2**12, torch.bfloat16)().dtype == torch.bfloat16
    act = EltOp("act", 2**12)
    table = measure_table([conv, act], precision="bf16", runs=1, progress=False)
    assert table.precision == "bf16" and set(table.points) == {conv_key(conv), elt_key(act)}
    assert table.meta["cpu_model"] == "Fake CPU" and "amx_bf16" in table.meta["cpu_isa"]
    module = torch.nn.Conv2d(3, 8, 3)
    assert measure_modules_ms([module], SMALL, rounds=1, dtype=torch.bfloat16)[0] > 0
    assert module.weight.dtype == torch.bfloat16


def test_default_paths_keep_precisions_apart():
    assert default_lut_path("fp32") == DEFAULT_LUT  # what `damo nas --lut` reads by default
    assert default_lut_path("bf16") != DEFAULT_LUT
