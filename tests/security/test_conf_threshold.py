"""``--conf`` of ``damo predict`` and ``damo infer`` is a score threshold in [0, 1]: NaN, inf
and anything outside the range is one line naming the option, exit 2, before any checkpoint is
loaded or server contacted (issue 13). (``damo eval`` has no score-threshold option: it
evaluates with the model's own thresholds.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from damo_core.cli.app import app

BAD = [("nan", "nan"), ("inf", "inf"), ("-inf", "-inf"), ("1.5", "1.5"), ("-0.1", "-0.1")]


def command(name: str, tmp_path: Path) -> list[str]:
    # a checkpoint and a server that do not exist: the check has to come first
    if name == "predict":
        return ["predict", "--weights", str(tmp_path / "missing.pt"), str(tmp_path / "a.jpg")]
    return ["infer", "--model", "damoyolo_t", "--url", "127.0.0.1:1", str(tmp_path / "a.jpg")]


@pytest.mark.parametrize("name", ["predict", "infer"])
@pytest.mark.parametrize(("typed", "shown"), BAD)
def test_bad_conf_exits_2_with_one_line(tmp_path: Path, name: str, typed: str,
                                        shown: str) -> None:
    result = CliRunner().invoke(app, [*command(name, tmp_path), "--conf", typed])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: --conf must be a score threshold in [0, 1], got {shown}")


@pytest.mark.parametrize("typed", ["0", "0.3", "1"])
def test_in_range_conf_gets_past_the_check(tmp_path: Path, typed: str) -> None:
    result = CliRunner().invoke(app, [*command("predict", tmp_path), "--conf", typed])
    # it goes on to load the (missing) checkpoint
    assert "--conf" not in result.output and "missing.pt" in result.output, result.output
