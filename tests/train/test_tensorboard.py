"""TensorBoard event files of training and distillation, read back with TensorBoard's own loader;
resume appends without duplicate steps; the train step's HTML page for the KFP UI."""

from __future__ import annotations

import base64
import csv
import io
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import (
    IMAGES,
    SCALARS,
    EventAccumulator,
)

import damo_core.train.tracking as tracking
from damo_core.eval import Detections, class_colour
from damo_core.steps import train as train_step
from damo_core.train import Trainer, load_train_config
from damo_core.train.distill import DistillTrainer
from damo_core.train.tracking import RunTracker, write_page

# the distillation tests' tiny settings, teacher checkpoint and one-thread fixture (autouse)
from tests.train.test_distill import TINY, _save_teacher, one_thread  # noqa: F401

TASK_LOSSES = {"train/loss", "train/loss_qfl", "train/loss_dfl", "train/loss_giou"}
PER_EPOCH = {"epoch/epoch", "epoch/time_s", "val/AP", "val/AP50", "val/AP75"}


def _loaded(run: Path) -> EventAccumulator:
    """Everything in the run's event files (no sampling), as TensorBoard itself reads them."""
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={SCALARS: 0, IMAGES: 0})
    events.Reload()
    return events


def _steps(events: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in events.Scalars(tag)]


def _trainer(data: Path, out: Path) -> Trainer:
    trainer = Trainer("damoyolo_ns", data, out, load_train_config(overrides=TINY), progress=False)
    trainer.tracker.every = 1
    return trainer


@pytest.fixture(scope="module")
def plain_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "run"
    trainer = _trainer(tiny_data, out)
    per_epoch = len(trainer.loader())
    trainer.fit()
    return out, per_epoch


def test_training_writes_scalars_and_images_tensorboard_loads(plain_run):
    run, per_epoch = plain_run
    events = _loaded(run)
    assert set(events.Tags()[SCALARS]) == TASK_LOSSES | {"train/lr"} | PER_EPOCH
    total = torch.load(run / "last.pt", weights_only=True)["step"]
    assert total == TINY["epochs"] * per_epoch
    for tag in (*TASK_LOSSES, "train/lr"):  # every optimiser step, once
        assert _steps(events, tag) == list(range(1, total + 1)), tag
    ends = [per_epoch * (e + 1) for e in range(TINY["epochs"])]
    for tag in PER_EPOCH:  # one value per epoch, at the step that ended it
        assert _steps(events, tag) == ends, tag
    assert [e.value for e in events.Scalars("epoch/epoch")] == [1, 2]
    rows = list(csv.DictReader((run / "results.csv").open()))
    for key in ("AP", "AP50"):
        assert [e.value for e in events.Scalars(f"val/{key}")] == pytest.approx(
            [float(r[key]) for r in rows], abs=1e-5)
    lr_at_end = {e.step: e.value for e in events.Scalars("train/lr")}
    assert [lr_at_end[s] for s in ends] == pytest.approx([float(r["lr"]) for r in rows],
                                                         rel=1e-5)
    images = events.Tags()[IMAGES]
    assert sorted(images) == [f"val/predictions/{i}" for i in range(tracking.SAMPLE_IMAGES)]
    for tag in images:  # one drawn image per evaluation, a PNG of the val image's size
        shots = events.Images(tag)
        assert [s.step for s in shots] == ends
        png = Image.open(io.BytesIO(shots[-1].encoded_image_string))
        assert png.format == "PNG" and png.size == (shots[-1].width, shots[-1].height)


def test_scalars_every_n_steps_and_nothing_from_a_disabled_tracker(tmp_path):
    tracker = RunTracker(tmp_path / "on", ["a"], every=3)
    with tracker.session(0):
        for step in range(1, 9):
            tracker.step(step, {"loss": 1.0 / step, "lr": 0.1})
    assert _steps(_loaded(tmp_path / "on"), "train/loss") == [3, 6]
    off = RunTracker(tmp_path / "off", ["a"], enabled=False)
    with off.session(0):
        off.step(10, {"loss": 1.0})
        off.epoch(10, 1, 1.0, None)
    assert not (tmp_path / "off").exists()


