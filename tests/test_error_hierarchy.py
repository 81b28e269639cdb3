"""The line between "your input" and "our bug" (issue #18, "An error hierarchy").

The CLI prints a :class:`~damo_core.errors.DamoError` as one line with exit code 2 and anything
else as a traceback with exit code 1. That only works if the library raises its own types for
bad input: a plain ``ValueError`` would now surface as a bug. So (a) a scan of the source keeps
bare ``ValueError`` / ``FileNotFoundError`` / ``FileExistsError`` raises out, except a short,
justified list of internal invariants; and (b) the CLI really splits the two cases.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

import damo_core.cli.checkpoint_cmds as checkpoint_cmds
from damo_core.cli.app import app
from damo_core.cli.errors import BUG_HINT
from damo_core.errors import (
    DamoError,
    InputNotFoundError,
    OutputExistsError,
    UnavailableError,
    UserInputError,
)

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("damo_core", "pipelines")
BARE = {"ValueError", "FileNotFoundError", "FileExistsError"}

# "path::qualified function" -> why a plain built-in is right there: the raise can only fire
# when the project's own code is wrong, so it must surface as a bug, with its traceback.
ALLOWED: dict[str, str] = {
    "damo_core/losses/qfl.py::weight_reduce_loss":
        "reduction and avg_factor are literals in the loss code, never user input",
    "damo_core/data/augment/mosaic.py::mosaic_canvas":
        "the loader always hands mosaic exactly four samples",
    "damo_core/data/augment/box_level.py::apply_color_op":
        "the op is drawn by the code from COLOR_OPS itself",
    "damo_core/data/sampling.py::image_weights":
        "shares come from source_shares over the same sizes: positive share implies images",
    "damo_core/eval/postprocess.py::postprocess":
        "scores/boxes are the detector's own outputs; a shape mismatch is a model bug",
    "damo_core/eval/pr_curve.py::precision_recall_curve":
        "call order (evaluate/accumulate first) and the IoU are fixed by the evaluator",
    "damo_core/bench/latency.py::LatencyStats.from_times":
        "time_runner has already refused runs <= 0, so an empty list is a bug",
    "damo_core/bench/compare.py::Timing.ratios_to":
        "compare() times every contender in every round, so round counts always agree",
    "damo_core/metrics/dashboards.py::resolve_variables.sub":
        "the expressions are the project's own shipped dashboards",
}

class _BareRaises(ast.NodeVisitor):
    """Collects ``(line, qualified function)`` of each bare built-in raise in one module."""

    def __init__(self) -> None:
        self.scope: list[str] = []
        self.found: list[tuple[int, str]] = []

    def _scoped(self, node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _scoped

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name) and exc.id in BARE:
            self.found.append((node.lineno, ".".join(self.scope) or "<module>"))


def bare_raises() -> Iterator[tuple[str, int, str]]:
    """``(path, line, "path::qualname")`` for every bare built-in raise."""
    for top in SCANNED:
        for file in sorted((ROOT / top).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            visitor = _BareRaises()
            visitor.visit(ast.parse(file.read_text(encoding="utf-8"), filename=path))
            for line, qualname in visitor.found:
                yield path, line, f"{path}::{qualname}"


def test_no_bare_builtin_raises_outside_the_allow_list() -> None:
    offending = [f"{path}:{line} ({key})" for path, line, key in bare_raises()
                 if key not in ALLOWED]
    assert not offending, (
        "raise a damo_core.errors type (or the package's own error class) for bad input, "
        "or add a justified internal-invariant entry to ALLOWED:\n" + "\n".join(offending))


def test_allow_list_has_no_stale_entries() -> None:
    used = {key for _, _, key in bare_raises()}
    assert not set(ALLOWED) - used, f"remove stale ALLOWED entries: {set(ALLOWED) - used}"


@pytest.mark.parametrize(("cls", "builtin"), [
    (UserInputError, ValueError),
    (InputNotFoundError, FileNotFoundError),
    (InputNotFoundError, ValueError),
    (OutputExistsError, FileExistsError),
    (UnavailableError, RuntimeError),
])
def test_types_keep_their_builtin_ancestry(cls: type[DamoError], builtin: type[Exception]
                                           ) -> None:
    """Existing ``except ValueError`` / ``pytest.raises(FileNotFoundError)`` keep working."""
    assert issubclass(cls, DamoError) and issubclass(cls, builtin)


def _output(result: Result) -> str:
    """stdout and stderr together (typer's runner already mixes them into ``output``)."""
    return result.output


def _upgrade_raising(monkeypatch: pytest.MonkeyPatch, err: BaseException) -> Result:
    """``damo checkpoint upgrade`` with the library step it calls made to raise ``err``."""
    def boom(*_args: object, **_kwargs: object) -> Path:
        raise err

    monkeypatch.setattr(checkpoint_cmds, "upgrade_checkpoint", boom)
    return CliRunner().invoke(app, ["checkpoint", "upgrade", "x.pt", "--trusted"])


@pytest.mark.parametrize("err", [UserInputError("x.pt: field 'model' is missing"),
                                 InputNotFoundError("x.pt: field 'model' is missing"),
                                 UnavailableError("x.pt: field 'model' is missing")])
def test_damo_error_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, err: DamoError) -> None:
    result = _upgrade_raising(monkeypatch, err)
    out = _output(result)
    assert result.exit_code == 2, out
    assert out.strip() == "error: x.pt: field 'model' is missing"


def test_plain_value_error_is_a_bug_with_traceback_exit_1(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    result = _upgrade_raising(monkeypatch, ValueError("operands could not be broadcast"))
    out = _output(result)
    assert result.exit_code == 1, out
    assert "Traceback (most recent call last)" in out
    assert "ValueError: operands could not be broadcast" in out
    assert out.rstrip().endswith(BUG_HINT)


@pytest.mark.parametrize(("err", "code"), [
    (typer.Exit(3), 3),
    (typer.BadParameter("--out is not writable"), 2),  # typer's usage error, with usage text
    (KeyboardInterrupt(), 130),  # typer's own "Aborted!": 128 + SIGINT
])
def test_cli_control_flow_passes_through(monkeypatch: pytest.MonkeyPatch, err: BaseException,
                                         code: int) -> None:
    """Exits, aborts and usage errors are typer's, not bugs: no traceback, no report hint."""
    result = _upgrade_raising(monkeypatch, err)
    out = _output(result)
    assert result.exit_code == code, out
    assert BUG_HINT not in out and "Traceback" not in out


def test_bug_traceback_reaches_a_real_terminal(tmp_path: Path) -> None:
    """The installed entry point (typer's pretty exceptions off) really prints the traceback
    on stderr, then the hint, and exits 1; stdout stays clean for piped output."""
    script = textwrap.dedent("""
        import damo_core.cli.checkpoint_cmds as c
        from damo_core.cli.app import app

        def boom(*args, **kwargs):
            raise ValueError("operands could not be broadcast")

        c.upgrade_checkpoint = boom
        app(["checkpoint", "upgrade", "x.pt", "--trusted"], prog_name="damo")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ValueError: operands could not be broadcast" in proc.stderr
    assert proc.stderr.rstrip().endswith(BUG_HINT)
