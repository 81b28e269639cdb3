"""``damo train --backbone FILE``: the structure file becomes the backbone the trainer builds."""

from __future__ import annotations

import random
from pathlib import Path

import typer
from typer.testing import CliRunner

from damo_core.cli.train_cmds import train as train_cmd
from damo_core.data.synth import generate
from damo_core.models import load_model_config
from damo_core.models.backbones.structure import format_tinynas, stages_from_config
from damo_core.nas.space import SPACES, minimal_structure, mutate


def test_backbone_file_reaches_the_trainer(tmp_path, monkeypatch):
    rng, stages = random.Random(0), minimal_structure(SPACES["res"])
    for _ in range(10):
        stages = mutate(stages, SPACES["res"], rng)
    structure = tmp_path / "tinynas_t.txt"
    structure.write_text(format_tinynas(stages, with_nbits=True))
    data = generate(tmp_path / "data", num_classes=2, num_images=4, image_size=64, seed=0)
    seen: dict[str, object] = {}

    def fake_train(model, data, out, cfg, **kwargs):
        seen["model"] = model
        raise typer.Exit(0)  # stop before training: the model handed over is what matters

    monkeypatch.setattr("damo_core.train.train", fake_train)
    app = typer.Typer()
    app.command()(train_cmd)
    result = CliRunner().invoke(app, ["--model", "damoyolo_t", "--data", str(data),
                                      "--out", str(tmp_path / "run"), "--backbone",
                                      str(structure)])
    assert result.exit_code == 0, result.output
    cfg = load_model_config(seen["model"])
    assert Path(str(seen["model"])) == tmp_path / "run" / "model.yaml"
    assert cfg.name == "damoyolo_t" and cfg.neck == load_model_config("damoyolo_t").neck
    assert stages_from_config(cfg.backbone["structure"], "run") == stages
