"""Checking pipeline parameters before a run starts, so a typo costs a second, not an hour.

Without this, KFP accepts any dict: an unknown key or a wrong type ends in a KFP traceback,
``preset=nope`` fails minutes later inside the teacher step, ``export_format=foo`` only after
every model has trained, and a nested training setting with a typo (``teacher_settings:
{augment: {mixup_prop: .5}}``) only when that step builds its augmentation. Every check here
calls the same function the step itself will call on that value, so what passes here is what
the step accepts.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import yaml

from damo_core.train.config import one_line

# KFP's ParameterType enum values (pipeline_spec.proto) and what each accepts.
_NUMBER_DOUBLE, _NUMBER_INTEGER, _STRING, _BOOLEAN, _LIST, _STRUCT = 1, 2, 3, 4, 5, 6
_TYPE_NAMES = {_NUMBER_DOUBLE: "a number", _NUMBER_INTEGER: "an integer", _STRING: "a string",
               _BOOLEAN: "true or false", _LIST: "a list", _STRUCT: "a mapping"}


class PipelineParameterError(ValueError):
    """A pipeline parameter that the run would reject; the message names it and its value."""


def read_params_file(path: Path) -> dict[str, Any]:
    """A params YAML named on the command line: missing, broken or not a mapping is one line."""
    if not path.is_file():
        raise FileNotFoundError(f"params file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PipelineParameterError(f"{path}: not valid YAML ({one_line(err)})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise PipelineParameterError(f"{path}: expected a mapping of pipeline parameters, got "
                                     f"{type(loaded).__name__}")
    return loaded


def declared_types() -> dict[str, int]:
    """Parameter name → KFP parameter type, as the compiled pipeline declares them."""
    from pipelines.damo_pipeline import damo_pipeline

    spec = damo_pipeline.pipeline_spec.root.input_definitions.parameters
    return {name: int(p.parameter_type) for name, p in spec.items()}


def validate_params(params: dict[str, Any], source: str = "parameters",
                    base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check names, types and values of ``params`` (over ``base``, the values they override,
    such as the local run's; else the pipeline's defaults); returns them with integral floats
    that JSON transports produce (``4.0``) turned back into ints where an integer is declared."""
    types = declared_types()
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in types:
            close = difflib.get_close_matches(key, list(types), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PipelineParameterError(f"{source}: unknown pipeline parameter '{key}'{hint} "
                                         "(see `damo pipeline params`)")
        out[key] = _typed(key, value, types[key], source)
    _check_values({**(base or {}), **out}, source)
    return out


def _typed(key: str, value: Any, kind: int, source: str) -> Any:
    ok = {
        _NUMBER_DOUBLE: isinstance(value, int | float) and not isinstance(value, bool),
        _NUMBER_INTEGER: isinstance(value, int) and not isinstance(value, bool)
        or isinstance(value, float) and value.is_integer(),
        _STRING: isinstance(value, str),
        _BOOLEAN: isinstance(value, bool),
        _LIST: isinstance(value, list),
        _STRUCT: isinstance(value, dict),
    }.get(kind, True)
    if not ok:
        raise PipelineParameterError(f"{source}: parameter '{key}' = {value!r} must be "
                                     f"{_TYPE_NAMES.get(kind, 'of its declared type')}")
    if kind == _NUMBER_DOUBLE and not math.isfinite(value):
        raise PipelineParameterError(f"{source}: parameter '{key}' = {value!r} must be a "
                                     "finite number")
    return int(value) if kind == _NUMBER_INTEGER else value


def _check_values(params: dict[str, Any], source: str) -> None:
    """Run each value through the code that will consume it in the run."""
    from damo_core.cluster.placement import TrainPlacement
    from damo_core.data.augment import AugmentConfig
    from damo_core.export.formats import FORMATS
    from damo_core.models import list_models
    from damo_core.serve.model_config import VARIANTS
    from damo_core.steps import check_gate_thresholds, preset_path
    from damo_core.train.config import load_train_config
    from damo_core.train.distill import DistillConfig
    from pipelines.remote import pipeline_parameters

    merged = {**pipeline_parameters(), **params}

    def fail(key: str, why: str) -> PipelineParameterError:
        return PipelineParameterError(f"{source}: parameter '{key}' = {merged[key]!r}: {why}")

    try:
        preset = preset_path(merged["preset"] or None)
    except (FileNotFoundError, ValueError) as err:
        raise fail("preset", str(err)) from None
    for key in ("teacher_settings", "student_settings"):
        try:
            cfg = load_train_config(preset, overrides=merged[key] or None)
            AugmentConfig.from_dict(cfg.augment, source=key)
        except (ValueError, FileNotFoundError) as err:
            raise fail(key, str(err)) from None
    try:
        DistillConfig.from_dict(merged["distill_settings"] or None, source="distill_settings")
    except ValueError as err:
        raise fail("distill_settings", str(err)) from None
    if merged["triton_variant"] not in VARIANTS:
        raise fail("triton_variant", f"not one of {list(VARIANTS)}")
    if merged["export_format"] not in FORMATS:
        raise fail("export_format", f"not one of {sorted(FORMATS)}")
    for key in ("model_l", "model_m", "model_s", "model_t"):
        name = merged[key]
        if name not in list_models() and Path(name).suffix not in (".yaml", ".yml"):
            raise fail(key, f"not a bundled model {list_models()} nor a model YAML")
    try:
        check_gate_thresholds(merged["map_floor"], merged["latency_budget_ms"])
    except ValueError as err:
        raise PipelineParameterError(f"{source}: {err}") from None
    try:
        TrainPlacement(int(merged["train_nodes"]), int(merged["gpus_per_node"]),
                       merged["workspace_pvc"])
    except ValueError as err:
        raise PipelineParameterError(f"{source}: {err}") from None
    for key in ("synth_classes", "synth_images", "synth_image_size", "bench_runs"):
        if merged[key] < 1:
            raise fail(key, "must be at least 1")
    for key in ("budget_params_m", "budget_gflops"):
        if merged[key] < 0:
            raise fail(key, "must be >= 0 (0: the paper's budget for the model)")
