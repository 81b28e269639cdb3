"""Numerical parity with the reference DAMO-YOLO: same weights in, same scores and boxes out.

``data/reference_outputs.json`` holds what the reference models computed (eval mode, their own
box decoding, no NMS) with the weights :func:`reference_state_dict` builds from the key order in
``data/reference_models.json``; see ``data/README.md``. Here the same reference-named weights go
through :func:`convert_state_dict` into our models, which must reproduce those outputs.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from damo_core.models import build_model
from damo_core.models.checkpoint import convert_state_dict, load_checkpoint

DATA = Path(__file__).parent / "data"
OUTPUTS = json.loads((DATA / "reference_outputs.json").read_text())
# Entry keys are model names, plus "<model>@<HxW>" for extra input sizes; "note" is prose.
ENTRIES = {key: value for key, value in OUTPUTS.items() if key != "note"}
SHAPES = json.loads((DATA / "reference_models.json").read_text())

# Scores are sigmoids in [0, 1]: float32 noise and the 6-significant-digit rounding of the
# fixture are both < 1e-6, so 1e-5 absolute leaves 10x headroom.
SCORE_ATOL = 1e-5
# Boxes are input pixels (|x| up to a few hundred at these sizes): 6-digit rounding costs
# <= 5e-4 px there, float32 summation order a few 1e-5 px; 2e-3 px absolute covers both
# with 4x headroom.
BOX_ATOL = 2e-3


def reference_state_dict(name: str) -> dict[str, Tensor]:
    """Deterministic weights under the reference's names, in the reference's key order.

    One generator, seed 1234, drawn key by key: ``num_batches_tracked`` → 0; ``running_var`` →
    U(0.5, 1.5); ``running_mean`` → U(-0.1, 0.1); BN weights (1-D ``.weight`` whose sibling
    ``running_var`` exists) → U(0.75, 1.25); 4-D conv weights → N(0, 1/fan_in); everything else
    (biases, scales) → N(0, 0.05²). ``head.integral.project`` keeps the reference's own value
    (``linspace(0, reg_max, reg_max + 1)``) and draws nothing.
    """
    shapes: dict[str, list[int]] = SHAPES[name]["train"]["state_dict"]
    g = torch.Generator().manual_seed(1234)
    state: dict[str, Tensor] = {}
    for key, shape in shapes.items():
        if key == "head.integral.project":
            reg_max = shape[0] - 1
            state[key] = torch.linspace(0, reg_max, reg_max + 1)
        elif key.endswith(".num_batches_tracked"):
            state[key] = torch.tensor(0)
        elif key.endswith(".running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith(".running_mean"):
            state[key] = (torch.rand(shape, generator=g) - 0.5) * 0.2
        elif (key.endswith(".weight") and len(shape) == 1
              and key.removesuffix(".weight") + ".running_var" in shapes):
            state[key] = torch.rand(shape, generator=g) * 0.5 + 0.75
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        else:
            state[key] = torch.randn(shape, generator=g) * 0.05
    return state


def parity_input(input_hw: str) -> Tensor:
    """The input each fixture entry was computed on: ``"HxW"`` → N(0, 1), seed 7."""
    h, w = (int(v) for v in input_hw.split("x"))
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(7))


@functools.cache
def _loaded(name: str):
    model = build_model(name)
    state = reference_state_dict(name)
    model.load_state_dict(convert_state_dict(model, state, f"reference {name}"), strict=True)
    return model.eval()


def _decoded(model, input_hw: str) -> tuple[Tensor, Tensor]:
    """The fixture's input was BGR (the reference's order); this project's models take RGB and
    the loader permuted the stem accordingly, so feed the same pixels in RGB order."""
    with torch.no_grad():
        return model.head.decode(model(parity_input(input_hw).flip(1)))


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_outputs_match_reference(entry):
    ref = ENTRIES[entry]
    scores, boxes = _decoded(_loaded(entry.split("@")[0]), ref["input"])
    ref_scores = torch.tensor(ref["scores"])
    ref_boxes = torch.tensor(ref["boxes"])
    assert scores.shape == ref_scores.shape and boxes.shape == ref_boxes.shape
    score_err = (scores - ref_scores).abs().max().item()
    box_err = (boxes - ref_boxes).abs().max().item()
    assert score_err <= SCORE_ATOL, f"{entry}: max |scores - reference| = {score_err:.3g}"
    assert box_err <= BOX_ATOL, f"{entry}: max |boxes - reference| = {box_err:.3g} px"


def test_load_checkpoint_reads_a_reference_checkpoint(tmp_path):
    name = "damoyolo_ns"
    ref = ENTRIES[name]
    path = tmp_path / "reference.pth"
    torch.save({"model": reference_state_dict(name)}, path)
    model = load_checkpoint(path, build_model(name)).eval()
    scores, boxes = _decoded(model, ref["input"])
    assert (scores - torch.tensor(ref["scores"])).abs().max().item() <= SCORE_ATOL
    assert (boxes - torch.tensor(ref["boxes"])).abs().max().item() <= BOX_ATOL


def test_reference_stem_is_converted_to_rgb():
    """Feeding the BGR pixels unchanged must not match: the stem really was permuted."""
    ref = ENTRIES["damoyolo_t"]
    with torch.no_grad():
        model = _loaded("damoyolo_t")
        scores, _ = model.head.decode(model(parity_input(ref["input"])))
    assert (scores - torch.tensor(ref["scores"])).abs().max().item() > 100 * SCORE_ATOL
