"""The trainer: artefacts, exact resume, crash safety, CLI round trip (tiny CPU settings)."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from damo_core.cli import app
from damo_core.train import Trainer, load_train_config, load_trained

TINY = dict(epochs=3, batch=4, img_size=64, warmup_epochs=1, no_aug_epochs=1, workers=0,
            precise_bn_batches=2, ema_tau=10.0, augment={"mosaic_prob": 0.5, "mixup_prob": 0.2})


def _trainer(data, out, **overrides):
    cfg = load_train_config(overrides={**TINY, **overrides})
    return Trainer("damoyolo_ns", data, out, cfg, progress=False)


def test_training_writes_every_artefact(tiny_data, tmp_path):
    result = _trainer(tiny_data, tmp_path / "run").fit()
    run = tmp_path / "run"
    for name in ("last.pt", "best.pt", "results.csv", "results.png", "pr_curve.png",
                 "metrics.json"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(float(r["loss"]) > 0 and r["AP50"] != "" for r in rows)
    assert json.loads((run / "metrics.json").read_text())["AP50"] == pytest.approx(
        result.final["AP50"])
    model, meta = load_trained(run / "best.pt")
    assert meta["class_names"] == ["circle", "square"] and meta["image_size"] == 64
    assert model.head.num_classes == 2


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_data, tmp_path):
    _trainer(tiny_data, tmp_path / "full").fit()
    _trainer(tiny_data, tmp_path / "split").fit(stop_after_epoch=1)
    _trainer(tiny_data, tmp_path / "split").fit(resume=True)
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    assert full["epoch"] == split["epoch"] == 3 and full["step"] == split["step"]
    for part in ("model", "ema"):
        for key, value in full[part].items():
            assert torch.equal(value, split[part][key]), f"{part}.{key}"
    rows = list(csv.DictReader((tmp_path / "split" / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]


def test_crash_mid_epoch_loses_only_that_epoch(tiny_data, tmp_path, monkeypatch):
    trainer = _trainer(tiny_data, tmp_path / "run")
    original, calls = trainer.train_step, {"n": 0}

    def failing_step(images, targets):
        calls["n"] += 1
        if calls["n"] == 6:  # inside epoch 2 (4 steps per epoch)
            raise RuntimeError("power cut")
        return original(images, targets)

    monkeypatch.setattr(trainer, "train_step", failing_step)
    with pytest.raises(RuntimeError, match="power cut"):
        trainer.fit()
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["epoch"] == 1
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no half-written files left behind
    result = _trainer(tiny_data, tmp_path / "run").fit(resume=True)
    assert result.epochs == 3


def test_save_interval_resumes_from_the_last_written_epoch(tiny_data, tmp_path, monkeypatch):
    """last.pt every 2 epochs: a crash in epoch 4 resumes from epoch 2, and results.csv loses
    epoch 3's row, trained again, so every epoch keeps one row."""
    trainer = _trainer(tiny_data, tmp_path / "run", epochs=4, save_interval=2)
    original, calls, saved_epochs = trainer.train_step, {"n": 0}, []
    per_epoch = len(trainer.loader())

    def failing_step(images, targets):
        calls["n"] += 1
        if calls["n"] == 3 * per_epoch + 2:  # inside epoch 4
            saved_epochs.append(torch.load(tmp_path / "run" / "last.pt",
                                           weights_only=True)["epoch"])
            raise RuntimeError("power cut")
        if calls["n"] == per_epoch + 2:  # inside epoch 2: epoch 1 wrote no last.pt
            saved_epochs.append((tmp_path / "run" / "last.pt").exists())
        return original(images, targets)

    monkeypatch.setattr(trainer, "train_step", failing_step)
    with pytest.raises(RuntimeError, match="power cut"):
        trainer.fit()
    assert saved_epochs == [False, 2]
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    result = _trainer(tiny_data, tmp_path / "run", epochs=4, save_interval=2).fit(resume=True)
    assert result.epochs == 4
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 4


