"""The control training (a student trained alone for the report's distilled-vs-alone row)
keeps its metrics apart from its distilled twin, which has the same model name."""

from __future__ import annotations

from typing import Any

import pytest

from damo_core.settings import ConfigError
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


@pytest.mark.parametrize(("settings", "preset", "distill", "size_settings", "clip"), [
    ({"epochs": 3}, None, {}, None, 30.0),  # the distillation default, the reference's
    ({"epochs": 3}, None, {"grad_clip": 12.5}, None, 12.5),
    ({"grad_clip": 5.0}, None, {"grad_clip": 12.5}, None, 5.0),  # the training's own wins
    ({}, None, {}, {"T": {"grad_clip": 7.0}}, 7.0),  # so does the size's
    ({}, None, {"grad_clip": 0.0}, None, 0.0),  # 0 in both: no clipping, as the twin
])
def test_control_clips_as_its_distilled_twin(fit_calls, tmp_path, settings, preset, distill,
                                             size_settings, clip):
    """The distilled twin clips at ``grad_clip`` or else the distillation's clip
    (DistillTrainer.clip_norm); the control must clip alike or it is not the twin minus
    its teacher."""
    train.run(tmp_path, tmp_path / "out", model="damoyolo_t", control=True, size="T",
              settings=settings, preset=preset, size_settings=size_settings,
              distill_settings=distill)
    call = fit_calls[0]
    assert call["settings"].get("grad_clip", 0.0) == clip
    assert {k: v for k, v in call["settings"].items() if k != "grad_clip"} == {
        k: v for k, v in settings.items() if k != "grad_clip"}


def test_without_distill_settings_the_settings_pass_as_given(fit_calls, tmp_path):
    train.run(tmp_path, tmp_path / "out", model="damoyolo_t", control=True, size="T",
              settings={"epochs": 3}, size_settings={"T": {"epochs": 4}})
    assert fit_calls[0]["settings"] == {"epochs": 3}
    assert fit_calls[0]["size_settings"] == {"T": {"epochs": 4}}


def test_a_bad_distill_clip_is_named(fit_calls, tmp_path):
    with pytest.raises(ConfigError, match="distill_settings.*grad_clip.*'high'"):
        train.run(tmp_path, tmp_path / "out", model="damoyolo_t", control=True,
                  distill_settings={"grad_clip": "high"})
    assert not fit_calls
