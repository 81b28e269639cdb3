"""The weight EMA: the ramped decay, the average of every floating tensor, copied counters."""

from __future__ import annotations

import math

import torch
from torch import nn

from damo_core.train.ema import ModelEMA


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.SiLU(), nn.Conv2d(4, 2, 1))


def test_decay_ramps_from_zero_towards_its_ceiling() -> None:
    ema = ModelEMA(_model(0), decay=0.9, tau=10.0)
    assert ema.current_decay() == 0.0
    ema.updates = 10
    assert math.isclose(ema.current_decay(), 0.9 * (1 - math.exp(-1)))


def test_update_averages_floats_and_copies_counters() -> None:
    model = _model(0)
    ema = ModelEMA(model, decay=0.9, tau=2.0)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    model.load_state_dict(_model(1).state_dict())  # other weights to move towards
    model.train()(torch.rand(2, 3, 8, 8))  # BN statistics and its batch counter move too
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1 / 2.0))
    after, target = ema.module.state_dict(), model.state_dict()
    assert target["1.num_batches_tracked"].item() == 1
    for name, value in after.items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(value, d * before[name] + (1 - d) * target[name],
                                       rtol=1e-6, atol=1e-7, msg=name)
            # a tensor the two models hold alike (BN's initial scale) stays
            assert torch.equal(value, before[name]) == torch.equal(target[name], before[name])
        else:
            assert torch.equal(value, target[name]), name
    assert not any(p.requires_grad for p in ema.module.parameters())
