"""Shared by the export tests: a "trained-ish" model and the batch it was calibrated on."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from damo_core.models import Detector, build_model

SIZE = 128  # image size of every export test


def images(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 255


def _standardise(conv: torch.nn.Conv2d, feature: torch.Tensor, std: float,
                 mean: torch.Tensor) -> None:
    """Re-draw ``conv`` so each output channel has ``std``/``mean`` over ``feature``."""
    conv.weight.normal_()
    conv.bias.zero_()
    out = conv(feature).transpose(0, 1).flatten(1)
    gain = std / out.std(dim=1)
    conv.weight.mul_(gain.view(-1, 1, 1, 1))
    conv.bias.copy_(mean - out.mean(dim=1) * gain)


def trained_ish(name: str, seed: int = 0) -> Detector:
    """A random model made to look trained on :func:`images` ``(2)``, where it matters here.

    Plain random init gives vanishing features, so every score sits at the 1% prior and every
    box is the same: parity would be trivial and NMS meaningless. Here BatchNorm statistics
    are calibrated on the batch (healthy activations), class logits get mean -5 and std 2
    (scores spread over (0, 1), none saturated, so NMS sees no exact ties), and each side's
    distance distribution gets a peak at bin 3, as DFL training produces, with some per-anchor
    variation (boxes ~30-250 px). With these weights PyTorch's own float32 error against
    float64 is ~1e-4 on scores and <= 5e-3 px on boxes, so the 1e-3 / 1e-2 px tolerances
    test the export, not float32 noise. (Inputs far from this batch drive the untrained
    network into saturation; the tests use this batch.)
    """
    torch.manual_seed(seed)
    model = build_model(name, num_classes=4)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration pass
            module.reset_running_stats()
    calib = images(2)
    with torch.no_grad():
        model.train()(calib)
        features = model.eval().features(calib)
        bins = torch.arange(model.head.reg_max + 1, dtype=torch.float32)
        peak = (-((bins - 3.0) ** 2) / 2).repeat(4)
        for feature, cls, reg in zip(features, model.head.cls_proj, model.head.reg_proj,
                                     strict=True):
            _standardise(cls, feature, 2.0, torch.tensor(-5.0))
            _standardise(reg, feature, 0.5, peak)
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared CI machine OpenMP spin-waiting makes 2-thread torch
    calls (the trace included) up to 50x slower; results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ns_model() -> Detector:
    """damoyolo_ns, 4 classes, trained-ish on ``images(2)``; tests must not modify it.
    Module scope, so it is built after ``one_thread`` (0.3 s instead of seconds)."""
    return trained_ish("damoyolo_ns")


@pytest.fixture(scope="session")
def make_model() -> Callable[[str], Detector]:
    return trained_ish


@pytest.fixture(scope="session")
def batch() -> torch.Tensor:
    """The two images the trained-ish models were calibrated on, ``[2, 3, SIZE, SIZE]``."""
    return images(2)
