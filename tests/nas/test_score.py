"""MAE-NAS score: equal to TinyNAS's own on DAMO-YOLO's published backbones, and the forward
(measured) variant agrees with the closed form."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from damo_core.models import load_model_config
from damo_core.models.backbones.structure import (
    StructureError,
    parse_tinynas,
    stages_from_config,
)
from damo_core.nas.score import forward_entropy_score, madnas_score

FIXTURE = json.loads((Path(__file__).parent / "data/reference_madnas_scores.json").read_text())
MODELS = sorted(k for k in FIXTURE if not k.startswith("_"))
WEIGHTS = {"w001116": (0, 0, 1, 1, 16), "w00116": (0, 0, 1, 1, 6), "w11111": (1, 1, 1, 1, 1)}


def test_fixture_covers_the_seven_published_models():
    assert MODELS == sorted(["damoyolo_t", "damoyolo_s", "damoyolo_m", "damoyolo_l",
                             "damoyolo_ns", "damoyolo_nm", "damoyolo_nl"])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("nbits", [0, 1])
@pytest.mark.parametrize("weights", sorted(WEIGHTS))
def test_analytic_score_equals_reference(model, nbits, weights):
    entry = FIXTURE[model]
    stages = parse_tinynas(entry["structure_text"])
    if not nbits:
        stages = [replace(s, nbits_a=None, nbits_w=None) for s in stages]
    ours = madnas_score(stages, focus_stem=entry["focus_stem"], weights=WEIGHTS[weights]).total
    ref = entry[f"score_nbits{nbits}_{weights}"]
    assert abs(ours - ref) <= 1e-6 * abs(ref)


@pytest.mark.parametrize("model", MODELS)
def test_published_files_match_the_zoo_configs(model):
    """The fixture's structures are the ones the zoo builds, so scores apply to our models."""
    cfg = load_model_config(model)
    assert parse_tinynas(FIXTURE[model]["structure_text"]) == stages_from_config(
        cfg.backbone["structure"], model)


def test_bit_terms_raise_the_score():
    stages = parse_tinynas(FIXTURE["damoyolo_t"]["structure_text"])
    plain = [replace(s, nbits_a=None, nbits_w=None) for s in stages]
    assert madnas_score(stages).total > madnas_score(plain).total


@pytest.mark.parametrize("model", ["damoyolo_t", "damoyolo_ns"])
def test_forward_variant_tracks_analytic(model):
    entry = FIXTURE[model]
    stages = [replace(s, nbits_a=None, nbits_w=None)
              for s in parse_tinynas(entry["structure_text"])]
    analytic = madnas_score(stages, focus_stem=entry["focus_stem"])
    forward = forward_entropy_score(stages, focus_stem=entry["focus_stem"], resolution=128)
    assert forward.total == pytest.approx(analytic.total, rel=0.02)
    assert forward.block_log_std == pytest.approx(analytic.block_log_std, abs=0.25)
    again = forward_entropy_score(stages, focus_stem=entry["focus_stem"], resolution=128)
    assert again.total == forward.total


def test_stage_count_must_match_weights():
    stages = parse_tinynas(FIXTURE["damoyolo_t"]["structure_text"])
    with pytest.raises(StructureError, match="5 stages .* 3 stage weights"):
        madnas_score(stages, weights=(1, 1, 1))


def test_mixed_bit_list_of_wrong_length_is_rejected():
    stages = parse_tinynas(FIXTURE["damoyolo_t"]["structure_text"])
    stages[1] = replace(stages[1], nbits_a=(8, 4, 8))
    with pytest.raises(StructureError, match="nbitsA = \\[8, 4, 8\\]: expected 4 entries"):
        madnas_score(stages)
