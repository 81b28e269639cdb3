"""The deployment gate never waves a non-finite number through (issue 19, item 3).

NaN compares false with everything, so ``value < floor`` and ``latency > budget`` both let a
NaN pass; a diverged training (NaN mAP) or a broken benchmark (NaN/inf latency) would be
deployed. Measured values that are not finite are a FAIL naming the field and the value;
thresholds the user gives that are not sensible numbers are a bad request (CLI exit 2, one
line naming the option; in the pipeline the gate step fails before anything deploys). Checked
at the rule's single home (``damo_core.steps.gate.judge``), through ``damo gate`` and through the
KFP gate component.
"""

# no ``from __future__ import annotations``: KFP reads the stand-in component's annotations
import json
from pathlib import Path

import pytest
from kfp import dsl, local
from kfp.dsl import Artifact, Output
from typer.testing import CliRunner

from components.gate.component import gate as gate_component
from damo_core.cli.app import app
from damo_core.steps.gate import check_thresholds as check_gate_thresholds
from damo_core.steps.gate import judge as gate

NAN, INF = float("nan"), float("inf")
NON_FINITE = [pytest.param(NAN, "nan", id="nan"), pytest.param(INF, "inf", id="+inf"),
              pytest.param(-INF, "-inf", id="-inf")]
# the spellings a user types, and what Python's json module reads from a file
CLI_NON_FINITE = [pytest.param("nan", "nan", id="nan"), pytest.param("inf", "inf", id="+inf"),
                  pytest.param("-inf", "-inf", id="-inf")]
JSON_NON_FINITE = [pytest.param("NaN", "nan", id="nan"),
                   pytest.param("Infinity", "inf", id="+inf"),
                   pytest.param("-Infinity", "-inf", id="-inf")]


# --- the library function -------------------------------------------------------------------


def test_finite_values_still_pass_and_fail_as_before() -> None:
    assert gate({"AP50": 0.4}, 5.0, map_floor=0.3, latency_budget_ms=10.0)[0] is True
    assert gate({"AP50": 0.4}, None, map_floor=0.3, latency_budget_ms=None)[0] is True
    assert gate({"AP50": 0.2}, 5.0, map_floor=0.3, latency_budget_ms=10.0)[0] is False
    assert gate({"AP50": 0.4}, 50.0, map_floor=0.3, latency_budget_ms=10.0)[0] is False
    # the edges of the ranges are allowed
    assert gate({"AP50": 0.0}, 0.0, map_floor=0.0, latency_budget_ms=1e-3)[0] is True
    assert gate({"AP50": 1.0}, None, map_floor=1.0, latency_budget_ms=None)[0] is True


@pytest.mark.parametrize(("value", "shown"), NON_FINITE)
@pytest.mark.parametrize("floor", [0.0, 0.3, 1.0])
def test_non_finite_metric_fails(value: float, shown: str, floor: float) -> None:
    ok, why = gate({"AP50": value}, 5.0, map_floor=floor, latency_budget_ms=10.0)
    assert ok is False
    assert why.startswith(f"AP50 is {shown}, not a finite number"), why


@pytest.mark.parametrize(("value", "shown"), NON_FINITE)
def test_non_finite_metric_fails_for_any_metric_name(value: float, shown: str) -> None:
    ok, why = gate({"AP": value, "AP50": 0.9}, None, map_floor=0.3, latency_budget_ms=None,
                   metric="AP")
    assert ok is False and f"AP is {shown}" in why


@pytest.mark.parametrize(("value", "shown"), NON_FINITE)
@pytest.mark.parametrize("budget", [10.0, None])
def test_non_finite_latency_fails(value: float, shown: str, budget: float | None) -> None:
    ok, why = gate({"AP50": 0.4}, value, map_floor=0.3, latency_budget_ms=budget)
    assert ok is False
    assert why == f"latency is {shown} ms, not a finite number"


@pytest.mark.parametrize(("metrics", "latency", "reason"), [
    ({"AP50": "0.9"}, 5.0, "AP50 is '0.9', not a number"),
    ({"AP50": True}, 5.0, "AP50 is True, not a number"),
    ({"AP50": 52.0}, 5.0, "AP50 52.0 is outside [0, 1]"),
    ({"AP50": 0.4}, -1.0, "latency -1.0 ms is negative"),
    ({"AP50": 0.4}, "5", "latency is '5', not a number"),
])
def test_other_impossible_measurements_fail(metrics: dict, latency: object, reason: str) -> None:
    ok, why = gate(metrics, latency, map_floor=0.3, latency_budget_ms=10.0)  # type: ignore
    assert ok is False and why == reason


