"""Training settings: defaults in ``default.yaml`` (the single source), overridden by a YAML file
and ``key=value`` pairs, each checked against the field's type; unknown keys are rejected with
the closest valid one."""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from damo_core.models.config import ConfigError, matches_type

DEFAULTS = Path(__file__).with_name("default.yaml")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch: int
    img_size: int | None
    optimizer: str
    lr_per_image: float
    momentum: float
    weight_decay: float
    warmup_epochs: float
    no_aug_epochs: int
    min_lr_ratio: float
    ema: bool
    ema_decay: float
    ema_tau: float
    grad_clip: float
    amp: bool
    workers: int
    seed: int
    precise_bn_batches: int
    eval_interval: int
    device: str
    score_threshold: float | None
    augment: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["epochs=3", "augment.mosaic_prob=0"]`` → nested dict, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not key=value")
        key, raw = pair.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw) if raw.strip() else None
    return out


def load_train_config(
    file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    values: dict[str, Any] = yaml.safe_load(DEFAULTS.read_text())
    layers: list[tuple[str, dict[str, Any]]] = []
    if file is not None:
        loaded = yaml.safe_load(Path(file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of training settings")
        layers.append((str(file), loaded))
    if overrides:
        layers.append(("overrides", overrides))
    hints = typing.get_type_hints(TrainConfig)
    for source, layer in layers:
        for key, value in layer.items():
            if key not in hints:
                close = difflib.get_close_matches(key, list(hints), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise ConfigError(f"{source}: unknown training setting '{key}'{hint}")
            if key == "augment":
                value = {**values.get("augment", {}), **(value or {})}
            elif isinstance(value, int) and hints[key] is float:
                value = float(value)
            elif (isinstance(value, float) and value.is_integer()
                  and not matches_type(value, hints[key]) and matches_type(int(value), hints[key])):
                value = int(value)  # JSON/protobuf transports (KFP parameters) turn 4 into 4.0
            if not matches_type(value, hints[key]):
                raise ConfigError(f"{source}: setting '{key}' = {value!r} has the wrong type")
            values[key] = value
    return TrainConfig(**values)
