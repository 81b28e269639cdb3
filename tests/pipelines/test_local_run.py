"""The same pipeline function runs end to end on this machine with KFP's local runner.

Tiny settings (nano models, 64 px, one epoch) keep it a CI test; the README's main job runs
the full-size local defaults.
"""

from __future__ import annotations

import pytest
import torch

from damo_core.train import load_trained
from pipelines.local_run import run_local, summary_rows

TINY = {
    "synth_images": 16,
    "synth_image_size": 64,
    "synth_classes": 2,
    "model_l": "damoyolo_nl",
    "model_m": "damoyolo_nm",
    "model_s": "damoyolo_ns",
    "model_t": "damoyolo_ns",
    "preset": "cpu_quick",
    "teacher_settings": {"epochs": 1, "img_size": 64, "batch": 4, "workers": 0},
    # one epoch, all of it distilled (no plain fine-tune stage at this size)
    "student_settings": {"epochs": 1, "img_size": 64, "batch": 4, "workers": 0,
                         "no_aug_epochs": 0},
    "map_floor": 0.0,
}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    return run_local(TINY, tmp_path_factory.mktemp("kfp"))


def test_every_step_ran_and_produced_artifacts(local_run):
    names = {t.task for t in local_run.tasks}
    assert {"unify-dataset", "train-teacher", "distill", "distill-2", "distill-3"} <= names
    assert len(local_run.by_prefix("nas-search")) == 4
    assert len(local_run.by_prefix("evaluate")) == 4
    assert len(local_run.by_prefix("gate")) == 4


def test_chain_order_and_real_checkpoints(local_run):
    rows = {r["model"]: r for r in summary_rows(local_run)}
    teachers = [t.artifacts["model"].get("teacher") for t in local_run.by_prefix("distill")]
    assert sorted(teachers, key=str) == sorted(["damoyolo_nl", "damoyolo_nm", "damoyolo_ns"])
    for rec in local_run.by_prefix("train-teacher") + local_run.by_prefix("distill"):
        model, meta = load_trained(rec.artifacts["model"]["uri"] + "/best.pt")
        assert meta["num_classes"] == 2 and meta["image_size"] == 64
        assert all(torch.isfinite(p).all() for p in model.parameters())
    for name in ("damoyolo_nl", "damoyolo_nm", "damoyolo_ns"):
        row = rows[name]
        assert row["AP50"] is not None and 0.0 <= row["AP50"] <= 1.0
        assert row["gate"] == "pass"  # map_floor 0 passes everything
        assert row["params_m"] > 0 and row["gflops"] > 0