@pytest.mark.parametrize("floor", [NAN, INF, -INF, -0.1, 1.5, "0.3", None])
def test_bad_map_floor_is_a_value_error(floor: object) -> None:
    with pytest.raises(ValueError, match=r"^map_floor must be a number in \[0, 1\], got ") as err:
        gate({"AP50": 0.4}, 5.0, map_floor=floor, latency_budget_ms=10.0)  # type: ignore
    assert str(err.value).endswith(repr(floor))


@pytest.mark.parametrize("budget", [NAN, INF, -INF, 0.0, -5.0, "10"])
def test_bad_latency_budget_is_a_value_error(budget: object) -> None:
    with pytest.raises(ValueError, match=r"^latency_budget_ms must be a finite number of ms > 0"
                       ) as err:
        gate({"AP50": 0.4}, 5.0, map_floor=0.3, latency_budget_ms=budget)  # type: ignore
    assert str(err.value).endswith(f"got {budget!r}")


def test_bad_threshold_is_reported_even_when_the_metric_is_missing_or_nan() -> None:
    for metrics in ({}, {"AP50": NAN}):
        with pytest.raises(ValueError, match="map_floor"):
            gate(metrics, NAN, map_floor=NAN, latency_budget_ms=10.0)


def test_threshold_names_follow_the_caller() -> None:
    with pytest.raises(ValueError, match=r"^--map-floor must be .* got nan$"):
        check_gate_thresholds(NAN, None, names=("--map-floor", "--latency-budget-ms"))
    with pytest.raises(ValueError, match=r"^--latency-budget-ms must be .* got inf$"):
        check_gate_thresholds(0.3, INF, names=("--map-floor", "--latency-budget-ms"))


# --- damo gate ------------------------------------------------------------------------------


def damo_gate(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["gate", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(("typed", "shown"), CLI_NON_FINITE)
def test_cli_non_finite_value_fails(typed: str, shown: str) -> None:
    code, out = damo_gate("--map-floor", "0.3", "--value", typed)
    assert code == 1, out
    assert out.startswith(f"FAIL: AP50 is {shown}, not a finite number"), out


@pytest.mark.parametrize(("typed", "shown"), CLI_NON_FINITE)
def test_cli_non_finite_latency_fails(typed: str, shown: str) -> None:
    code, out = damo_gate("--map-floor", "0.3", "--value", "0.4", "--latency-ms", typed,
                          "--latency-budget-ms", "10")
    assert code == 1, out
    assert out.strip() == f"FAIL: latency is {shown} ms, not a finite number"
    # and without a budget, where there is nothing to compare it with
    code, out = damo_gate("--map-floor", "0.3", "--value", "0.4", "--latency-ms", typed)
    assert code == 1 and f"latency is {shown} ms" in out, out


@pytest.mark.parametrize(("typed", "shown"),
                         [*CLI_NON_FINITE, ("-0.1", "-0.1"), ("1.5", "1.5")])
def test_cli_bad_map_floor_exits_2(typed: str, shown: str) -> None:
    code, out = damo_gate("--map-floor", typed, "--value", "0.4")
    assert code == 2, out
    assert out.strip() == f"error: --map-floor must be a number in [0, 1], got {shown}"


@pytest.mark.parametrize(("typed", "shown"), [*CLI_NON_FINITE, ("0", "0.0"), ("-3", "-3.0")])
def test_cli_bad_latency_budget_exits_2(typed: str, shown: str) -> None:
    code, out = damo_gate("--map-floor", "0.3", "--value", "0.4", "--latency-ms", "5",
                          "--latency-budget-ms", typed)
    assert code == 2, out
    assert out.strip() == (f"error: --latency-budget-ms must be a finite number of ms > 0, "
                           f"got {shown}")


def test_cli_bad_threshold_is_reported_before_the_files_are_read(tmp_path: Path) -> None:
    code, out = damo_gate("--map-floor", "nan", "--eval", tmp_path / "missing.json")
    assert code == 2 and "--map-floor" in out and "missing.json" not in out, out


def test_cli_without_a_budget_still_passes() -> None:
    code, out = damo_gate("--map-floor", "0.3", "--value", "0.4", "--latency-ms", "9")
    assert code == 0 and out.startswith("PASS: AP50 0.4000 >= 0.3000"), out


@pytest.mark.parametrize(("literal", "shown"), JSON_NON_FINITE)
@pytest.mark.parametrize("metric", ["AP50", "AP"])
def test_cli_non_finite_eval_json_field_fails(tmp_path: Path, literal: str, shown: str,
                                              metric: str) -> None:
    evaluation = tmp_path / "eval.json"
    # what json.dumps writes for a NaN metric, and what damo gate then reads back
    evaluation.write_text(f'{{"AP": {literal}, "AP50": {literal}, "AP75": 0.1}}')
    assert repr(json.loads(evaluation.read_text())[metric]) == shown
    code, out = damo_gate("--map-floor", "0.3", "--metric", metric, "--eval", evaluation)
    assert code == 1, out
    assert out.startswith(f"FAIL: {metric} is {shown}, not a finite number"), out


@pytest.mark.parametrize(("literal", "shown"), JSON_NON_FINITE)
def test_cli_non_finite_bench_json_field_fails(tmp_path: Path, literal: str,
                                               shown: str) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(
        '{"baseline": "pytorch", "rows": ['
        '{"format": "pytorch", "precision": "fp32", "p50_ms": 80.0}, '
        f'{{"format": "openvino", "precision": "fp32", "p50_ms": {literal}}}]}}')
    for budget in (["--latency-budget-ms", "20"], []):
        code, out = damo_gate("--map-floor", "0.3", "--value", "0.4", "--bench", bench,
                              "-f", "openvino", *budget)
        assert code == 1, out
        assert out.strip() == f"FAIL: latency is {shown} ms, not a finite number"


def test_cli_boolean_bench_latency_is_a_bad_request(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"rows": [{"format": "openvino", "precision": "fp32",
                                           "p50_ms": True}]}))
    code, out = damo_gate("--map-floor", "0.3", "--value", "0.4", "--bench", bench)
    assert code == 2 and "rows[].p50_ms must be a number, got True" in out, out


