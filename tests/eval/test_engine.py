"""What ``damo predict`` and ``damo eval`` run: the fused graph (equal to the training graph's
outputs), an export through :class:`ExportedDetector` (equal to the fused graph, scored by the
same code), and the precision rules.

The ``confident_checkpoint`` (tests/conftest.py) stands in for a trained model: every image
gets confident, distinct scores, so detections and AP exist and must agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.data.synth import generate
from damo_core.errors import UserInputError
from damo_core.eval.engine import (
    ExportedDetector,
    dense_outputs,
    open_inference_model,
    runtime_precision,
)
from damo_core.eval.evaluator import evaluate
from damo_core.models.layers.repconv import RepConv
from damo_core.steps import evaluate as evaluate_step
from damo_core.steps import export as export_step
from damo_core.train.checkpoint_io import load_fused, load_trained
from tests.conftest import CONFIDENT_CLASSES, CONFIDENT_SIZE

SIZE = CONFIDENT_SIZE
CLASSES = list(CONFIDENT_CLASSES)
NO_BF16 = "model name\t: Test CPU without BF16\nflags\t\t: fpu sse2 avx2 fma\n"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(confident_checkpoint: Path) -> Path:
    return confident_checkpoint


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth"), num_classes=len(CLASSES), num_images=10,
                    image_size=SIZE, seed=0)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    for fmt in ("onnx", "openvino"):
        export_step.run(checkpoint, root / fmt, fmt=fmt)
    return {fmt: root / fmt for fmt in ("onnx", "openvino")}


def _images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 255


def test_fused_model_equals_training_graph(checkpoint: Path) -> None:
    trained, _ = load_trained(checkpoint)
    fused, meta = load_fused(checkpoint)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in trained.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert all(m.fused for m in fused.modules() if isinstance(m, RepConv))
    with torch.no_grad():
        want, got = dense_outputs(trained, _images()), dense_outputs(fused, _images())
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-3)
    assert meta["class_names"] == CLASSES


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_exported_detector_matches_fused_model(checkpoint: Path, exports: dict[str, Path],
                                                fmt: str) -> None:
    fused, _ = load_fused(checkpoint)
    exported = ExportedDetector(exports[fmt], threads=1)
    assert exported.precision == "fp32" and exported.num_classes == len(CLASSES)
    with torch.no_grad():
        want = dense_outputs(fused, _images(3))  # a static-batch export: fed one at a time
    got = dense_outputs(exported, _images(3))
    for a, b in zip(want, got, strict=True):
        assert b.shape == a.shape
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-2)
    meta = exported.meta()
    assert meta["class_names"] == CLASSES and meta["image_size"] == SIZE


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_one_images_outputs_outlive_the_next_call(exports: dict[str, Path], fmt: str) -> None:
    """A single image's outputs are the runtime's own arrays, wrapped without a copy: they
    must be the caller's, not buffers the next inference overwrites."""
    exported = ExportedDetector(exports[fmt], threads=1)
    first = dense_outputs(exported, _images(1))
    kept = [t.clone() for t in first]
    second = dense_outputs(exported, torch.zeros(1, 3, SIZE, SIZE))
    assert not torch.equal(second[0], kept[0])  # the second call computed something else
    for now, then in zip(first, kept, strict=True):
        assert torch.equal(now, then)


def test_evaluating_an_export_equals_evaluating_the_checkpoint(
        checkpoint: Path, exports: dict[str, Path], data: Path) -> None:
    fused, _ = load_fused(checkpoint)
    direct = evaluate(fused, data, image_size=SIZE, workers=0, progress=False)
    assert direct.AP50 > 0  # detections were matched: the comparison below means something
    from_ckpt = evaluate_step.run(checkpoint, data)
    from_onnx = evaluate_step.run(exports["onnx"], data)
    assert from_ckpt["format"] == "pytorch" and from_onnx["format"] == "onnx"
    assert from_onnx["precision"] == "fp32"
    for key in ("AP", "AP50"):
        assert from_ckpt[key] == pytest.approx(float(getattr(direct, key)), abs=1e-9)
        assert from_onnx[key] == pytest.approx(from_ckpt[key], abs=1e-3)


def test_int8_from_a_checkpoint_quantises_on_the_way(checkpoint: Path, data: Path) -> None:
    with open_inference_model(checkpoint, precision="int8", data=data) as (model, meta):
        assert isinstance(model, ExportedDetector) and model.export.fmt == "openvino"
        assert meta["precision"] == "int8" and model.precision == "int8"
        scores, boxes = dense_outputs(model, _images(2))
    assert scores.shape[0] == 2 and torch.isfinite(scores).all() and torch.isfinite(boxes).all()
    with pytest.raises(UserInputError, match="--data"):
        with open_inference_model(checkpoint, precision="int8"):
            pass


def test_precision_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         checkpoint: Path, exports: dict[str, Path]) -> None:
    path = tmp_path / "m.xml"
    assert runtime_precision("fp32", None, path) == "fp32"
    assert runtime_precision("fp16", None, path) == "fp32"  # weights compressed, fp32 math
    assert runtime_precision("int8", None, path) == "int8"
    assert runtime_precision("fp32", "bf16", path) == "bf16"
    with pytest.raises(UserInputError, match="--int8"):
        runtime_precision("fp32", "int8", path)
    with pytest.raises(UserInputError, match="without --int8"):
        runtime_precision("int8", "fp32", path)
    with pytest.raises(UserInputError, match="'fp64' is not a precision"):
        runtime_precision("fp32", "fp64", path)
    with pytest.raises(UserInputError, match="auto"):
        with open_inference_model(checkpoint, precision="auto"):
            pass
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(NO_BF16)
    monkeypatch.setenv("DAMO_CPUINFO", str(cpuinfo))
    for weights in (checkpoint, exports["openvino"]):
        with pytest.raises(UserInputError, match="Test CPU without BF16"):
            with open_inference_model(weights, precision="bf16"):
                pass


def test_predict_cli_on_an_export_and_bad_precision(tmp_path: Path, exports: dict[str, Path],
                                                     data: Path) -> None:
    image = sorted(data.parent.rglob("*.jpg"))[0]
    out = tmp_path / "pred"
    result = CliRunner().invoke(app, ["predict", "--weights", str(exports["openvino"]),
                                      str(image), "--out", str(out), "--conf", "0.5"])
    assert result.exit_code == 0, result.output
    assert (out / "detections.jsonl").read_text().count("\n") == 1
    assert (out / image.name).is_file()
    bad = CliRunner().invoke(app, ["predict", "--weights", str(exports["onnx"]), str(image),
                                   "--out", str(tmp_path / "bad"), "--precision", "fp12"])
    assert bad.exit_code == 2 and "'fp12' is not a precision" in bad.output
    assert not (tmp_path / "bad").exists()


def test_an_export_runs_with_one_torch_thread_and_restores_it(exports: dict[str, Path]) -> None:
    """While a CPU runtime runs the model, torch (decode, fit, NMS only) keeps one thread so
    its pool does not spin on the runtime's cores; the caller's setting comes back after."""
    torch.set_num_threads(2)
    with open_inference_model(exports["openvino"]) as (model, _):
        assert torch.get_num_threads() == 1
        assert len(dense_outputs(model, _images(1))) == 2
    assert torch.get_num_threads() == 2
