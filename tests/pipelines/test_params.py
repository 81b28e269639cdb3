"""Pipeline parameters are checked on the command line, before anything is compiled, submitted
or run: each bad value is one line naming the parameter, and good values pass unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from damo_core.cli.app import app
from pipelines.params import PipelineParameterError, validate_params

BAD = {
    "unknown key": ({"epochs": 3}, "unknown pipeline parameter 'epochs'"),
    "typo with hint": ({"map_flor": 0.3}, "did you mean 'map_floor'?"),
    "wrong type int": ({"seed": "abc"}, "'seed' = 'abc' must be an integer"),
    "fraction for int": ({"synth_images": 1.5}, "'synth_images' = 1.5 must be an integer"),
    "wrong type struct": ({"teacher_settings": "epochs=3"}, "must be a mapping"),
    "wrong type bool": ({"export_dynamic_batch": "yes"}, "must be true or false"),
    "nan number": ({"map_floor": float("nan")}, "must be a finite number"),
    "unknown preset": ({"preset": "nope"}, "unknown training preset 'nope'"),
    "nested train typo": ({"teacher_settings": {"epoch": 3}},
                          "unknown training setting 'epoch'; did you mean 'epochs'?"),
    "nested augment typo": ({"teacher_settings": {"augment": {"mixup_prop": 0.5}}},
                            "teacher_settings: unknown training setting 'augment.mixup_prop'; "
                            "did you mean 'augment.mixup_prob'?"),
    "nested range": ({"student_settings": {"batch": 0}}, "'batch' = 0 is out of range"),
    "distill typo": ({"distill_settings": {"wieght": 1}}, "distill_settings"),
    "size of student": ({"student_size_settings": {"L": {"epochs": 9}}},
                        "student_size_settings: unknown size 'L'"),
    "size typo": ({"student_size_settings": {"M": {"epoch": 9}}},
                  "student_size_settings.M: unknown training setting 'epoch'"),
    "size not mapping": ({"student_size_settings": {"M": 9}},
                         "student_size_settings.M = 9: must be a mapping"),
    "export format": ({"export_format": "foo"}, "'export_format' = 'foo': not one of"),
    "triton variant": ({"triton_variant": "tf"}, "'triton_variant' = 'tf': not one of"),
    "export precision": ({"export_precision": "fp8"}, "'export_precision' = 'fp8': not one of"),
    "bf16 onnx": ({"export_precision": "bf16", "export_format": "onnx"},
                  "set export_format=openvino"),
    "model": ({"model_s": "damoyolo_x"}, "'model_s' = 'damoyolo_x': not a bundled model"),
    "model twice": ({"model_s": "damoyolo_t"},
                    "'model_t' = 'damoyolo_t': also the model of 'model_s'"),
    "map floor range": ({"map_floor": 1.5}, "map_floor must be a number in [0, 1]"),
    "latency budget": ({"latency_budget_ms": 0}, "latency_budget_ms must be a finite number"),
    "placement": ({"train_nodes": 0}, "train_nodes must be an integer >= 1"),
    "synth images": ({"synth_images": 0}, "'synth_images' = 0: must be at least 1"),
    "object scale": ({"synth_object_scale": "tiny"},
                     "'synth_object_scale' = 'tiny': must be one of ['coarse', 'coco']"),
    "budget": ({"budget_gflops": -1}, "'budget_gflops' = -1: must be >= 0"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_parameter_is_one_named_error(case: str) -> None:
    params, message = BAD[case]
    with pytest.raises(PipelineParameterError) as err:
        validate_params(params, "params.yaml")
    assert str(err.value).startswith("params.yaml: ") and message in str(err.value), err.value


def test_good_parameters_pass_and_json_integers_are_ints() -> None:
    params = validate_params({"seed": 3.0, "preset": "cpu_quick", "map_floor": 0.5,
                              "teacher_settings": {"epochs": 2, "augment": {"mosaic_prob": 0}}})
    assert params["seed"] == 3 and isinstance(params["seed"], int)
    assert params["teacher_settings"]["epochs"] == 2


@pytest.mark.parametrize("command", [["run", "--local"], ["submit", "--host", "http://h"]])
def test_cli_checks_before_running_or_connecting(command: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pipeline", *command, "export_format=foo"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "parameter 'export_format' = 'foo'" in result.output
    broken = tmp_path / "params.yaml"
    broken.write_text("a: [\n")
    result = CliRunner().invoke(app, ["pipeline", *command, "--params", str(broken)])
    assert result.exit_code == 2 and f"{broken}: not valid YAML" in result.output


def test_unreachable_host_is_one_line() -> None:
    from tests.servers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["pipeline", "submit", "--host", url, "seed=1"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"no Kubeflow Pipelines API answers at {url}" in result.output