# --- the pipeline's gate component ----------------------------------------------------------


def run_component(**overrides: float) -> tuple[bool, dict]:
    """The component's own function body (what its container runs), outside KFP: NaN and inf
    cannot be written into a KFP run's parameters (protobuf's JSON refuses them), but an
    upstream step's output could still carry one."""
    verdict = Artifact(name="verdict", uri="", metadata={})
    args = {"model_name": "damoyolo_t", "ap50": 0.4, "latency_ms": 5.0, "map_floor": 0.3,
            "latency_budget_ms": 10.0, **overrides}
    ok = gate_component.python_func(verdict=verdict, **args)
    return ok, verdict.metadata


@pytest.mark.parametrize(("value", "shown"), NON_FINITE)
@pytest.mark.parametrize("field", ["ap50", "latency_ms"])
def test_component_fails_non_finite_measurements(value: float, shown: str, field: str) -> None:
    ok, meta = run_component(**{field: value})
    assert ok is False and meta["passed"] is False
    expected = (f"AP50 is {shown}, not a finite number" if field == "ap50" else
                f"latency is {shown} ms, not a finite number")
    assert meta["reason"].startswith(f"damoyolo_t: FAIL: {expected}"), meta


@pytest.mark.parametrize(("value", "shown"), NON_FINITE)
@pytest.mark.parametrize("field", ["map_floor", "latency_budget_ms"])
def test_component_raises_on_non_finite_thresholds(value: float, shown: str,
                                                   field: str) -> None:
    with pytest.raises(ValueError, match=rf"^gate damoyolo_t: bad request: {field} must be "
                       rf".*, got {shown}$"):
        run_component(**{field: value})


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def stand_in_deploy(out: Output[Artifact]):
    """Marks that the guarded branch ran."""
    with open(out.path, "w") as f:
        f.write("deployed")


@dsl.pipeline(name="gate-bad-request")
def gated(map_floor: float, latency_budget_ms: float):
    verdict = gate_component(model_name="damoyolo_t", ap50=0.4, latency_ms=5.0,
                             map_floor=map_floor, latency_budget_ms=latency_budget_ms)
    with dsl.If(verdict.outputs["Output"] == True):  # noqa: E712 - as in damo_pipeline
        stand_in_deploy()


@pytest.mark.parametrize(("floor", "budget", "message"), [
    (1.5, 10.0, "map_floor must be a number in [0, 1], got 1.5"),
    (-0.5, 10.0, "map_floor must be a number in [0, 1], got -0.5"),
    (0.3, 0.0, "latency_budget_ms must be a finite number of ms > 0, got 0.0"),
    (0.3, -10.0, "latency_budget_ms must be a finite number of ms > 0, got -10.0"),
])
def test_pipeline_step_fails_before_deploy(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                           floor: float, budget: float, message: str) -> None:
    """Run by KFP's local runner (as test_gate_condition): the AP50 and latency would pass,
    but the gate step fails on the bad request and the deploy branch never runs."""
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path),
               raise_on_error=False)
    gated(map_floor=floor, latency_budget_ms=budget)
    out, err = capfd.readouterr()
    assert f"GateRequestError: gate damoyolo_t: bad request: {message}" in out + err
    assert not any(tmp_path.rglob("stand-in-deploy/out"))
    assert not any(tmp_path.rglob("executor_output.json"))
