"""Training settings: defaults in ``default.yaml`` (the single source), overridden by a YAML file
and ``key=value`` pairs, each checked against the field's type; unknown keys are rejected with
the closest valid one."""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from damo_core.models.config import ConfigError, matches_type
from damo_core.resources import data_file, read_data_text

# Shipped as package data (damo_core/train/default.yaml), read through importlib.resources.
DEFAULTS = data_file("train", "default.yaml")


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
    values: dict[str, Any] = yaml.safe_load(read_data_text("train", "default.yaml"))
    layers: list[tuple[str, dict[str, Any]]] = []
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not valid YAML ({one_line(err)})") from None
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
            check_range(key, value, source)
            values[key] = value
    return TrainConfig(**values)


def one_line(err: Exception) -> str:
    """A parser's multi-line message (YAML marks the spot over several lines) as one line."""
    return " ".join(str(err).split())


# Settings whose type alone admits values that train nonsense (batch 0 trains at learning rate
# 0, epochs 0 writes an untrained best.pt): (low, high, low inclusive, high inclusive).
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "epochs": (1, math.inf, True, False),
    "batch": (1, math.inf, True, False),
    "img_size": (32, math.inf, True, False),
    "lr_per_image": (0, math.inf, False, False),
    "momentum": (0, 1, True, False),
    "weight_decay": (0, math.inf, True, False),
    "warmup_epochs": (0, math.inf, True, False),
    "no_aug_epochs": (0, math.inf, True, False),
    "min_lr_ratio": (0, 1, True, True),
    "ema_decay": (0, 1, True, False),
    "ema_tau": (0, math.inf, False, False),
    "grad_clip": (0, math.inf, True, False),
    "workers": (0, math.inf, True, False),
    "precise_bn_batches": (0, math.inf, True, False),
    "eval_interval": (1, math.inf, True, False),
    "score_threshold": (0, 1, True, True),
}


def check_range(key: str, value: Any, source: str) -> None:
    """A number outside the setting's meaningful range (NaN included) is a ConfigError."""
    if key not in _RANGES or value is None or isinstance(value, bool):
        return
    low, high, low_in, high_in = _RANGES[key]
    ok = (value >= low if low_in else value > low) and (value <= high if high_in else value < high)
    if not ok:  # NaN fails every comparison, so it lands here too
        lo, hi = "[" if low_in else "(", "]" if high_in else ")"
        raise ConfigError(f"{source}: setting '{key}' = {value!r} is out of range "
                          f"{lo}{low:g}, {high:g}{hi}")
    if key == "img_size" and value % 32:
        raise ConfigError(f"{source}: setting 'img_size' = {value} must be a multiple of 32")
