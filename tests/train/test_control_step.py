"""The control training (a student trained alone for the report's distilled-vs-alone row)
keeps its metrics apart from its distilled twin, which has the same model name."""

from __future__ import annotations

from typing import Any

import pytest

from damo_core.steps import train


@pytest.fixture
def fit_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_fit(data: Any, out: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"model_name": "damoyolo_t", "AP": 0.1, "AP50": 0.2}

    monkeypatch.setattr(train, "fit", fake_fit)
    return calls


def test_control_appends_its_suffix_to_the_run_id(fit_calls, tmp_path):
    meta = train.run(tmp_path, tmp_path / "out", model="damoyolo_t", run_id="run-7",
                     control=True)
    assert fit_calls[0]["run_id"] == "run-7-control"
    assert meta == {"model_name": "damoyolo_t", "AP": 0.1, "AP50": 0.2, "control": True}


def test_control_without_a_run_id_uses_the_environment_one(fit_calls, tmp_path, monkeypatch):
    monkeypatch.setenv("DAMO_RUN_ID", "nightly")
    train.run(tmp_path, tmp_path / "out", model="damoyolo_t", control=True)
    monkeypatch.delenv("DAMO_RUN_ID")
    train.run(tmp_path, tmp_path / "out", model="damoyolo_t", control=True)
    assert [c["run_id"] for c in fit_calls] == ["nightly-control", "local-control"]


def test_a_plain_training_is_not_a_control(fit_calls, tmp_path):
    meta = train.run(tmp_path, tmp_path / "out", model="damoyolo_t", run_id="run-7")
    assert fit_calls[0]["run_id"] == "run-7" and "control" not in meta
