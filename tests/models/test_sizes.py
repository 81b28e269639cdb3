"""The zoo matches the paper: params within 3% and GFLOPs within 5% on the deploy graph."""

from __future__ import annotations

import math

import pytest
import torch

from damo_core.models import list_models
from damo_core.models.profile import count_macs, model_info

PAPER = {  # Tables 9 and 10 (deploy graph); Nm's params per the reference README (2.71 M).
    "damoyolo_t": (640, 8.5, 18.1),
    "damoyolo_s": (640, 16.3, 37.8),
    "damoyolo_m": (640, 28.2, 61.8),
    "damoyolo_l": (640, 42.1, 97.3),
    "damoyolo_ns": (416, 1.41, 1.56),
    "damoyolo_nm": (416, 2.71, 3.69),
    "damoyolo_nl": (416, 5.69, 6.04),
}


def test_zoo_lists_the_seven_paper_models():
    assert sorted(PAPER) == list_models()


@pytest.mark.parametrize("name", sorted(PAPER))
def test_deploy_params_and_gflops_match_paper(name, zoo_model):
    size, params_m, gflops = PAPER[name]
    info = model_info(zoo_model(name))
    assert info.image_size == size
    assert info.paper_params_m == params_m and info.paper_gflops == gflops  # config agrees
    assert abs(info.deploy_params_m / params_m - 1) <= 0.03, info
    assert abs(info.deploy_gflops / gflops - 1) <= 0.05, info
    # Fusing removes BatchNorm FLOPs and RepConv's extra branches, never adds.
    assert info.deploy_params_m < info.params_m and info.deploy_gflops < info.gflops


@pytest.mark.parametrize("name", sorted(PAPER))
def test_forward_shapes_and_finite(name, zoo_model):
    model = zoo_model(name).eval()
    with torch.no_grad():
        outputs = model(torch.rand(2, 3, 64, 96) * 255)
    assert len(outputs) == 3
    for out, stride in zip(outputs, (8, 16, 32), strict=True):
        assert out.cls_logits.shape == (2, 80, 64 // stride, 96 // stride)
        reg_bins = model.head.reg_max + 1
        assert out.reg_logits.shape == (2, 4, reg_bins, 64 // stride, 96 // stride)
        assert torch.isfinite(out.cls_logits).all() and torch.isfinite(out.reg_logits).all()
    scores, boxes = model.head.decode(outputs)
    n = sum((64 // s) * (96 // s) for s in (8, 16, 32))
    assert scores.shape == (2, n, 80) and boxes.shape == (2, n, 4)
    assert ((scores >= 0) & (scores <= 1)).all()


def test_nano_heads_use_reg_max_7_and_1x1(zoo_model):
    for name in ("damoyolo_ns", "damoyolo_nm", "damoyolo_nl"):
        head = zoo_model(name).head
        assert head.reg_max == 7 and head.cls_proj[0].kernel_size == (1, 1)
    head = zoo_model("damoyolo_s").head
    assert head.reg_max == 16 and head.cls_proj[0].kernel_size == (3, 3)


@pytest.mark.parametrize("size", [64, 100, 33])
def test_image_size_not_multiple_of_32_is_rejected(size, zoo_model):
    model = zoo_model("damoyolo_ns")
    if size % 32 == 0:
        model(torch.zeros(1, 3, size, size))
        return
    with pytest.raises(ValueError, match=f"{size}x{size} is not a multiple of 32"):
        model(torch.zeros(1, 3, size, size))


def test_macs_scale_exactly_with_input_area(zoo_model):
    model = zoo_model("damoyolo_t")
    small, large = count_macs(model, 320), count_macs(model, 640)
    assert large == 4 * small
    assert math.isclose(2 * large / 1e9, model_info(model).gflops, rel_tol=1e-9)
