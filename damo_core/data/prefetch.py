"""Fetch S3 images into the on-disk cache ahead of the order the loader will ask for them.

Why in the sampler: the sampler is the one place that knows the future order, and it runs in
the main process, so a handful of fetch threads there fill the cache that every DataLoader
worker (and every rank on the node) then reads as a local file. Workers never wait on the
network for an image the prefetcher has already brought in; one that is not there yet is
fetched by the worker itself, so prefetching changes speed, never results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import Protocol

from torch.utils.data import Sampler

__all__ = ["PrefetchSampler"]

DEFAULT_AHEAD = 256


class _Prefetchable(Protocol):
    def prefetch(self, indices: Iterable[int]) -> None: ...


class PrefetchSampler(Sampler[int]):
    """Yields ``sampler``'s indices unchanged; keeps ``ahead`` of them queued for fetching.

    The window is topped up in chunks of ``ahead // 2`` so the fetch queue sees a few large
    requests rather than one per index.
    """

    def __init__(self, sampler: Iterable[int], source: _Prefetchable,
                 ahead: int = DEFAULT_AHEAD) -> None:
        self.sampler = sampler
        self.source = source
        self.ahead = max(2, ahead)

    def __len__(self) -> int:
        return len(self.sampler) if isinstance(self.sampler, Sized) else 0

    def __iter__(self) -> Iterator[int]:
        order = list(self.sampler)
        step = self.ahead // 2
        queued = min(self.ahead, len(order))
        self.source.prefetch(order[:queued])
        for position, index in enumerate(order):
            if position + self.ahead >= queued + step and queued < len(order):
                self.source.prefetch(order[queued:queued + step])
                queued += step
            yield index
