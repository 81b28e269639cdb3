"""The report step's distillation tables: teacher vs student per link, and the control (the
same student trained alone) beside its distilled twin."""

from __future__ import annotations

import json

import pytest

from damo_core.steps.report import run

SIZES = ("damoyolo_l", "damoyolo_m", "damoyolo_s", "damoyolo_t")


def evals() -> list[dict]:
    return [{"model_name": name, "AP": 0.4 - 0.05 * i, "AP50": 0.7 - 0.1 * i}
            for i, name in enumerate(SIZES)]


def benches() -> list[dict]:
    return [{"model_name": name, "p50_ms": 10.0 - 2 * i, "format": "openvino"}
            for i, name in enumerate(SIZES)]


def test_links_pair_each_teacher_with_the_next_model(tmp_path):
    meta = run(evals(), benches(), tmp_path / "c.png", tmp_path / "r.html")
    assert [(x["teacher"], x["student"]) for x in meta["links"]] == list(
        zip(SIZES, SIZES[1:], strict=False))
    assert meta["links"][0]["teacher_AP50"] == pytest.approx(0.7)
    assert meta["links"][0]["student_AP50"] == pytest.approx(0.6)
    assert meta["control"] is None
    page = (tmp_path / "r.html").read_text()
    assert "teacher vs student" in page and "trained alone" not in page


def test_control_is_set_beside_its_distilled_twin(tmp_path):
    alone = tmp_path / "alone.json"
    alone.write_text(json.dumps({"model_name": "damoyolo_t", "AP": 0.21, "AP50": 0.45}))
    meta = run(evals(), benches(), tmp_path / "c.png", tmp_path / "r.html", control=alone)
    versus = meta["control"]
    assert versus["model"] == "damoyolo_t"
    assert versus["distilled_AP50"] == pytest.approx(0.4)
    assert versus["alone_AP50"] == pytest.approx(0.45)
    assert versus["gain_AP50"] == pytest.approx(-0.05)  # a loss is reported as one
    assert versus["gain_AP"] == pytest.approx(0.25 - 0.21)
    page = (tmp_path / "r.html").read_text()
    assert "Distilled vs trained alone" in page and "0.4500" in page


@pytest.mark.parametrize(("control", "match"), [
    ({"model_name": "damoyolo_l", "AP": 0.1, "AP50": 0.2}, "none of the distilled students"),
    ({"model_name": "yolo_x", "AP": 0.1, "AP50": 0.2}, "'yolo_x' is none"),
    ({"model_name": "damoyolo_t", "AP": 0.1, "AP50": float("nan")}, "'AP50' must be a number"),
    ({"model_name": "damoyolo_t", "AP": 0.1}, "'AP50' must be a number, got None"),
])
def test_bad_control_is_named_and_nothing_written(tmp_path, control, match):
    with pytest.raises(ValueError, match=match):
        run(evals(), benches(), tmp_path / "c.png", tmp_path / "r.html", control=control)
    assert not (tmp_path / "c.png").exists() and not (tmp_path / "r.html").exists()
