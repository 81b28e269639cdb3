"""The multi-process (torchrun / PyTorchJob) side of training, inert in a single process.

``torchrun --nproc_per_node N -m damo_core.cli train ...`` sets ``RANK``/``WORLD_SIZE``; each rank
then trains on its shard of every epoch's order and gradients are averaged by DDP. With one
process nothing here does anything, so the laptop and the cluster share one code path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from damo_core.errors import UnavailableError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistEnv:
    """Join the process group torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(name: str, env: DistEnv | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UnavailableError(f"device {name!r} requested but no CUDA GPU is available here")
        if env is not None and env.enabled:
            name = f"cuda:{env.local_rank}"
    return torch.device(name)


def mean_across_ranks(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Average per-rank means, so rank 0 logs the loss of the whole global batch, not its shard."""
    if not env.enabled or not values:
        return values
    keys = sorted(values)
    packed = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(packed)
    return {k: float(v) / env.world_size for k, v in zip(keys, packed.tolist(), strict=True)}


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``w`` takes every ``w``-th index of the base order (padded to divide)."""

    def __init__(self, base: Sampler[int], env: DistEnv) -> None:
        self.base, self.env = base, env

    def __len__(self) -> int:
        return -(-len(self.base) // self.env.world_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        order = list(self.base)
        total = len(self) * self.env.world_size
        order += order[: total - len(order)]
        return iter(order[self.env.rank :: self.env.world_size])
