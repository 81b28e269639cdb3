"""The DAMO-YOLO model zoo: TinyNAS backbones, RepGFPN neck, ZeroHead, built from YAML configs."""

from damo_core.models.config import ConfigError, ModelConfig, list_models, load_model_config
from damo_core.models.detector import Detector, build_model

__all__ = ["ConfigError", "Detector", "ModelConfig", "build_model", "list_models",
           "load_model_config"]
