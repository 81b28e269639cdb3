"""``TritonDetector`` against a fake gRPC client (no server): what it reads from the
deployment's postprocess config, and which score threshold ``detect`` applies by default."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from damo_core.eval.postprocess import Detections
from damo_core.serve import client as client_module
from damo_core.serve import model_config as mc
from damo_core.serve.client import TritonDetector
from tests.serve.conftest import CLASSES, MODEL

NAMES = mc.ModelNames(MODEL)


class FakeGrpcClient:
    """Answers the calls ``TritonDetector.__init__`` makes; ``post_params=None`` is a foreign
    deployment without our postprocess model."""

    def __init__(self, post_params: dict[str, Any] | None) -> None:
        self.post_params = post_params

    def is_server_live(self, **_: Any) -> bool:
        return True

    def is_model_ready(self, model: str, **_: Any) -> bool:
        return True

    def get_model_config(self, model: str, **_: Any) -> dict[str, Any]:
        if model == NAMES.ensemble:
            return {"config": {"name": model, "max_batch_size": 8}}
        if model == NAMES.postprocess and self.post_params is not None:
            return {"config": {"name": model, "parameters": self.post_params}}
        raise RuntimeError(f"[StatusCode.UNAVAILABLE] Request for unknown model: {model}")

    def close(self) -> None:
        pass


def connect(monkeypatch: pytest.MonkeyPatch,
            post_params: dict[str, Any] | None) -> TritonDetector:
    fake = FakeGrpcClient(post_params)
    grpc = SimpleNamespace(InferenceServerClient=lambda url: fake, InferInput=object,
                           InferRequestedOutput=object)
    monkeypatch.setattr(client_module, "grpc_module", lambda: grpc)
    return TritonDetector("fake:8001", MODEL)


def params(**values: str) -> dict[str, Any]:
    return {key: {"string_value": value} for key, value in values.items()}


@pytest.mark.parametrize(("text", "expected"), [
    ("0.35", 0.35), ("0", 0.0), ("1.0", 1.0),
    ("nan", None), ("inf", None), ("1.5", None), ("-0.1", None), ("", None), ("high", None),
])
def test_default_threshold_read_from_the_postprocess_config(monkeypatch, text, expected):
    detector = connect(monkeypatch, params(class_names=",".join(CLASSES),
                                           default_score_threshold=text))
    assert detector.default_score_threshold == expected
    assert detector.class_names == CLASSES


def test_deployment_without_a_default(monkeypatch):
    assert connect(monkeypatch, params(class_names="a,b")).default_score_threshold is None
    odd = connect(monkeypatch, {"default_score_threshold": 0.4, "class_names": ["a"]})
    assert odd.default_score_threshold is None and odd.class_names is None  # not parameters
    foreign = connect(monkeypatch, None)
    assert foreign.default_score_threshold is None and foreign.class_names is None


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return path


@pytest.mark.parametrize(("default", "given", "kept"), [
    ("0.35", None, [0.5]),  # the deployment's default
    (None, None, [0.5, 0.32]),  # none deployed: predict's 0.3
    ("nan", None, [0.5, 0.32]),  # refused, so 0.3 too
    ("0.35", 0.0, [0.5, 0.32, 0.1]),  # an explicit threshold wins, 0.0 included
])
def test_detect_default_threshold(monkeypatch, image, default, given, kept):
    detector = connect(monkeypatch, params(**({} if default is None
                                              else {"default_score_threshold": default})))
    served = Detections(torch.zeros(3, 4), torch.tensor([0.5, 0.32, 0.1]),
                        torch.zeros(3, dtype=torch.long))
    monkeypatch.setattr(detector, "detect_encoded", lambda encoded: [served] * len(encoded))
    [det] = detector.detect([image], score_threshold=given)
    assert det.scores.tolist() == pytest.approx(kept)
