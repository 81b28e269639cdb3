"""One exported model, one repository and one real Triton server for all serving tests.

The model is ``tests/export``'s trained-ish damoyolo_ns (seeded random weights calibrated on
two noise images, so scores spread and NMS has work to do), saved as a training checkpoint
and exported by the pipeline's own export step, so the tests deploy what the pipeline would.
The checkpoint records a measured best-F1 threshold (:data:`CHECKPOINT_CONF`, made up, and
unlike 0.3 so that its path to the served default shows). The test images are those
calibration images (plus a non-square crop that makes the input fit pad or stretch), written
as PNG files. The server starts once per session: each start costs seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from damo_core.serve.local_server import LocalTriton
from damo_core.steps import export
from damo_core.steps._common import WEIGHTS
from damo_core.train.checkpoint_io import atomic_save, model_meta
from tests.export.conftest import SIZE, images, trained_ish

CLASSES = ["circle", "square", "triangle", "star"]
MODEL = "damoyolo_ns"
# The checkpoint's "measured" best-F1 threshold (as training's threshold_record writes it):
# the default the export records and the deployment reports.
CHECKPOINT_CONF = 0.25


@dataclass(frozen=True)
class Exported:
    weights: Path
    exported_dir: Path
    metadata: dict[str, Any]
    images: list[Path]


def save_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """The trainer's checkpoint layout, so ``load_trained``/``damo predict`` read it."""
    metrics = {"best_f1_threshold": CHECKPOINT_CONF, "best_f1": 0.5}
    atomic_save({**model_meta(model, CLASSES, SIZE), "model": model.state_dict(), "ema": None,
                 "epoch": 0, "metrics": metrics}, path)
    return path


def write_test_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = images(2).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    paths = []
    for i, array in enumerate([pixels[0], pixels[1], pixels[1][16:112]]):  # last: 96×128
        path = folder / f"noise_{i}.png"
        Image.fromarray(np.ascontiguousarray(array), mode="RGB").save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread for the in-process PyTorch calls: on a shared 2-core machine
    OpenMP spin-waiting makes 2-thread calls many times slower (see tests/export)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_exported(root: Path) -> Exported:
    """Checkpoint, ONNX export (by the pipeline's export step) and test images under ``root``
    (also used by the monitoring tests, which deploy the same model)."""
    weights = save_checkpoint(trained_ish(MODEL), root / "train" / WEIGHTS)
    metadata = export.run(weights, root / "exported", fmt="onnx")
    return Exported(weights, root / "exported", metadata, write_test_images(root / "images"))


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return make_exported(tmp_path_factory.mktemp("serve_model"))


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    """A real tritonserver on 127.0.0.1 with an empty repository (tests deploy into it)."""
    repo = tmp_path_factory.mktemp("triton_repo")
    with LocalTriton(repo, startup_timeout=120) as server:
        yield server
