"""The fused optimiser kernels compute the update the per-parameter loop does."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from damo_core.errors import UserInputError
from damo_core.train.optim import build_optimizer, fusable, param_groups


def _model() -> nn.Module:
    # no bias before the norm: its gradient is zero up to rounding, which Adam would
    # normalise into +-lr steps, so the two kernels would differ by rounding noise alone
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 4, 1))


def _train(model: nn.Module, name: str, fused: bool, steps: int = 5) -> nn.Module:
    opt = build_optimizer(model, lr=0.01, momentum=0.9, weight_decay=0.05, name=name,
                          fused=fused)
    assert opt.defaults["fused"] is fused
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 3, 12, 12, generator=gen)
        loss = model(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_fused_update_equals_loop(name: str) -> None:
    start = _model()
    fused = _train(copy.deepcopy(start), name, fused=True)
    looped = _train(copy.deepcopy(start), name, fused=False)
    moved = False
    for (key, a), b, s in zip(fused.state_dict().items(), looped.state_dict().values(),
                              start.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=key)
        moved |= not torch.equal(a, s)
    assert moved  # the comparison is of trained weights, not of two untouched copies


def test_default_is_fused_on_cpu_and_keeps_weight_decay_groups() -> None:
    model = _model()
    opt = build_optimizer(model, lr=0.01, momentum=0.9, weight_decay=0.05, name="adamw")
    assert opt.defaults["fused"] is True
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_not_fusable_where_no_kernel() -> None:
    assert fusable(param_groups(_model(), 0.01))
    assert not fusable(param_groups(_model().to("meta"), 0.01))
    assert not fusable([{"params": []}])


def test_unknown_optimizer_named() -> None:
    with pytest.raises(UserInputError, match="'lion'"):
        build_optimizer(_model(), lr=0.01, momentum=0.9, weight_decay=0.0, name="lion")
