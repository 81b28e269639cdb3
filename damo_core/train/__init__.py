"""Training: the detector trainer (SGD, cosine LR, EMA, AlignOTA losses), checkpoints, resume."""

from damo_core.train.checkpoint_io import load_trained
from damo_core.train.config import TrainConfig, load_train_config, parse_overrides
from damo_core.train.trainer import Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "load_train_config", "load_trained",
           "parse_overrides", "train"]
