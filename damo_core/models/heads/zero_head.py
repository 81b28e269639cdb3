"""ZeroHead (paper 2.3): one projection for classes and one for boxes per level, nothing else.

"Large neck, small head": the neck does the work and the head is a single conv per task
(Table 6). Boxes are predicted as a distribution over ``reg_max + 1`` distance bins per side
(GFocal), whose expectation times the level's stride is the distance from the anchor point.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from damo_core.errors import UserInputError
from damo_core.losses import LOSS_WEIGHTS
from damo_core.losses.detection import detection_loss
from damo_core.losses.dfl import expected_bin
from damo_core.models.layers.box_ops import distance2bbox
from damo_core.models.registry import register_head


class LevelOutput(NamedTuple):
    """Raw head output for one pyramid level (stride ``s``, map ``H×W = image/s``).

    cls_logits: ``[B, num_classes, H, W]``; ``sigmoid`` gives per-class scores.
    reg_logits: ``[B, 4, reg_max + 1, H, W]``; ``softmax`` over dim 2 gives the distance
        distribution for the left, top, right and bottom sides, in units of the stride.
    """

    cls_logits: Tensor
    reg_logits: Tensor

    def float(self) -> LevelOutput:
        """Both maps in fp32: decode, the assigner and the losses never run in bf16/fp16."""
        return LevelOutput(self.cls_logits.float(), self.reg_logits.float())


class Scale(nn.Module):
    """A learnable scalar per level, so levels can rescale their regression logits."""

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


@register_head("zero_head")
class ZeroHead(nn.Module):
    ref_names = {"cls_proj": "gfl_cls", "reg_proj": "gfl_reg"}

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int = 80,
        reg_max: int = 16,
        strides: tuple[int, ...] = (8, 16, 32),
        last_kernel_size: int = 3,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(strides):
            raise UserInputError(f"ZeroHead: {len(in_channels)} input levels but strides {strides}")
        self.num_classes, self.reg_max, self.strides = num_classes, reg_max, tuple(strides)
        pad = last_kernel_size // 2
        self.cls_proj = nn.ModuleList(
            nn.Conv2d(c, num_classes, last_kernel_size, padding=pad) for c in in_channels
        )
        self.reg_proj = nn.ModuleList(
            nn.Conv2d(c, 4 * (reg_max + 1), last_kernel_size, padding=pad) for c in in_channels
        )
        self.scales = nn.ModuleList(Scale(1.0) for _ in strides)
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float) -> None:
        # Focal-loss style prior: start every class at ~1% so early losses are not dominated
        # by the huge number of easy negatives.
        bias = -math.log((1 - prior_prob) / prior_prob)
        for conv in (*self.cls_proj, *self.reg_proj):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        for conv in self.cls_proj:
            nn.init.constant_(conv.bias, bias)

    def forward(self, features: list[Tensor]) -> list[LevelOutput]:
        outputs = []
        for x, cls_proj, reg_proj, scale in zip(
            features, self.cls_proj, self.reg_proj, self.scales, strict=True
        ):
            reg = scale(reg_proj(x))
            b, _, h, w = reg.shape
            outputs.append(LevelOutput(cls_proj(x), reg.reshape(b, 4, self.reg_max + 1, h, w)))
        return outputs

    def anchor_points(self, outputs: list[LevelOutput]) -> Tensor:
        """``[N, 4]`` rows of (x, y, stride, stride) for every location of every level.

        Points sit on the top-left corner of each cell (no +0.5), as the released checkpoints
        were trained.
        """
        rows = []
        for out, stride in zip(outputs, self.strides, strict=True):
            h, w = out.cls_logits.shape[-2:]
            device = out.cls_logits.device
            ys, xs = torch.meshgrid(
                torch.arange(h, device=device, dtype=torch.float32) * stride,
                torch.arange(w, device=device, dtype=torch.float32) * stride,
                indexing="ij",
            )
            s = torch.full_like(xs, float(stride))
            rows.append(torch.stack([xs, ys, s, s], dim=-1).reshape(-1, 4))
        return torch.cat(rows, dim=0)

    def flatten(self, outputs: list[LevelOutput]) -> tuple[Tensor, Tensor]:
        """Concatenate levels: cls logits ``[B, N, C]`` and reg logits ``[B, N, 4, reg_max+1]``."""
        cls = torch.cat([o.cls_logits.flatten(2).transpose(1, 2) for o in outputs], dim=1)
        reg = torch.cat([o.reg_logits.flatten(3).permute(0, 3, 1, 2) for o in outputs], dim=1)
        return cls, reg

    def decode(self, outputs: list[LevelOutput]) -> tuple[Tensor, Tensor]:
        """Scores ``[B, N, C]`` (sigmoid) and boxes ``[B, N, 4]`` (xyxy, input pixels)."""
        cls, reg = self.flatten(outputs)
        priors = self.anchor_points(outputs)
        distances = expected_bin(reg) * priors[:, 2:3]
        return cls.sigmoid(), distance2bbox(priors[:, :2], distances)

    def loss(
        self,
        outputs: list[LevelOutput],
        targets: list[dict[str, Tensor]],
        weights: dict[str, float] | None = None,
    ) -> dict[str, Tensor]:
        """``{"loss_qfl", "loss_dfl", "loss_giou", "loss"}`` for a batch; targets per image are
        ``{"boxes": [G, 4] xyxy input pixels, "labels": [G]}``."""
        cls, reg = self.flatten(outputs)
        return detection_loss(cls, reg, self.anchor_points(outputs), targets,
                              reg_max=self.reg_max, weights=weights or LOSS_WEIGHTS)
