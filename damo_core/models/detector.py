"""The detector (backbone → neck → head) and the builder that makes one from a config."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from damo_core.errors import UserInputError

# Importing the component modules fills the registries.
from damo_core.models.backbones import tinynas_csp, tinynas_mob, tinynas_res  # noqa: F401
from damo_core.models.backbones.structure import (
    StructureError,
    read_structure_file,
    stages_from_config,
)
from damo_core.models.config import ConfigError, ModelConfig, kwargs_for, load_model_config
from damo_core.models.heads import zero_head  # noqa: F401
from damo_core.models.heads.zero_head import LevelOutput
from damo_core.models.necks import rep_gfpn  # noqa: F401
from damo_core.models.registry import BACKBONES, HEADS, NECKS

STRIDE = 32


class Detector(nn.Module):
    """A DAMO-YOLO model. ``forward`` returns raw per-level outputs (see :class:`LevelOutput`);
    ``head.decode`` turns them into scores and boxes."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module,
                 config: ModelConfig | None = None) -> None:
        super().__init__()
        self.backbone, self.neck, self.head = backbone, neck, head
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name if self.config else type(self).__name__

    def features(self, images: Tensor) -> list[Tensor]:
        """Neck outputs (strides 8, 16, 32): what distillation compares between models."""
        check_input(images)
        return self.neck(self.backbone(images))

    def forward(self, images: Tensor) -> list[LevelOutput]:
        """``images``: ``[B, 3, H, W]`` float, H and W multiples of 32.

        Returns one :class:`LevelOutput` per stride (8, 16, 32): ``cls_logits``
        ``[B, num_classes, H/s, W/s]`` and ``reg_logits`` ``[B, 4, reg_max + 1, H/s, W/s]``.
        """
        return self.head(self.features(images))

    def fuse(self) -> Detector:
        """Fold BatchNorms and RepConv branches into plain convs for deploy (eval mode)."""
        self.eval()
        # Children before parents, so a RepConv sees its branches already folded.
        for module in reversed(list(self.modules())):
            fuse = getattr(module, "fuse", None)
            if fuse is not None and module is not self:
                fuse()
        return self


def check_input(images: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise UserInputError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h % STRIDE or w % STRIDE:
        raise UserInputError(
            f"image size {h}x{w} is not a multiple of {STRIDE}; letterbox or resize to e.g. "
            f"{(h + STRIDE - 1) // STRIDE * STRIDE}x{(w + STRIDE - 1) // STRIDE * STRIDE}"
        )


def build_model(
    name_or_config: str | Path | ModelConfig, num_classes: int | None = None
) -> Detector:
    """Build a model from a bundled name (``damoyolo_s``), a YAML path, or a parsed config."""
    cfg = (name_or_config if isinstance(name_or_config, ModelConfig)
           else load_model_config(name_or_config))
    classes = num_classes or cfg.num_classes
    backbone = _build_backbone(cfg)
    neck_cls = _lookup(NECKS, cfg.neck["type"], cfg.source, "neck.type")
    neck_kwargs = kwargs_for(neck_cls, cfg.neck, cfg.source, "neck.", {"in_channels"})
    neck = neck_cls(in_channels=backbone.out_channels, **neck_kwargs)
    head_cls = _lookup(HEADS, cfg.head["type"], cfg.source, "head.type")
    head_kwargs = kwargs_for(head_cls, cfg.head, cfg.source, "head.",
                             {"in_channels", "num_classes"})
    head = head_cls(in_channels=neck.out_channels, num_classes=classes, **head_kwargs)
    return Detector(backbone, neck, head, cfg)


def _build_backbone(cfg: ModelConfig) -> nn.Module:
    section = dict(cfg.backbone)
    cls = _lookup(BACKBONES, section["type"], cfg.source, "backbone.type")
    structure_items = section.pop("structure", None)
    structure_file = section.pop("structure_file", None)
    if (structure_items is None) == (structure_file is None):
        raise ConfigError(
            f"{cfg.source}: set exactly one of 'backbone.structure' (inline list) or "
            "'backbone.structure_file' (TinyNAS text file)"
        )
    try:
        if structure_file is not None:
            path = Path(structure_file)
            if not path.is_absolute():
                path = Path(cfg.source).parent / path
            structure = read_structure_file(path)
        else:
            structure = stages_from_config(structure_items, cfg.source)
    except StructureError as err:
        raise ConfigError(str(err)) from None
    kwargs = kwargs_for(cls, section, cfg.source, "backbone.", {"structure"})
    backbone = cls(structure=structure, **kwargs)
    if len(backbone.out_channels) != 3:
        raise ConfigError(f"{cfg.source}: backbone.out_indices must pick 3 stages")
    return backbone


def _lookup(table: dict[str, type[nn.Module]], name: str, source: str, field: str) -> type:
    if name not in table:
        raise ConfigError(f"{source}: field '{field}' = {name!r} is not one of {sorted(table)}")
    return table[name]


@torch.no_grad()
def random_input(model: Detector, batch: int = 1, size: int | None = None) -> Tensor:
    s = size or (model.config.image_size if model.config else 640)
    return torch.randn(batch, 3, s, s)