def test_sample_predictions_are_drawn_and_shrunk(tmp_path, monkeypatch):
    image = np.full((400, 600, 3), 255, np.uint8)
    found = Detections(torch.tensor([[100.0, 100.0, 500.0, 300.0]]), torch.tensor([0.9]),
                       torch.tensor([1]))

    def predicted(model, source, *, limit, **options):
        assert limit == tracking.SAMPLE_IMAGES
        yield 0, SimpleNamespace(image=image), found

    monkeypatch.setattr(tracking, "predict_dataset", predicted)
    tracker = RunTracker(tmp_path, ["circle", "square"])
    with tracker.session(0):
        tracker.predictions(7, None, [object()], image_size=64, device=torch.device("cpu"))
    (shot,) = _loaded(tmp_path).Images("val/predictions/0")
    drawn = np.asarray(Image.open(io.BytesIO(shot.encoded_image_string)).convert("RGB"))
    assert shot.step == 7 and drawn.shape == (213, 320, 3)  # 600x400 shrunk, aspect kept
    # the box (outline and tag) in class 1's colour, the background untouched
    near = np.abs(drawn.astype(int) - class_colour(1)).max(axis=2) < 40
    assert near.sum() > 300 and not near[:30].any() and (drawn[5, 5] == 255).all()


def test_crash_then_resume_appends_without_duplicate_steps(tiny_data, tmp_path, monkeypatch):
    first = _trainer(tiny_data, tmp_path / "run")
    per_epoch = len(first.loader())
    original, calls = first.train_step, {"n": 0}

    def failing_step(images, targets):
        calls["n"] += 1
        if calls["n"] == per_epoch + 2:  # the second step of epoch 2, after last.pt of epoch 1
            raise RuntimeError("power cut")
        return original(images, targets)

    monkeypatch.setattr(first, "train_step", failing_step)
    with pytest.raises(RuntimeError, match="power cut"):
        first.fit()
    # closed on the exception: the step logged after the checkpoint is on disk
    assert _steps(_loaded(tmp_path / "run"), "train/loss") == list(range(1, per_epoch + 2))
    _trainer(tiny_data, tmp_path / "run").fit(resume=True)
    events = _loaded(tmp_path / "run")
    total = TINY["epochs"] * per_epoch
    assert _steps(events, "train/loss") == list(range(1, total + 1))
    assert _steps(events, "val/AP") == [per_epoch, total]
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 2


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return _save_teacher(tmp_path_factory.mktemp("teacher") / "best.pt", "damoyolo_nm",
                         ["circle", "square"])


def test_distillation_logs_its_weight_and_loss(tiny_data, teacher, tmp_path):
    cfg = load_train_config(overrides=TINY)
    trainer = DistillTrainer("damoyolo_ns", teacher, tiny_data, tmp_path / "run", cfg,
                             progress=False)
    trainer.tracker.every = 1
    per_epoch = len(trainer.loader())
    trainer.fit()
    events = _loaded(tmp_path / "run")
    assert {"train/distill_weight", "train/loss_distill"} | TASK_LOSSES <= set(
        events.Tags()[SCALARS])
    weights = events.Scalars("train/distill_weight")
    assert [w.step for w in weights] == list(range(1, trainer.step + 1))
    # cosine-decaying weight in the mosaic (distillation) epoch, 0 in the teacher-free one
    distilling = [w.value for w in weights[:per_epoch]]
    assert all(v > 0 for v in distilling) and distilling == sorted(distilling, reverse=True)
    assert all(w.value == 0 for w in weights[per_epoch:])


def test_train_step_writes_the_page_for_the_kfp_ui(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "STEP_EVERY", 1)
    page = tmp_path / "curves.html"
    meta = train_step.run(tiny_data, tmp_path / "model", model="damoyolo_ns",
                          settings={**TINY, "epochs": 1, "no_aug_epochs": 0}, page=page)
    assert meta["epochs"] == 1
    text = page.read_text()
    assert "damoyolo_ns: training curves" in text
    pngs = [Image.open(io.BytesIO(base64.b64decode(b)))
            for b in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)]
    assert len(pngs) == 1 + tracking.SAMPLE_IMAGES  # the curves, then the sample predictions
    assert pngs[0].size[0] > 500  # the curves figure, not a thumbnail
    assert len(re.findall(r"<tr><td>\d+</td>", text)) == 1  # one row per epoch
    assert (tmp_path / "model" / "tensorboard").is_dir()


def test_page_of_a_run_without_event_files_says_so(tmp_path):
    text = write_page(tmp_path / "none", tmp_path / "page.html").read_text()
    assert "No TensorBoard scalars" in text and "<img" not in text
