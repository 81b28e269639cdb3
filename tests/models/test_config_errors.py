"""Bad configs and checkpoints fail with messages naming the file, the field or key, the value."""

from __future__ import annotations

import copy

import pytest
import torch
import yaml

from damo_core.models import ConfigError, build_model
from damo_core.models.checkpoint import CheckpointError, load_checkpoint
from damo_core.models.config import CONFIG_DIR


def _write_variant(tmp_path, edit):
    raw = yaml.safe_load((CONFIG_DIR / "damoyolo_ns.yaml").read_text())
    edit(raw)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_model_name_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown model 'damoyolo_x'.*damoyolo_"):
        build_model("damoyolo_x")
    with pytest.raises(ConfigError, match="did you mean 'damoyolo_s'"):
        build_model("damoyolo_ss")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nothere.yaml does not exist"):
        build_model(tmp_path / "nothere.yaml")


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda r: r.pop("image_size"), "missing field 'image_size'"),
        (lambda r: r["neck"].update(hiden_ratio=0.5),
         r"unknown field 'neck.hiden_ratio'; did you mean 'neck.hidden_ratio'"),
        (lambda r: r["neck"].update(depth="three"),
         r"field 'neck.depth' = 'three' must be an integer"),
        (lambda r: r["head"].update(reg_max=7.5), r"field 'head.reg_max' = 7.5 must be an integer"),
        (lambda r: r.update(image_size=420), r"'image_size' = 420 is not a multiple of 32"),
        (lambda r: r["backbone"].update(type="resnet50"),
         r"field 'backbone.type' = 'resnet50' is not one of"),
        (lambda r: r["backbone"]["structure"][2].update(out=41),
         r"structure\[3\].in = 40 but structure\[2\].out = 41"),
        (lambda r: r["backbone"]["structure"][1].update(strid=2),
         r"backbone.structure\[1\] has unknown keys \['strid'\]"),
        (lambda r: r["backbone"].update(act="gelu"), "unknown activation 'gelu'"),
    ],
)
def test_bad_config_field_is_named(tmp_path, edit, pattern):
    path = _write_variant(tmp_path, edit)
    with pytest.raises((ConfigError, ValueError), match=pattern) as info:
        build_model(path)
    if "activation" not in pattern:
        assert str(path) in str(info.value)


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        build_model(path)


def test_structure_file_variant_builds_same_model(tmp_path):
    from damo_core.models.backbones.structure import format_tinynas, stages_from_config

    raw = yaml.safe_load((CONFIG_DIR / "damoyolo_ns.yaml").read_text())
    stages = stages_from_config(raw["backbone"].pop("structure"), "test")
    (tmp_path / "ns.txt").write_text(format_tinynas(stages, with_nbits=True))
    raw["backbone"]["structure_file"] = "ns.txt"
    (tmp_path / "ns.yaml").write_text(yaml.safe_dump(raw))
    a, b = build_model("damoyolo_ns"), build_model(tmp_path / "ns.yaml")
    assert {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in b.state_dict().items()
    }


def test_checkpoint_of_another_model_lists_differing_keys(tmp_path, zoo_model):
    path = tmp_path / "t.pth"
    torch.save({"model": zoo_model("damoyolo_t").state_dict()}, path)
    target = copy.deepcopy(zoo_model("damoyolo_s"))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, target)
    message = str(info.value)
    assert str(path) in message and "damoyolo_s" in message
    assert "shape mismatches" in message and "checkpoint (" in message


def test_checkpoint_errors_name_the_file(tmp_path, zoo_model):
    model = copy.deepcopy(zoo_model("damoyolo_ns"))
    with pytest.raises(CheckpointError, match="missing.pth does not exist"):
        load_checkpoint(tmp_path / "missing.pth", model)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: cannot be read"):
        load_checkpoint(junk, model)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(CheckpointError, match="empty.pth: no state dict found"):
        load_checkpoint(empty, model)


def test_own_checkpoint_round_trips(tmp_path, zoo_model):
    source = zoo_model("damoyolo_ns")
    path = tmp_path / "own.pt"
    torch.save({"model": source.state_dict(), "epoch": 1}, path)
    target = build_model("damoyolo_ns")
    load_checkpoint(path, target)
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key
