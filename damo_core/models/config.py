"""Model configs: one YAML file per model in ``damo_core/configs/``, validated on load.

Every error names the file, the field and the offending value, and suggests the closest valid key,
because a config typo otherwise surfaces as an obscure shape error deep inside a forward pass.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from damo_core.resources import data_file, data_names, data_path
from damo_core.settings import (
    ConfigError,
    Settings,
    closest,
    load_settings,
    read_yaml_layer,
    typed,
    unknown_key,
)

__all__ = ["ConfigError", "ModelConfig", "config_from_dict", "kwargs_for", "list_models",
           "load_model_config", "resolve_config_path"]

# The bundled configs (package data damo_core/configs/*.yaml), through importlib.resources.
CONFIG_DIR = data_file("configs")


@dataclass(frozen=True)
class ModelConfig(Settings):
    """A model YAML. ``backbone``/``neck``/``head`` are the keyword arguments of the registered
    class their ``type`` names, checked against its signature by :func:`kwargs_for` when built."""

    noun = "field"

    name: str
    image_size: int
    num_classes: int
    backbone: dict[str, Any]
    neck: dict[str, Any]
    head: dict[str, Any]
    expect: dict[str, float] = field(default_factory=dict)
    description: str = ""
    source: str = field(default="<dict>", metadata={"settable": False})

    def check(self) -> None:
        for key in ("image_size", "num_classes"):
            self.require(getattr(self, key) > 0, key, "must be a positive integer")
        self.require(self.image_size % 32 == 0, "image_size",
                     "is not a multiple of 32 (the coarsest feature map has stride 32)")
        for key in ("backbone", "neck", "head"):
            self.require("type" in getattr(self, key), key, "must be a mapping with a 'type' key")


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
    close = closest(name_or_path, known)
    suggestion = f"; did you mean {close!r}?" if close else ""
    raise ConfigError(f"unknown model {str(name_or_path)!r}{suggestion} known models: {known}")


def load_model_config(name_or_path: str | Path) -> ModelConfig:
    return config_from_dict(*reversed(read_yaml_layer(resolve_config_path(name_or_path),
                                                      "model config file")))


def config_from_dict(raw: Any, source: str = "<dict>") -> ModelConfig:
    """A model config from a mapping (a YAML file's, a checkpoint's ``model_config``)."""
    return replace(load_settings(ModelConfig, (source, raw)), source=source)


def kwargs_for(
    cls: type, section: dict[str, Any], source: str, prefix: str, provided: set[str]
) -> dict[str, Any]:
    """Check a config section against ``cls.__init__`` and return its keyword arguments.

    ``provided`` are the arguments the builder fills itself (channel counts derived from the
    previous component), so a config may not set them. The section is free-form in the model
    config (each registered class takes its own arguments), so the signature is its schema.
    """
    params = inspect.signature(cls.__init__).parameters
    settable = {n for n in params if n != "self"} - provided
    kwargs = {k: v for k, v in section.items() if k != "type"}
    for key in kwargs:
        if key not in settable:
            raise ConfigError(unknown_key(source, "field", key, settable, prefix))
    missing = sorted(n for n in settable - set(kwargs)
                     if params[n].default is inspect.Parameter.empty)
    if missing:
        raise ConfigError(f"{source}: missing field '{prefix}{missing[0]}'")
    hints = typing.get_type_hints(cls.__init__)
    for key, value in kwargs.items():
        typed(value, hints.get(key, Any), source, "field", f"{prefix}{key}")
    return kwargs
