"""Training settings: defaults in ``default.yaml`` (the single source), overridden by a YAML file
and ``key=value`` pairs; loaded, checked and merged by :func:`damo_core.settings.load_settings`,
so an augmentation typo (``augment.mixup_prop``) fails at load time like a top-level one."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from damo_core.data.augment.config import AugmentConfig
from damo_core.data.loader import WorkerStart
from damo_core.resources import data_file, read_data_text
from damo_core.settings import (
    ConfigError,
    Settings,
    load_settings,
    one_line,
    parse_overrides,
    read_yaml_layer,
)

__all__ = ["ConfigError", "TrainConfig", "load_train_config", "one_line", "parse_overrides"]

# Shipped as package data (damo_core/train/default.yaml), read through importlib.resources.
DEFAULTS = data_file("train", "default.yaml")


@dataclass(frozen=True)
class TrainConfig(Settings):
    noun = "training setting"

    epochs: int
    batch: int
    img_size: int | None
    optimizer: Literal["sgd", "adamw"]
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
    save_interval: int
    device: str
    score_threshold: float | None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Arithmetic of the training forward on CPU (CUDA follows ``amp``): fp32; bf16 (autocast,
    # native on AMX / AVX-512-BF16 CPUs, emulated and slower elsewhere); auto (bf16 where
    # native, else fp32). Resolved by damo_core.train.amp.resolve_precision.
    cpu_precision: Literal["fp32", "bf16", "auto"] = "fp32"
    # Tensor layout of the model and its input batches: auto = channels-last on CPU (oneDNN's
    # convolutions run faster on NHWC: Ns 1.43x, T 1.26x training images/s on a 2-core Xeon,
    # benchmarks/train_step.py), the default layout elsewhere (damo_core.train.layout).
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    # How the data-loader workers start: auto = forkserver where the platform has it (forked
    # workers cost every epoch copy-on-write faults, damo_core.data.loader.worker_context).
    worker_start: WorkerStart = "auto"

    def check(self) -> None:
        """Values the type admits but that train nonsense (batch 0 trains at learning rate 0,
        epochs 0 writes an untrained best.pt)."""
        for key, (low, high, low_in, high_in) in _RANGES.items():
            value = getattr(self, key)
            if value is not None:
                ok = (value >= low if low_in else value > low) and (
                    value <= high if high_in else value < high)
                lo, hi = "[" if low_in else "(", "]" if high_in else ")"
                self.require(ok, key, f"is out of range {lo}{low:g}, {high:g}{hi}")
        if self.img_size is not None:
            self.require(self.img_size % 32 == 0, "img_size", "must be a multiple of 32")


# (low, high, low inclusive, high inclusive) of the numeric settings that have a range.
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
    "save_interval": (1, math.inf, True, False),
    "score_threshold": (0, 1, True, True),
}


def load_train_config(file: str | Path | None = None, overrides: dict[str, Any] | None = None,
                      *, source: str = "overrides") -> TrainConfig:
    """Defaults, then ``file`` (a preset or the user's YAML), then ``overrides`` (named
    ``source`` in errors: "overrides" on the command line, the parameter name in a pipeline)."""
    defaults = yaml.safe_load(read_data_text("train", "default.yaml"))
    layers = [(str(DEFAULTS), defaults)]
    if file is not None:
        layers.append(read_yaml_layer(file, "training config"))
    layers.append((source, overrides))
    return load_settings(TrainConfig, *layers)
