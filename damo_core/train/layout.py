"""The tensor layout a run trains in, decided once per run from the ``memory_format`` setting.

Why channels-last on CPU: oneDNN's convolutions work on NHWC, so NCHW weights and batches are
reordered around every convolution, forward and backward. Training the model and feeding the
batches in channels-last removes those reorders: measured with ``benchmarks/train_step.py``
(batch 8, 416 px, 2 threads) Ns trains 1.43x and T 1.26x faster on a 2-core Intel Xeon
with AMX. CUDA keeps the default layout under ``auto``: there the
gain depends on the GPU and on autocast, and nothing here measured it. The layout changes no
value a checkpoint stores, only strides, so checkpoints load into either layout.
"""

from __future__ import annotations

import torch

FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def resolve_memory_format(device: torch.device, setting: str) -> torch.memory_format:
    """``auto``: channels-last on CPU, the default layout elsewhere; otherwise as named."""
    if setting == "auto":
        return torch.channels_last if device.type == "cpu" else torch.contiguous_format
    return FORMATS[setting]