def test_resume_without_checkpoint_is_a_clear_error(tiny_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="last.pt does not exist"):
        _trainer(tiny_data, tmp_path / "none").fit(resume=True)


def test_cli_train_eval_predict(tiny_data, tmp_path):
    runner = CliRunner()
    run = tmp_path / "cli"
    args = ["train", "--model", "damoyolo_ns", "--data", str(tiny_data), "--out", str(run),
            "--epochs", "1", "--batch", "4", "--img-size", "64", "workers=0",
            "precise_bn_batches=1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["epochs"] == 1
    result = runner.invoke(app, ["eval", "--weights", str(run / "best.pt"), "--data",
                                 str(tiny_data), "--out", str(run / "eval.json")])
    assert result.exit_code == 0, result.output
    assert "AP50" in json.loads(result.stdout) and (run / "eval.json").is_file()
    image = next((tiny_data.parent / "images" / "val").glob("*.jpg"))
    result = runner.invoke(app, ["predict", "--weights", str(run / "best.pt"), str(image),
                                 "--out", str(run / "pred"), "--conf", "0.0"])
    assert result.exit_code == 0, result.output
    assert (run / "pred" / image.name).is_file()


def test_cli_rejects_unknown_setting_with_suggestion(tiny_data, tmp_path):
    result = CliRunner().invoke(app, ["train", "--model", "damoyolo_ns", "--data",
                                      str(tiny_data), "--out", str(tmp_path), "epoch=3"])
    assert result.exit_code == 2
    assert "unknown training setting 'epoch'; did you mean 'epochs'?" in result.output


def test_integral_floats_from_json_transports_are_accepted_as_ints():
    cfg = load_train_config(overrides={"epochs": 4.0, "img_size": 64.0})
    assert cfg.epochs == 4 and isinstance(cfg.epochs, int) and cfg.img_size == 64
    from damo_core.models.config import ConfigError

    with pytest.raises(ConfigError, match="'epochs' = 1.5 must be an integer"):
        load_train_config(overrides={"epochs": 1.5})


def test_sampling_weights_of_a_manifest_drive_the_loader(tiny_data, tmp_path):
    """A manifest with sampling on is drawn by its per-image weights (train rows only); a
    weights table that does not fit the manifest is an error naming the file."""
    import shutil

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from damo_core.data.errors import DatasetError
    from damo_core.data.resolve import manifest_for

    manifest = tmp_path / "manifest"
    shutil.copytree(manifest_for(tiny_data), manifest)
    summary = json.loads((manifest / "summary.json").read_text())
    summary["sampling"]["enabled"] = True
    (manifest / "summary.json").write_text(json.dumps(summary))
    splits = pq.read_table(manifest / "manifest" / "data-00000.parquet",
                           columns=["split"]).column("split").to_pylist()
    train_rows = [i for i, s in enumerate(splits) if s == "train"]
    weights = np.zeros(len(splits))
    weights[train_rows[3]] = 1.0
    pq.write_table(pa.table({"weight": weights}), manifest / "sampling_weights.parquet")
    trainer = _trainer(manifest, tmp_path / "run")
    sampler = trainer.loader().sampler
    assert set(sampler) == {3}
    drawn = json.loads((tmp_path / "run" / "sampling.json").read_text())
    assert drawn["draws"] == len(train_rows) and drawn["source_share"] == {"data": 1.0}
    only = trainer.dataset.source.labels[trainer.dataset.source.offsets[3]:
                                         trainer.dataset.source.offsets[4]]
    if drawn["rare_class"] in {trainer.class_names[c] for c in only}:
        assert drawn["rare_class_multiple"] > 1  # every draw holds the rare class
    else:
        assert drawn["rare_class_multiple"] == 0
    pq.write_table(pa.table({"weight": weights[:-1]}), manifest / "sampling_weights.parquet")
    with pytest.raises(DatasetError, match="sampling_weights.parquet"):
        _trainer(manifest, tmp_path / "run2")
