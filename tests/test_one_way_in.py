"""One way in (issue 18): every DAG step is one function, ``damo_core.steps.<step>.run``; its
``damo`` command and its KFP component carry the step's name and are shells that call exactly
that function once, with no library logic of their own; docs/steps.md is the table of it."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from damo_core.cli.app import STEP_COMMANDS, app
from damo_core.steps import STEPS

ROOT = Path(__file__).resolve().parents[1]
NAMES = [s.name for s in STEPS]
# what a shell may import besides its step's module: display, errors, argument types
SHELL_HELPERS = {"damo_core.steps._training": {"Placement"}, "damo_core.errors": None,
                 "damo_core.serve.errors": {"DeployError"},
                 "damo_core.bench.report": {"rows_table"}, "components._image": None}


def _component(name: str) -> Any:
    module = importlib.import_module(f"components.{name}.component")
    return getattr(module, name)


def _imports_and_calls(fn: Any) -> tuple[dict[str, set[str]], list[str]]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    imports: dict[str, set[str]] = {}
    calls: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imports.setdefault(node.module or "", set()).update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            imports.update({a.name: set() for a in node.names})
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            calls.append(node.func.id)
    return imports, calls


def _check_shell(fn: Any, name: str, what: str) -> None:
    imports, calls = _imports_and_calls(fn)
    step_module = f"damo_core.steps.{name}"
    assert "run" in imports.get(step_module, set()), f"{what} does not import {step_module}.run"
    for module, names in imports.items():
        if module == step_module or not (module.startswith("damo_core")
                                         or module.startswith("components")):
            continue
        allowed = SHELL_HELPERS.get(module, set())
        assert allowed is None or names <= allowed, (
            f"{what} imports {sorted(names)} from {module}: library logic belongs in "
            f"{step_module}.run")
    assert calls.count("run") == 1, f"{what} calls run {calls.count('run')} times"


@pytest.mark.parametrize("name", NAMES)
def test_component_is_a_shell_over_its_step(name: str) -> None:
    component = _component(name)
    assert component.name == name
    _check_shell(component.python_func, name, f"components/{name}")


@pytest.mark.parametrize("name", NAMES)
def test_command_is_a_shell_over_its_step(name: str) -> None:
    registered = {c.name: c.callback for c in app.registered_commands}
    assert registered[name] is STEP_COMMANDS[name]
    _check_shell(inspect.unwrap(STEP_COMMANDS[name]), name, f"damo {name}")
    for alias in next(s.aliases for s in STEPS if s.name == name):
        assert registered[alias] is STEP_COMMANDS[name], f"damo {alias}"


def test_every_step_has_its_module_component_and_command() -> None:
    assert sorted(p.parent.name for p in (ROOT / "components").glob("*/component.py")) == \
        sorted(NAMES)
    for name in NAMES:
        assert callable(importlib.import_module(f"damo_core.steps.{name}").run)
    assert list(STEP_COMMANDS) == NAMES


def test_the_table_in_the_docs_is_the_code() -> None:
    text = (ROOT / "docs" / "steps.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if re.match(r"^\| [a-z]+ \| `", line)]
    parsed = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert [r[0] for r in parsed] == NAMES
    for step, (_, entry, command, component, summary) in zip(STEPS, parsed, strict=True):
        assert entry == f"`{step.entry}`" and component == f"`{step.component}`"
        assert re.findall(r"`damo ([a-z-]+)`", command) == [step.name, *step.aliases]
        assert summary == step.summary


# --- each shell, run: the step's entry is called exactly once with what the caller gave ----

ROW = {"model": "m", "image_size": 64, "batch": 1, "format": "onnx", "precision": "fp32",
       "mean_ms": 1.0, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "throughput": 1.0,
       "speedup_vs_baseline": None}
RESULT = {**ROW, "AP": 0.5, "AP50": 0.6, "AP75": 0.4, "APs": 0.1, "APm": 0.2, "APl": 0.3,
          "model_name": "m", "num_classes": 2, "epochs": 1, "passed": True, "reason": "PASS",
          "cpu": "cpu", "rows": [ROW], "host": {}, "path": "p", "report": "r.json",
          "sources": {"a": {"images": 1, "boxes": 2}}, "collisions": [],
          "best_f1_threshold": 0.5, "per_class_table": "| class |"}
COMMAND_ARGS = {
    "unify": ["--source", "synthetic", "--out", "d"],
    "nas": ["--out", "m.yaml"],
    "train": ["--model", "damoyolo_ns", "--data", "d", "epochs=1"],
    "distill": ["--model", "damoyolo_ns", "--teacher", "t", "--data", "d", "distill.tau=2"],
    "evaluate": ["--weights", "w", "--data", "d"],
    "export": ["--weights", "w"],
    "benchmark": ["--weights", "w"],
    "gate": ["--map-floor", "0.3", "--value", "0.5"],
    "deploy": ["e", "--repo", "r"],
    "report": ["--eval", "a.json", "--bench", "b.json"],
}


class _Metrics:
    def __init__(self, path: str) -> None:
        self.path, self.metadata, self.logged = path, {}, {}

    def log_metric(self, key: str, value: float) -> None:
        self.logged[key] = value


def _recording(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[tuple, dict]]:
    calls: list[tuple[tuple, dict]] = []

    def fake(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append((args, kwargs))
        return dict(RESULT)

    monkeypatch.setattr(importlib.import_module(f"damo_core.steps.{name}"), "run", fake)
    return calls


@pytest.mark.parametrize("name", NAMES)
def test_command_calls_its_entry_once(name: str, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    calls = _recording(monkeypatch, name)
    result = CliRunner().invoke(app, [name, *COMMAND_ARGS[name]])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1


def _artifact(tmp_path: Path, key: str, metadata: dict[str, Any] | None = None) -> Any:
    return SimpleNamespace(path=str(tmp_path / key), metadata=dict(metadata or {}),
                           log_metric=lambda k, v: None)


@pytest.mark.parametrize("name", NAMES)
def test_component_calls_its_entry_once(name: str, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    calls = _recording(monkeypatch, name)
    fn = _component(name).python_func
    kwargs: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        annotation = str(param.annotation)
        if "Metrics" in annotation:
            kwargs[param.name] = _Metrics(str(tmp_path / param.name))
        elif "Input" in annotation or "Output" in annotation:
            kwargs[param.name] = _artifact(tmp_path, param.name, {"model_name": "m"})
        elif param.default is not inspect.Parameter.empty:
            continue
        else:
            kwargs[param.name] = {"int": 1, "float": 0.5, "str": "x", "dict": {}, "list": ["x"],
                                  "bool": False}[param.annotation.__name__]
    fn(**kwargs)
    assert len(calls) == 1
