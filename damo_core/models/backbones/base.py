"""What every TinyNAS backbone shares: a list of stages, some of which are emitted."""

from __future__ import annotations

from torch import Tensor, nn


class StagedBackbone(nn.Module):
    """Runs ``stages`` in order and returns the maps of ``out_indices`` (strides 8, 16, 32)."""

    stages: nn.ModuleList
    out_indices: tuple[int, ...]
    out_channels: list[int]

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                features.append(x)
        return features
