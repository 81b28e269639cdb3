"""Process-wide settings changed for the length of a block, then put back as they were:
environment variables (:func:`exported_env`) and PyTorch's thread count (:func:`torch_threads`).

Why one helper each: the in-process trainer, the local S3 endpoint and the local run's cache all
hand settings to code (and to subprocesses and containers) through ``os.environ``, and the
latency benchmark and exported-model inference resize torch's thread pool; each must leave the
caller's process exactly as it found it, however the block ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

__all__ = ["exported_env", "torch_threads"]


@contextmanager
def exported_env(env: Mapping[str, str | None]) -> Iterator[None]:
    """``env`` set in this process for the duration; a ``None`` value unsets that variable."""
    before = {key: os.environ.get(key) for key in env}
    try:
        for key, value in env.items():
            _put(key, value)
        yield
    finally:
        for key, value in before.items():
            _put(key, value)


def _put(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """PyTorch's intra-op thread count set to ``threads`` for the duration (``None`` or 0:
    unchanged)."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
