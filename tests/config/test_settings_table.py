"""Every settings object goes through one loader, so a bad key or value is refused the same way
at any depth and from any source: the message names the source (file, "overrides", pipeline
parameter), the dotted key path and the closest valid key, before any work starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from damo_core.models import build_model
from damo_core.models.config import ConfigError as ModelConfigError
from damo_core.models.config import load_model_config, resolve_config_path
from damo_core.nas.search import SearchConfig
from damo_core.settings import ConfigError, parse_overrides
from damo_core.train.config import load_train_config
from damo_core.train.distill import DistillConfig
from pipelines.params import validate_params

Loader = Callable[[Any, Path], object]


def _yaml_file(tmp: Path, raw: Any, name: str = "settings.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


def _train_file(text: str, tmp: Path) -> object:
    return load_train_config(_yaml_file(tmp, text))


def _model_variant(edit: Callable[[dict], object], tmp: Path) -> object:
    """A bundled model's YAML with one edit, built: load and the registry's kwargs checks."""
    raw = yaml.safe_load(resolve_config_path("damoyolo_ns").read_text())
    edit(raw)
    return build_model(_yaml_file(tmp, raw))


LOADERS: dict[str, Loader] = {
    "overrides": lambda d, _: load_train_config(overrides=d),
    "pairs": lambda pairs, _: load_train_config(overrides=parse_overrides(pairs)),
    "file": _train_file,
    "distill": lambda d, _: DistillConfig.from_dict(d, "overrides"),
    "model": _model_variant,
    "search": lambda d, _: SearchConfig.from_dict(d, "search"),
    "pipeline": lambda params, _: validate_params(params, "params.yaml"),
    "pipeline_pairs": lambda pairs, _: validate_params(parse_overrides(pairs), "parameters"),
}

# (id, loader, input, fragments the one-line message must all contain; "{file}" is the YAML)
BAD: list[tuple[str, str, Any, tuple[str, ...]]] = [
    # --- training settings, top level and augment.*, from each source ---------------------
    ("top typo dict", "overrides", {"epoch": 3},
     ("overrides: unknown training setting 'epoch'", "did you mean 'epochs'?")),
    ("top typo pair", "pairs", ["lr_per_imag=0.01"],
     ("overrides: unknown training setting 'lr_per_imag'", "did you mean 'lr_per_image'?")),
    ("top typo file", "file", "warmup_epoch: 3\n",
     ("{file}: unknown training setting 'warmup_epoch'", "did you mean 'warmup_epochs'?")),
    ("augment typo dict", "overrides", {"augment": {"mixup_prop": 0.5}},
     ("overrides: unknown training setting 'augment.mixup_prop'",
      "did you mean 'augment.mixup_prob'?")),
    ("augment typo pair", "pairs", ["augment.mixup_prop=0.5"],
     ("overrides: unknown training setting 'augment.mixup_prop'",
      "did you mean 'augment.mixup_prob'?")),
    ("augment typo file", "file", "augment:\n  flip_prop: 0.5\n",
     ("{file}: unknown training setting 'augment.flip_prop'",
      "did you mean 'augment.flip_prob'?")),
    ("section typo", "pairs", ["augmnt.flip_prob=0.5"],
     ("unknown training setting 'augmnt'", "did you mean 'augment'?")),
    ("int type", "pairs", ["epochs=abc"],
     ("overrides: training setting 'epochs' = 'abc' must be an integer",)),
    ("float type nested", "pairs", ["augment.flip_prob=[1]"],
     ("overrides: training setting 'augment.flip_prob' = [1] must be a finite number",)),
    ("tuple length", "pairs", ["augment.mosaic_scale=[0.5]"],
     ("'augment.mosaic_scale' = [0.5] must be a list of 2 finite numbers",)),
    ("bool type file", "file", "ema: sometimes\n",
     ("{file}: training setting 'ema' = 'sometimes' must be true or false",)),
    ("nested not a mapping", "pairs", ["augment=3"],
     ("training setting 'augment' = 3 must be a mapping",)),
    ("enum", "pairs", ["optimizer=adam"],
     ("'optimizer' = 'adam' is not one of ['sgd', 'adamw']", "did you mean 'adamw'?")),
    ("nested range", "overrides", {"augment": {"flip_prob": 1.5}},
     ("overrides: training setting 'augment.flip_prob' = 1.5 must be in [0, 1]",)),
    # --- distill.* ----------------------------------------------------------------------
    ("distill typo", "distill", {"wieght_start": 1.0},
     ("overrides: unknown distill setting 'wieght_start'", "did you mean 'weight_start'?")),
    ("distill type", "distill", {"levels": [0, "a"]},
     ("distill setting 'levels' = [0, 'a'] must be a list of integers",)),
    # --- model YAML: top level, backbone/neck/head ----------------------------------------
    ("model top typo", "model", lambda r: r.update(num_clases=r.pop("num_classes")),
     ("{file}: unknown field 'num_clases'", "did you mean 'num_classes'?")),
    ("model backbone typo", "model", lambda r: r["backbone"].update(with_sp=True),
     ("{file}: unknown field 'backbone.with_sp'", "did you mean 'backbone.with_spp'?")),
    ("model neck typo", "model", lambda r: r["neck"].update(hiden_ratio=0.5),
     ("{file}: unknown field 'neck.hiden_ratio'", "did you mean 'neck.hidden_ratio'?")),
    ("model head typo", "model", lambda r: r["head"].update(reg_mx=16),
     ("{file}: unknown field 'head.reg_mx'", "did you mean 'head.reg_max'?")),
    ("model head type", "model", lambda r: r["head"].update(reg_max="16"),
     ("{file}: field 'head.reg_max' = '16' must be an integer",)),
    ("model top type", "model", lambda r: r.update(image_size="640"),
     ("{file}: field 'image_size' = '640' must be an integer",)),
    # --- NAS search ---------------------------------------------------------------------
    ("search typo", "search", {"populaton": 8},
     ("search: unknown search setting 'populaton'", "did you mean 'population'?")),
    ("search enum", "search", {"score": "analytc"},
     ("search setting 'score' = 'analytc' is not one of", "did you mean 'analytic'?")),
    # --- pipeline parameters --------------------------------------------------------------
    ("pipeline teacher augment", "pipeline", {"teacher_settings": {"augment": {"mixup_prop": .5}}},
     ("params.yaml: teacher_settings: unknown training setting 'augment.mixup_prop'",
      "did you mean 'augment.mixup_prob'?")),
    ("pipeline teacher augment pair", "pipeline_pairs",
     ["teacher_settings={augment: {mixup_prop: .5}}"],
     ("parameters: teacher_settings: unknown training setting 'augment.mixup_prop'",
      "did you mean 'augment.mixup_prob'?")),
    ("pipeline student typo", "pipeline", {"student_settings": {"no_aug_epoch": 2}},
     ("params.yaml: student_settings: unknown training setting 'no_aug_epoch'",
      "did you mean 'no_aug_epochs'?")),
    ("pipeline student type", "pipeline", {"student_settings": {"augment": {"keep_ratio": 2}}},
     ("student_settings: training setting 'augment.keep_ratio' = 2 must be true or false",)),
    ("pipeline distill typo", "pipeline", {"distill_settings": {"tua": 2}},
     ("params.yaml: distill_settings: unknown distill setting 'tua'", "did you mean 'tau'?")),
    ("pipeline unknown parameter", "pipeline", {"teacher_setting": {}},
     ("params.yaml: unknown pipeline parameter 'teacher_setting'",
      "did you mean 'teacher_settings'?")),
    ("pipeline export enum", "pipeline", {"export_format": "onxx"},
     ("parameter 'export_format' = 'onxx': not one of", "did you mean 'onnx'?")),
    ("pipeline preset", "pipeline", {"preset": "cpu_quik"},
     ("parameter 'preset' = 'cpu_quik'", "cpu_quick")),
]


@pytest.mark.parametrize(("loader", "value", "fragments"), [row[1:] for row in BAD],
                         ids=[row[0] for row in BAD])
def test_bad_setting_is_named_with_source_path_and_closest_key(
        loader: str, value: Any, fragments: tuple[str, ...], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        LOADERS[loader](value, tmp_path)
    message = str(err.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment.replace("{file}", str(tmp_path / "settings.yaml")) in message, message


def test_one_error_class() -> None:
    from damo_core.data.augment import AugmentConfigError
    from damo_core.errors import UserInputError
    from pipelines.params import PipelineParameterError

    assert ModelConfigError is ConfigError is AugmentConfigError is PipelineParameterError
    assert issubclass(ConfigError, UserInputError) and issubclass(ConfigError, ValueError)


def test_layers_merge_key_by_key_and_errors_name_the_layer(tmp_path: Path) -> None:
    preset = _yaml_file(tmp_path, {"epochs": 7, "augment": {"flip_prob": 0.25}})
    cfg = load_train_config(preset, parse_overrides(["augment.mixup_prob=0.5", "batch=8.0"]))
    assert (cfg.epochs, cfg.batch, cfg.augment.flip_prob, cfg.augment.mixup_prob) == (
        7, 8, 0.25, 0.5)
    assert isinstance(cfg.batch, int) and cfg.augment.mosaic_prob == 1.0  # defaults kept
    bad = _yaml_file(tmp_path, {"augment": {"flip_prob": 2.0}}, "bad.yaml")
    with pytest.raises(ConfigError, match=rf"^{bad}: training setting 'augment.flip_prob' = 2.0"):
        load_train_config(bad, {"epochs": 3})


def test_valid_settings_load_everywhere() -> None:
    assert DistillConfig.from_dict({"levels": [1, 2], "tau": 2}).levels == (1, 2)
    assert SearchConfig.from_dict({"population": 8, "score": "forward"}).score == "forward"
    assert load_model_config("damoyolo_t").backbone["type"] == "tinynas_res"
    cfg = load_train_config(overrides={"optimizer": "adamw", "augment": {"keep_ratio": True}})
    assert cfg.optimizer == "adamw" and cfg.augment.keep_ratio is True
    # KFP sends struct numbers as floats: 114.0 for an int setting is 114.
    params = validate_params({"teacher_settings": {"augment": {"pad_value": 114.0}},
                              "distill_settings": {"tau": 2}, "export_format": "onnx"})
    assert params["teacher_settings"]["augment"]["pad_value"] == 114.0


@pytest.mark.parametrize(("args", "fragment"), [
    (["augment.mixup_prop=0.5"], "unknown training setting 'augment.mixup_prop'; did you mean "
                                 "'augment.mixup_prob'?"),
    (["epochs=abc"], "training setting 'epochs' = 'abc' must be an integer"),
    (["optimizer=adam"], "did you mean 'adamw'?"),
])
def test_cli_train_refuses_before_any_work(args: list[str], fragment: str, tmp_path: Path) -> None:
    from damo_core.cli import app
    from damo_core.data.synth import generate

    data = generate(tmp_path / "synth", num_classes=2, num_images=4, image_size=64, seed=0)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--model", "damoyolo_ns", "--data", str(data),
                                      "--out", str(out), *args])
    assert result.exit_code == 2 and fragment in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()


def test_cli_pipeline_run_refuses_a_nested_typo_before_running(tmp_path: Path) -> None:
    from damo_core.cli import app

    root = tmp_path / "pipeline"
    result = CliRunner().invoke(app, ["pipeline", "run", "--local", "--root", str(root),
                                      "teacher_settings={augment: {mixup_prop: .5}}"])
    assert result.exit_code == 2, result.output
    assert ("teacher_settings: unknown training setting 'augment.mixup_prop'; did you mean "
            "'augment.mixup_prob'?") in result.output
    assert not root.exists()
