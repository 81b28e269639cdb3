"""Shared fixtures: models are built once per session because the large ones take seconds."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from damo_core.models import Detector, build_model


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dataset conversions and the S3 image cache go to a per-session directory, never the
    user's ~/.cache (subprocesses the tests start inherit it)."""
    import os

    os.environ["DAMO_CACHE_DIR"] = str(tmp_path_factory.mktemp("damo-cache"))


@functools.cache
def _built(name: str) -> Detector:
    torch.manual_seed(0)
    return build_model(name)


@pytest.fixture
def zoo_model():
    """Return a cached model by name; tests must not mutate it (deepcopy first)."""
    return _built


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures(...)``): tiny
    convs on a shared 2-core machine run faster on one thread than oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cpu_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point ``$DAMO_CPUINFO`` at a fake cpuinfo with the given flags (a ``Fake CPU``), so
    precision choices can be tested for CPUs this machine is not."""

    def fake(flags: str) -> None:
        path = tmp_path / f"cpuinfo-{len(flags)}"
        path.write_text(f"processor\t: 0\nmodel name\t: Fake CPU\nflags\t\t: {flags}\n")
        monkeypatch.setenv("DAMO_CPUINFO", str(path))

    return fake


CONFIDENT_SIZE = 64
CONFIDENT_CLASSES = ("circle", "square")


@pytest.fixture(scope="session")
def confident_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``damoyolo_ns`` (2 classes, 64 px) saved as a training checkpoint, with its
    class bias raised and BatchNorm statistics away from the identity: every image then gets
    confident, distinct scores (detections and AP exist to compare between runtimes) and
    folding the norms changes the weights. Stands in for a trained model where training
    would cost minutes."""
    from damo_core.train.checkpoint_io import atomic_save, model_meta

    torch.manual_seed(0)
    model = build_model("damoyolo_ns", num_classes=len(CONFIDENT_CLASSES))
    with torch.no_grad():
        for conv in model.head.cls_proj:
            conv.bias += 4.0
        model.train()
        model(torch.rand(4, 3, CONFIDENT_SIZE, CONFIDENT_SIZE) * 255)
    model.eval()
    path = tmp_path_factory.mktemp("confident") / "best.pt"
    atomic_save({**model_meta(model, list(CONFIDENT_CLASSES), CONFIDENT_SIZE),
                 "model": model.state_dict(), "ema": None}, path)
    return path
