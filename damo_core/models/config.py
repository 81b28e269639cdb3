"""Model configs: one YAML file per model in ``damo_core/configs/``, validated on load.

Every error names the file, the field and the offending value, and suggests the closest valid key,
because a config typo otherwise surfaces as an obscure shape error deep inside a forward pass.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from damo_core.resources import data_file, data_names, data_path

# The bundled configs (package data damo_core/configs/*.yaml), through importlib.resources.
CONFIG_DIR = data_file("configs")
_TOP_LEVEL = {"name", "image_size", "num_classes", "backbone", "neck", "head", "expect",
              "description"}
_REQUIRED = {"name", "image_size", "num_classes", "backbone", "neck", "head"}


class ConfigError(ValueError):
    """A config that cannot be built; the message names file, field and value."""


@dataclass(frozen=True)
class ModelConfig:
    name: str
    image_size: int
    num_classes: int
    backbone: dict[str, Any]
    neck: dict[str, Any]
    head: dict[str, Any]
    expect: dict[str, float] = field(default_factory=dict)
    description: str = ""
    source: str = "<dict>"


def list_models() -> list[str]:
    """Names of the bundled model configs (a NAS result dropped into configs/ shows up here)."""
    return data_names("configs", suffix=".yaml")


def resolve_config_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():  # any file: pipeline artifacts have no suffix
        return path
    if path.suffix in (".yaml", ".yml"):
        raise ConfigError(f"model config file {path} does not exist")
    if data_file("configs", f"{name_or_path}.yaml").is_file():
        return data_path("configs", f"{name_or_path}.yaml")
    known = list_models()
    hint = difflib.get_close_matches(str(name_or_path), known, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    raise ConfigError(f"unknown model {str(name_or_path)!r}{suggestion} known models: {known}")


def load_model_config(name_or_path: str | Path) -> ModelConfig:
    path = resolve_config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: Any, source: str = "<dict>") -> ModelConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top, got {type(raw).__name__}")
    check_keys(raw, _TOP_LEVEL, _REQUIRED, source, prefix="")
    for key in ("image_size", "num_classes"):
        value = raw[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{source}: field '{key}' must be a positive integer, got {value!r}")
    if raw["image_size"] % 32:
        raise ConfigError(
            f"{source}: field 'image_size' = {raw['image_size']} is not a multiple of 32 "
            "(the coarsest feature map has stride 32)"
        )
    for key in ("backbone", "neck", "head"):
        if not isinstance(raw[key], dict) or "type" not in raw[key]:
            raise ConfigError(f"{source}: field '{key}' must be a mapping with a 'type' key")
    return ModelConfig(
        name=str(raw["name"]), image_size=raw["image_size"], num_classes=raw["num_classes"],
        backbone=dict(raw["backbone"]), neck=dict(raw["neck"]), head=dict(raw["head"]),
        expect=dict(raw.get("expect") or {}), description=str(raw.get("description", "")),
        source=source,
    )


def check_keys(
    mapping: dict[str, Any], allowed: set[str], required: set[str], source: str, prefix: str
) -> None:
    for key in mapping:
        if key not in allowed:
            hint = difflib.get_close_matches(key, sorted(allowed), n=1)
            suggestion = f"; did you mean '{prefix}{hint[0]}'?" if hint else ""
            raise ConfigError(
                f"{source}: unknown field '{prefix}{key}' (value {mapping[key]!r}){suggestion} "
                f"allowed: {sorted(allowed)}"
            )
    missing = sorted(required - set(mapping))
    if missing:
        raise ConfigError(f"{source}: missing field '{prefix}{missing[0]}'")


def kwargs_for(
    cls: type, section: dict[str, Any], source: str, prefix: str, provided: set[str]
) -> dict[str, Any]:
    """Check a config section against ``cls.__init__`` and return its keyword arguments.

    ``provided`` are the arguments the builder fills itself (channel counts derived from the
    previous component), so a config may not set them.
    """
    params = inspect.signature(cls.__init__).parameters
    settable = {n for n in params if n != "self"} - provided
    required = {n for n in settable if params[n].default is inspect.Parameter.empty}
    kwargs = {k: v for k, v in section.items() if k != "type"}
    check_keys(kwargs, settable, required, source, prefix)
    hints = typing.get_type_hints(cls.__init__)
    for key, value in kwargs.items():
        expected = hints.get(key)
        if expected is not None and not matches_type(value, expected):
            raise ConfigError(
                f"{source}: field '{prefix}{key}' = {value!r} should be {_type_name(expected)}"
            )
    return kwargs


def matches_type(value: Any, expected: Any) -> bool:
    """Loose runtime check of a YAML value against a type annotation."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, arg) for arg in typing.get_args(expected))
    if origin in (list, tuple):
        return isinstance(value, list | tuple)
    if origin is dict:
        return isinstance(value, dict)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is type(None):
        return value is None
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")
