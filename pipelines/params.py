"""Checking pipeline parameters before a run starts, so a typo costs a second, not an hour.

Without this, KFP accepts any dict: an unknown key or a wrong type ends in a KFP traceback,
``preset=nope`` fails minutes later inside the teacher step, ``export_format=foo`` only after
every model has trained, and a nested training setting with a typo (``teacher_settings:
{augment: {mixup_prop: .5}}``) only when that step builds its augmentation. Every check here
calls the same function the step itself will call on that value, so what passes here is what
the step accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from damo_core.settings import ConfigError, not_one_of, read_yaml_layer, typed, unknown_key

# KFP's ParameterType enum values (pipeline_spec.proto) and the settings type each declares.
_NUMBER_DOUBLE, _NUMBER_INTEGER = 1, 2
_KINDS: dict[int, Any] = {_NUMBER_DOUBLE: float, _NUMBER_INTEGER: int, 3: str, 4: bool,
                          5: list[Any], 6: dict[str, Any]}

# A pipeline parameter the run would reject is a settings error like any other.
PipelineParameterError = ConfigError


def read_params_file(path: Path) -> dict[str, Any]:
    """A params YAML named on the command line: missing, broken or not a mapping is one line."""
    return read_yaml_layer(path, "params file")[1]


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
            raise ConfigError(unknown_key(source, "pipeline parameter", key, types)
                              + " (see `damo pipeline params`)")
        checked = typed(value, _KINDS.get(types[key], Any), source, "parameter", key)
        # Integers come back as ints (JSON transports send 4.0); other values as written.
        out[key] = checked if types[key] == _NUMBER_INTEGER else value
    _check_values({**(base or {}), **out}, source)
    return out


def _check_values(params: dict[str, Any], source: str) -> None:
    """Run each value through the code that will consume it in the run."""
    from damo_core.bench.precision import CHOICES as PRECISION_CHOICES
    from damo_core.cluster.placement import TrainPlacement
    from damo_core.export.formats import FORMATS
    from damo_core.models import list_models
    from damo_core.serve.model_config import VARIANTS
    from damo_core.steps._common import preset_path
    from damo_core.steps._training import settings_for_size
    from damo_core.steps.gate import check_thresholds as check_gate_thresholds
    from damo_core.train.config import load_train_config
    from damo_core.train.distill import DistillConfig
    from pipelines.remote import pipeline_parameters

    merged = {**pipeline_parameters(), **params}

    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: parameter '{key}' = {merged[key]!r}: {why}")

    try:
        preset = preset_path(merged["preset"] or None)
    except (FileNotFoundError, ValueError) as err:
        raise fail("preset", str(err)) from None
    # The settings loaders name the parameter as the source and the key path inside it.
    try:
        for key in ("teacher_settings", "student_settings"):
            load_train_config(preset, overrides=merged[key] or None, source=key)
        # a size without an entry trains with student_settings, checked just above
        for size in merged["student_size_settings"] or {}:
            load_train_config(preset, source=f"student_size_settings.{size}",
                              overrides=settings_for_size(merged["student_settings"],
                                                          merged["student_size_settings"], size))
        DistillConfig.from_dict(merged["distill_settings"] or None, source="distill_settings")
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"{source}: {err}") from None
    if merged["triton_variant"] not in VARIANTS:
        raise fail("triton_variant", not_one_of(merged["triton_variant"], VARIANTS))
    if merged["export_format"] not in FORMATS:
        raise fail("export_format", not_one_of(merged["export_format"], sorted(FORMATS)))
    if merged["export_precision"] not in PRECISION_CHOICES:
        raise fail("export_precision", not_one_of(merged["export_precision"],
                                                  list(PRECISION_CHOICES)))
    if merged["export_precision"] in ("bf16", "auto") and merged["export_format"] != "openvino":
        raise fail("export_precision", "bf16 and auto are OpenVINO CPU precisions; set "
                   "export_format=openvino")
    size_of: dict[str, str] = {}
    for key in ("model_l", "model_m", "model_s", "model_t"):
        name = merged[key]
        if name not in list_models() and Path(name).suffix not in (".yaml", ".yml"):
            raise fail(key, f"not a bundled model {list_models()} nor a model YAML")
        # Each size is evaluated, gated and deployed to Triton under its model's name: two
        # sizes of one model would overwrite each other's deployment and share a table row.
        if name in size_of:
            raise fail(key, f"also the model of '{size_of[name]}'; give every size its own "
                            "model (each is deployed to Triton under its model's name)")
        size_of[name] = key
    try:
        check_gate_thresholds(merged["map_floor"], merged["latency_budget_ms"])
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    try:
        TrainPlacement(int(merged["train_nodes"]), int(merged["gpus_per_node"]),
                       merged["workspace_pvc"], job_kind=merged["train_job_kind"])
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    from damo_core.data.sampling import SamplingSettings

    try:
        SamplingSettings.from_dict(merged["sampling"] or None, source="sampling")
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    if merged["mlflow_uri"] and not merged["mlflow_experiment"].strip():
        raise fail("mlflow_experiment", "must name an MLflow experiment when mlflow_uri is set")
    sources = merged["sources"]
    if not sources or not all(isinstance(s, str) and s for s in sources):
        raise fail("sources", "must be a non-empty list of sources (synthetic, a dataset "
                              "yaml, or NAME=URI)")
    for key in ("synth_classes", "synth_images", "synth_image_size", "bench_runs"):
        if merged[key] < 1:
            raise fail(key, "must be at least 1")
    from damo_core.data.synth import OBJECT_SCALES

    if merged["synth_object_scale"] not in OBJECT_SCALES:
        raise fail("synth_object_scale", f"must be one of {sorted(OBJECT_SCALES)}")
    for key in ("budget_params_m", "budget_gflops"):
        if merged[key] < 0:
            raise fail(key, "must be >= 0 (0: the paper's budget for the model)")
