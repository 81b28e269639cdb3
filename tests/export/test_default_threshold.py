"""The default score threshold an export records: the checkpoint's measured best-F1 confidence
(``metrics.best_f1_threshold``), embedded in the exported file by the pipeline's export step,
and nothing (not a made-up 0.3) when training measured none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from damo_core.export.common import DEFAULT_THRESHOLD_KEY, score_threshold_or_none
from damo_core.export.formats import load_source, measured_threshold
from damo_core.serve.exported import read_embedded_metadata
from damo_core.steps import export
from damo_core.train.checkpoint_io import atomic_save, model_meta
from tests.export.conftest import SIZE, trained_ish

pytest.importorskip("onnx")

MEASURED = 0.42


def checkpoint(path: Path, metrics: dict[str, Any]) -> Path:
    """The trainer's checkpoint layout with the given val metrics."""
    model = trained_ish("damoyolo_ns")
    atomic_save({**model_meta(model, ["a", "b", "c", "d"], SIZE), "model": model.state_dict(),
                 "ema": None, "epoch": 0, "metrics": metrics}, path)
    return path


@pytest.mark.parametrize(("value", "expected"), [
    (0.42, 0.42), (0, 0.0), (1, 1.0), ("0.5", 0.5),
    (float("nan"), None), ("nan", None), (float("inf"), None), (-0.01, None), (1.5, None),
    (True, None), (None, None), ("high", None), ([0.3], None),
])
def test_score_threshold_or_none(value, expected):
    assert score_threshold_or_none(value) == expected


def test_measured_threshold_has_no_fallback():
    assert measured_threshold({"metrics": {"best_f1_threshold": MEASURED, "best_f1": 0.6}}) \
        == MEASURED
    for meta in ({}, {"metrics": {}}, {"metrics": None},
                 {"metrics": {"best_f1_threshold": float("nan")}}):
        assert measured_threshold(meta) is None, meta


def test_export_step_embeds_the_measured_threshold(tmp_path):
    weights = checkpoint(tmp_path / "best.pt",
                         {"best_f1_threshold": MEASURED, "best_f1": 0.6})
    source = load_source(weights)
    assert source.default_score_threshold == MEASURED
    meta = export.run(weights, tmp_path / "onnx", fmt="onnx")
    embedded = read_embedded_metadata(Path(meta["path"]), "onnx")
    assert float(embedded[DEFAULT_THRESHOLD_KEY]) == MEASURED
    pytest.importorskip("openvino")  # the IR copies the ONNX metadata (TensorRT's JSON too)
    meta = export.run(weights, tmp_path / "ov", fmt="openvino")
    embedded = read_embedded_metadata(Path(meta["path"]), "openvino")
    assert float(embedded[DEFAULT_THRESHOLD_KEY]) == MEASURED


def test_export_without_measured_threshold_records_none(tmp_path):
    weights = checkpoint(tmp_path / "best.pt", {})
    assert load_source(weights).default_score_threshold is None
    meta = export.run(weights, tmp_path / "onnx", fmt="onnx")
    assert DEFAULT_THRESHOLD_KEY not in read_embedded_metadata(Path(meta["path"]), "onnx")
    random_init = load_source(model_name="damoyolo_ns")
    assert random_init.default_score_threshold is None
