"""Fusing for deploy changes nothing numerically and leaves no training-only layers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from damo_core.models import list_models
from damo_core.models.layers.repconv import RepConv


def _randomise_batchnorms(model: nn.Module, seed: int = 0) -> None:
    """Fresh BNs are identities; random statistics make the fusion test meaningful."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


@pytest.mark.parametrize("name", list_models())
def test_fused_model_matches_unfused(name, zoo_model):
    model = copy.deepcopy(zoo_model(name))
    _randomise_batchnorms(model)
    model.eval()
    # Unit-scale input: a random untrained net amplifies raw 0..255 pixels to ~1e5, where
    # float32 summation order alone exceeds 1e-4.
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(x)
        fused = copy.deepcopy(model).fuse()
        after = fused(x)
    for a, b in zip(before, after, strict=True):
        assert (a.cls_logits - b.cls_logits).abs().max() <= 1e-4
        assert (a.reg_logits - b.reg_logits).abs().max() <= 1e-4
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    reps = [m for m in fused.modules() if isinstance(m, RepConv)]
    assert all(r.dense is None and r.pointwise is None and r.identity is None for r in reps)
    if name in ("damoyolo_t", "damoyolo_s", "damoyolo_m", "damoyolo_l"):
        assert reps, "the T/S/M/L backbones and necks use RepConv"


def test_repconv_with_identity_branch_fuses_exactly():
    rep = RepConv(16, 16, 3, 1, act="relu", identity=True)
    _randomise_batchnorms(rep, seed=3)
    rep.eval()
    x = torch.randn(2, 16, 9, 9)
    with torch.no_grad():
        before = rep(x)
        rep.fuse()
        after = rep(x)
    assert rep.fused and (before - after).abs().max() <= 1e-5


def test_repconv_rejects_identity_with_stride():
    with pytest.raises(ValueError, match="stride 2"):
        RepConv(8, 8, 3, 2, identity=True)


def test_fuse_is_idempotent(zoo_model):
    model = copy.deepcopy(zoo_model("damoyolo_ns")).fuse()
    keys = list(model.state_dict())
    model.fuse()
    assert list(model.state_dict()) == keys
