"""OpenVINO IR export: FP32 parity with the fused PyTorch graph, metadata, INT8 via NNCF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("openvino")

from damo_core.export import openvino as ov_export  # noqa: E402
from damo_core.export.wrapper import ExportModel  # noqa: E402
from damo_core.models import Detector  # noqa: E402

SCORE_TOL, BOX_TOL = 1e-3, 1e-2


def test_fp32_ir_matches_fused_pytorch(ns_model: Detector, batch: torch.Tensor,
                                       tmp_path: Path) -> None:
    path = ov_export.export(ns_model, tmp_path, image_size=batch.shape[-1], dynamic_batch=True,
                            class_names=["a", "b", "c", "d"])
    assert path.name == "damoyolo_ns_128_fp32.xml" and path.with_suffix(".bin").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.with_suffix(".bin").name,
                                                         path.name]  # no temp files left
    with torch.no_grad():
        scores, boxes = ExportModel(ns_model).eval()(batch)
    got_scores, got_boxes = ov_export.load_runner(path, threads=1, batch=2)(batch.numpy())
    assert float(np.abs(got_scores - scores.numpy()).max()) <= SCORE_TOL
    assert float(np.abs(got_boxes - boxes.numpy()).max()) <= BOX_TOL
    meta = ov_export.read_metadata(path)
    assert meta["model_name"] == "damoyolo_ns" and meta["precision"] == "fp32"
    assert json.loads(meta["class_names"]) == ["a", "b", "c", "d"]


def test_int8_needs_data_and_excludes_half(ns_model: Detector, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration images"):
        ov_export.export(ns_model, tmp_path, image_size=128, int8=True)
    with pytest.raises(ValueError, match="not several"):
        ov_export.export(ns_model, tmp_path, image_size=128, int8=True, half=True, data="x")


@pytest.mark.slow  # ~20 s: NNCF's graph matching and calibration; CI still runs it
def test_int8_ir_is_quantised_and_runs(ns_model: Detector, batch: torch.Tensor,
                                       tmp_path: Path) -> None:
    """The IR is produced, carries FakeQuantize nodes and runs; its accuracy (AP50 against
    FP32) is measured by benchmarks/export_latency.py, not here."""
    pytest.importorskip("nncf")
    import openvino as ov

    from damo_core.data.synth import generate

    data = generate(tmp_path / "synth", num_classes=4, num_images=6, image_size=128)
    path = ov_export.export(ns_model, tmp_path / "ir", image_size=batch.shape[-1], int8=True,
                            data=data, calib_count=4)
    assert path.name == "damoyolo_ns_128_int8.xml"
    ops = {op.get_type_name() for op in ov.Core().read_model(str(path)).get_ops()}
    assert "FakeQuantize" in ops
    assert ov_export.read_metadata(path)["precision"] == "int8"
    scores, boxes = ov_export.load_runner(path, threads=1)(batch[:1].numpy())
    assert scores.shape == (1, 336, 4) and boxes.shape == (1, 336, 4)
    assert np.isfinite(scores).all() and np.isfinite(boxes).all()
