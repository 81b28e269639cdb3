"""ONNX export: exported graph vs the fused PyTorch graph, end2end NMS vs postprocess."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from damo_core.eval.postprocess import postprocess  # noqa: E402
from damo_core.export import onnx as onnx_export  # noqa: E402
from damo_core.export.wrapper import ExportModel, NonMaxSuppression  # noqa: E402
from damo_core.models import Detector  # noqa: E402

SCORE_TOL, BOX_TOL = 1e-3, 1e-2


@pytest.fixture(scope="module")
def raw_onnx(ns_model: Detector, batch: torch.Tensor,
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx")
    return onnx_export.export(ns_model, out, image_size=batch.shape[-1], dynamic_batch=True,
                              class_names=["a", "b", "c", "d"])


def _max_diffs(model: Detector, path: Path, x: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        scores, boxes = ExportModel(model).eval()(x)
    got_scores, got_boxes = onnx_export.load_runner(path, threads=1)(x.numpy())
    assert got_scores.shape == tuple(scores.shape) and got_boxes.shape == tuple(boxes.shape)
    return (float(np.abs(got_scores - scores.numpy()).max()),
            float(np.abs(got_boxes - boxes.numpy()).max()))


def test_onnx_matches_fused_pytorch_with_dynamic_batch(ns_model: Detector, raw_onnx: Path,
                                                       batch: torch.Tensor) -> None:
    assert raw_onnx.name == "damoyolo_ns_128_fp32.onnx"
    x = batch
    # Traced at batch 2: batches 1 and 3 prove the batch axis really is dynamic.
    for x_b in (x[:1], torch.cat([x, x[:1]])):
        score_diff, box_diff = _max_diffs(ns_model, raw_onnx, x_b)
        assert score_diff <= SCORE_TOL and box_diff <= BOX_TOL, (len(x_b), score_diff, box_diff)


def test_metadata_describes_the_model(raw_onnx: Path, batch: torch.Tensor) -> None:
    meta = onnx_export.read_metadata(raw_onnx)
    assert meta["model_name"] == "damoyolo_ns"
    assert meta["image_size"] == str(batch.shape[-1])
    assert json.loads(meta["class_names"]) == ["a", "b", "c", "d"]
    assert meta["opset"] == "17" and meta["end2end"] == "False"


def test_tiny_model_parity(make_model: Callable[[str], Detector], batch: torch.Tensor,
                           tmp_path: Path) -> None:
    model = make_model("damoyolo_t")
    path = onnx_export.export(model, tmp_path, image_size=batch.shape[-1], simplify=False)
    score_diff, box_diff = _max_diffs(model, path, batch[:1])
    assert score_diff <= SCORE_TOL and box_diff <= BOX_TOL, (score_diff, box_diff)


def _as_set(boxes: np.ndarray, labels: np.ndarray) -> set[tuple[int, ...]]:
    """Detections as hashable (class, box rounded to 0.1 px) tuples."""
    return {(int(c), *np.round(b, 1).tolist()) for b, c in zip(boxes, labels, strict=True)}


def _with_nms_inputs(path: Path) -> tuple[object, list[str]]:
    """An ORT session of the end2end file that also outputs the tensors NMS consumed."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    nms = next(n for n in proto.graph.node if n.op_type == "NonMaxSuppression")
    extra = [nms.input[0], nms.input[1]]  # boxes [B, N, 4], scores [B, C, N]
    proto.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in extra)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"]), extra


def _check_against(expected: list, outputs: list[np.ndarray], k: int) -> None:
    num, det_boxes, det_scores, det_classes = outputs[:4]
    for i, want in enumerate(expected):
        n = int(num[i, 0])
        assert 0 < n == len(want) < k  # below k: no cut-off ties to worry about
        got = _as_set(det_boxes[i, :n], det_classes[i, :n])
        assert got == _as_set(want.boxes.numpy(), want.labels.numpy())
        np.testing.assert_allclose(det_scores[i, :n], want.scores.numpy(), atol=1e-6)
        assert (det_classes[i, n:] == -1).all() and (det_scores[i, n:] == 0).all()


def test_end2end_onnx_matches_postprocess(ns_model: Detector, batch: torch.Tensor,
                                          tmp_path: Path) -> None:
    """The exported NMS + top-K gives exactly what postprocess gives on the same scores.

    "Same scores" matters: ONNX Runtime's scores differ from PyTorch's by float32 noise
    (~1e-4 on this model), enough to move a few pairs across the 0.03 threshold, so the
    exact comparison feeds postprocess the very tensors the exported NMS consumed, and the
    comparison with PyTorch end to end allows those few borderline pairs.
    """
    k = 300
    path = onnx_export.export(ns_model, tmp_path, image_size=batch.shape[-1], end2end=True,
                              dynamic_batch=True, max_detections=k, simplify=False)
    wrapper = ExportModel(ns_model, end2end=True, max_detections=k).eval()
    nms = {"score_threshold": wrapper.score_threshold, "iou_threshold": wrapper.iou_threshold,
           "max_detections": k, "pre_nms_topk": 0}
    x = batch
    session, _ = _with_nms_inputs(path)
    outputs = session.run(None, {"images": x.numpy()})
    assert outputs[0].dtype == np.int32 and outputs[3].dtype == np.int32
    assert outputs[0].shape == (2, 1) and outputs[1].shape == (2, k, 4)
    nms_boxes, nms_scores = torch.from_numpy(outputs[4]), torch.from_numpy(outputs[5])
    _check_against(postprocess(nms_scores.transpose(1, 2), nms_boxes, **nms), outputs, k)
    with torch.no_grad():  # eager end2end: the same numerics as eager decode, so exact too
        scores, boxes = ExportModel(ns_model).eval()(x)
        eager = [t.numpy() for t in wrapper(x)]
    reference = postprocess(scores, boxes, **nms)
    _check_against(reference, eager, k)
    for i, want in enumerate(reference):  # ONNX vs PyTorch end to end
        n = int(outputs[0][i, 0])
        got = _as_set(outputs[1][i, :n], outputs[3][i, :n])
        ref = _as_set(want.boxes.numpy(), want.labels.numpy())
        assert len(got & ref) / len(got | ref) >= 0.95
    meta = onnx_export.read_metadata(path)
    assert meta["end2end"] == "True" and meta["max_detections"] == str(k)


def test_eager_nms_caps_per_class_and_is_strict() -> None:
    boxes = torch.tensor([[[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50],
                           [0, 0, 10, 10.5]]], dtype=torch.float32)
    scores = torch.tensor([[[0.9, 0.8, 0.5, 0.85], [0.3, 0.05, 0.0, 0.0]]])  # [1, C=2, N=4]
    selected = NonMaxSuppression.apply(boxes, scores, 2, 0.5, 0.05)
    rows = {tuple(r) for r in selected.tolist()}
    # class 0: box 3 suppressed by box 0, cap 2 drops box 2; class 1: 0.05 is not > 0.05
    assert rows == {(0, 0, 0), (0, 0, 1), (0, 1, 0)}


def test_export_does_not_touch_the_callers_model(ns_model: Detector) -> None:
    before = {k: v.clone() for k, v in ns_model.state_dict().items()}
    ExportModel(ns_model)
    after = ns_model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
