"""``damo gate``: the pipeline's gate rule on files ``damo eval`` and ``damo bench`` wrote;
exit 0 deploy, 1 do not, 2 bad request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from damo_core.cli.app import app


def damo(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["gate", *map(str, args)])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"AP": 0.31, "AP50": 0.52}))
    bench = tmp_path / "bench.json"
    rows = [{"format": "pytorch", "precision": "fp32", "p50_ms": 80.0},
            {"format": "openvino", "precision": "fp32", "p50_ms": 30.0},
            {"format": "openvino", "precision": "int8", "p50_ms": 18.5}]
    bench.write_text(json.dumps({"baseline": "pytorch", "rows": rows}))
    return evaluation, bench


def test_pass_and_fail_by_metric_and_latency(files: tuple[Path, Path]) -> None:
    evaluation, bench = files
    code, out = damo("--map-floor", "0.5", "--eval", evaluation, "--bench", bench,
                     "-f", "openvino:int8", "--latency-budget-ms", "20")
    assert code == 0 and out.startswith("PASS: AP50 0.5200 >= 0.5000") and "18.50 ms" in out
    code, out = damo("--map-floor", "0.5", "--eval", evaluation, "--bench", bench,
                     "-f", "openvino", "--latency-budget-ms", "20")
    assert code == 1 and "latency 30.00 ms exceeds the budget 20.00 ms" in out
    code, out = damo("--map-floor", "0.35", "--metric", "AP", "--eval", evaluation)
    assert code == 1 and "AP 0.3100 is below the floor 0.3500" in out
    code, out = damo("--map-floor", "0.3", "--value", "0.4", "--latency-ms", "9")
    assert code == 0
    # metrics without the gated one (the wrong file): a FAIL verdict naming what it has
    code, out = damo("--map-floor", "0.3", "--eval", bench)
    assert code == 1 and "no AP50 in the evaluation metrics ['baseline', 'rows']" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--map-floor", "0.5"], "exactly one of --eval FILE or --value NUMBER"),
    (["--map-floor", "0.5", "--value", "1", "--bench", "{bench}"], "pick one row with --format"),
    (["--map-floor", "0.5", "--value", "1", "--bench", "{bench}", "-f", "tensorrt:fp16"],
     "rows: ['openvino:fp32', 'openvino:int8', 'pytorch:fp32']"),
    (["--map-floor", "0.5", "--eval", "{missing}"], "evaluation metrics file"),
])
def test_bad_requests_exit_2(files: tuple[Path, Path], tmp_path: Path, args: list[str],
                             message: str) -> None:
    evaluation, bench = files
    filled = [a.format(bench=bench, missing=tmp_path / "nope.json") for a in args]
    code, out = damo(*filled)
    assert code == 2 and message in out, out
