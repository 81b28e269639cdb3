"""Which arithmetic the training forward runs in, decided once per run.

CUDA keeps what it always did: fp16 autocast with a gradient scaler when ``amp`` is on (fp16's
narrow exponent would flush small gradients to zero without the scaler). On CPU the setting
``cpu_precision`` chooses: ``fp32``; ``bf16``, the forward in ``torch.autocast("cpu",
bfloat16)``, which needs no scaler because bf16 has fp32's exponent range; or ``auto``, bf16
only where the CPU has native BF16 arithmetic (AMX or AVX-512-BF16, :mod:`damo_core.bench.
precision`), since elsewhere torch emulates it and the step gets slower, not faster. An
explicit ``bf16`` on such a CPU still trains (the arithmetic is correct) after one warning.

Only the forward is autocast: parameters and optimiser state stay fp32, and the trainer
casts the head's outputs to fp32 before the assigner and the losses run outside autocast.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from damo_core.bench.precision import CpuFeatures, cpu_features

log = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class TrainPrecision:
    """The resolved precision of a run: ``name`` is what a checkpoint records (``fp32``,
    ``bf16`` or ``fp16``), ``device_type`` the autocast device."""

    name: str
    device_type: str

    @property
    def scaled(self) -> bool:
        """Whether the loss needs a :class:`torch.amp.GradScaler` (fp16 only)."""
        return self.name == "fp16"

    def autocast(self) -> torch.autocast:
        """The context the forward runs in (a disabled one for fp32)."""
        dtype = _DTYPES.get(self.name)
        return torch.autocast(self.device_type, dtype=dtype, enabled=dtype is not None)


def resolve_precision(device: torch.device, *, amp: bool, cpu_precision: str,
                      features: CpuFeatures | None = None) -> TrainPrecision:
    """The precision a run on ``device`` trains in, from the ``amp`` and ``cpu_precision``
    settings; ``features`` (default: this CPU's) decide ``auto`` and the emulation warning."""
    if device.type == "cuda":
        return TrainPrecision("fp16" if amp else "fp32", "cuda")
    if device.type != "cpu" or cpu_precision == "fp32":
        return TrainPrecision("fp32", device.type)
    features = features or cpu_features()
    if cpu_precision == "auto":
        return TrainPrecision("bf16" if features.bf16 else "fp32", "cpu")
    if not features.bf16:
        log.warning("cpu_precision 'bf16': this CPU (%s) has no native BF16 arithmetic (AMX or "
                    "AVX-512-BF16; it has %s), so torch emulates it: training is correct but "
                    "slower than fp32. cpu_precision 'auto' uses bf16 only where it is native",
                    features.model, features.summary()["isa"])
    return TrainPrecision(cpu_precision, "cpu")
