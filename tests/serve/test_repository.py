"""The repository writer without a server: config.pbtxt content parsed back with Triton's own
schema, the version layout, and the pre/postprocessing the Python models run."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tritonclient.grpc import model_config_pb2 as pb

from damo_core.eval.predict import predict
from damo_core.eval.preprocess import load_image, prepare_image
from damo_core.serve import model_config as mc
from damo_core.serve.codec import decode_image, pad_batch
from damo_core.serve.errors import NotAnImageError
from damo_core.serve.exported import ExportedModel
from damo_core.serve.python_models import postprocess_batch, preprocess_batch
from damo_core.serve.repository import (
    CONFIG,
    build_configs,
    detector_versions,
    recorded_threshold,
    write_repository,
)
from damo_core.train.checkpoint_io import load_trained
from tests.serve.conftest import CHECKPOINT_CONF, CLASSES, MODEL

NAMES = mc.ModelNames(MODEL)


def fake_export(fmt: str, *, dynamic: bool = True, size: int = 128) -> ExportedModel:
    suffix = {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".engine"}[fmt]
    return ExportedModel(Path(f"m{suffix}"), fmt, MODEL, size, tuple(CLASSES),
                         dynamic_batch=dynamic)


def parsed(model: ExportedModel, variant: str = "native", **options) -> dict:
    texts = build_configs(model, variant=variant, options=mc.ServingOptions(**options))
    return {name: mc.parse_pbtxt(text) for name, text in texts.items()}


@pytest.mark.parametrize(("fmt", "key", "value", "filename", "kind"), [
    ("onnx", "platform", "onnxruntime_onnx", "model.onnx", "KIND_CPU"),
    ("openvino", "backend", "openvino", "model.xml", "KIND_CPU"),
    ("tensorrt", "platform", "tensorrt_plan", "model.plan", "KIND_GPU"),
])
def test_native_detector_config(fmt, key, value, filename, kind):
    cfg = parsed(fake_export(fmt), max_batch_size=16, preferred_batch_sizes=(4, 16),
                 queue_delay_us=500, instances=2)[NAMES.detector]
    assert getattr(cfg, key) == value and cfg.default_model_filename == filename
    assert cfg.max_batch_size == 16
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 16]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, pb.ModelInstanceGroup.Kind.Name(g.kind))
            for g in cfg.instance_group] == [(2, kind)]
    n = (128 // 8) ** 2 + (128 // 16) ** 2 + (128 // 32) ** 2
    assert [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in cfg.input] == [
        ("images", "TYPE_FP32", [3, 128, 128])]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("scores", [n, 4]),
                                                            ("boxes", [n, 4])]
    assert cfg.version_policy.latest.num_versions == 1


@pytest.mark.parametrize("precision", ["fp32", "int8", "bf16"])
def test_native_openvino_runs_a_bf16_export_in_bf16(precision: str) -> None:
    model = dataclasses.replace(fake_export("openvino"), precision=precision)
    cfg = parsed(model)[NAMES.detector]
    hint = cfg.parameters["HINT_BF16"].string_value if "HINT_BF16" in cfg.parameters else None
    assert hint == ("YES" if precision == "bf16" else None)
    # the Python variant passes no hint: its runner reads the precision from the IR itself
    assert "HINT_BF16" not in parsed(model, variant="python")[NAMES.detector].parameters


def test_ensemble_wires_encoded_image_to_detections():
    configs = parsed(fake_export("onnx"))
    ens = configs[NAMES.ensemble]
    assert ens.platform == "ensemble"
    assert [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in ens.input] == [
        ("IMAGE", "TYPE_UINT8", [-1])]
    available = {t.name for t in ens.input}
    for step in ens.ensemble_scheduling.step:
        part = configs[step.model_name]
        assert set(step.input_map) == {t.name for t in part.input}
        assert set(step.input_map.values()) <= available, f"{step.model_name} input unproduced"
        assert set(step.output_map) == {t.name for t in part.output}
        available |= set(step.output_map.values())
    assert {t.name for t in ens.output} <= available
    assert [s.model_name for s in ens.ensemble_scheduling.step] == [
        NAMES.preprocess, NAMES.detector, NAMES.postprocess]
    post = configs[NAMES.postprocess]
    assert post.parameters["score_threshold"].string_value == "0.03"  # nano eval default
    assert post.parameters["class_names"].string_value == ",".join(CLASSES)
    assert [(t.name, list(t.dims)) for t in post.input][-1] == ("placement", [6])


def test_postprocess_carries_the_default_threshold_only_when_recorded():
    """The client default is a parameter beside (never instead of) the server's pruning
    threshold, and absent, not 0.3, when the export recorded none."""
    with_default = build_configs(fake_export("onnx"), variant="native",
                                 options=mc.ServingOptions(), default_score_threshold=0.35)
    post = mc.parse_pbtxt(with_default[NAMES.postprocess])
    assert post.parameters["default_score_threshold"].string_value == "0.35"
    assert post.parameters["score_threshold"].string_value == "0.03"  # still prunes low
    without = parsed(fake_export("onnx"))[NAMES.postprocess]
    assert "default_score_threshold" not in without.parameters
    for bad in (float("nan"), 1.5, -0.1):
        with pytest.raises(ValueError, match="default_score_threshold must be a score"):
            build_configs(fake_export("onnx"), variant="native", options=mc.ServingOptions(),
                          default_score_threshold=bad)


def test_recorded_threshold_given_wins_and_invalid_is_dropped():
    model = fake_export("onnx")  # no such file: nothing embedded to read
    assert recorded_threshold(model) is None
    assert recorded_threshold(model, {"default_score_threshold": 0.4}) == 0.4
    assert recorded_threshold(model, {"default_score_threshold": None}) is None
    with pytest.warns(UserWarning, match="'nan' is not a score threshold"):
        assert recorded_threshold(model, {"default_score_threshold": "nan"}) is None


def test_repository_writes_the_checkpoints_threshold(exported, tmp_path):
    """The export step embedded the checkpoint's best-F1 threshold in the file, so artifact
    metadata without it (the pipeline's) still deploys it."""
    given = {k: v for k, v in exported.metadata.items() if k != "default_score_threshold"}
    entry = write_repository(exported.exported_dir, tmp_path / "repo", metadata=given)
    post = mc.parse_pbtxt((entry.repo / NAMES.postprocess / CONFIG).read_text())
    assert float(post.parameters["default_score_threshold"].string_value) == CHECKPOINT_CONF


@pytest.mark.parametrize("fit", ["letterbox", "stretch"])
def test_preprocess_fits_by_the_exports_mode(fit):
    """The export's recorded fit becomes the preprocess model's parameter."""
    model = ExportedModel(Path("m.onnx"), "onnx", MODEL, 128, tuple(CLASSES), fit=fit)
    assert parsed(model)[NAMES.preprocess].parameters["fit"].string_value == fit


def test_static_batch_export_served_natively_one_at_a_time():
    configs = parsed(fake_export("onnx", dynamic=False), max_batch_size=8)
    assert {c.max_batch_size for c in configs.values()} == {1}
    python = parsed(fake_export("onnx", dynamic=False), variant="python", max_batch_size=8)
    assert {c.max_batch_size for c in python.values()} == {8}
    assert python[NAMES.detector].parameters["static_batch"].string_value == "1"


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="TensorRT engine needs the native variant"):
        build_configs(fake_export("tensorrt"), variant="python", options=mc.ServingOptions())
    with pytest.raises(ValueError, match="unknown repository variant 'gpu'"):
        build_configs(fake_export("onnx"), variant="gpu", options=mc.ServingOptions())
    with pytest.raises(ValueError, match=r"preferred_batch_sizes \[16\]"):
        mc.ServingOptions(max_batch_size=8, preferred_batch_sizes=(16,))


def test_python_repository_layout_and_versions(exported, tmp_path):
    repo = tmp_path / "repo"
    first = write_repository(exported.exported_dir, repo, metadata=exported.metadata)
    assert first.version == 1 and set(first.changed) == set(NAMES.all)
    assert sorted(p.name for p in (repo / NAMES.detector / "1").iterdir()) == [
        "model.onnx", "model.py"]
    assert (repo / NAMES.preprocess / "1" / "model.py").is_file()
    assert (repo / NAMES.ensemble / "1").is_dir()
    detector = mc.parse_pbtxt((repo / NAMES.detector / CONFIG).read_text())
    assert detector.backend == "python"
    assert detector.parameters["role"].string_value == "detector"
    assert str(Path(__import__("damo_core").__file__).parents[1]) in \
        detector.parameters["sys_path"].string_value
    second = write_repository(exported.exported_dir, repo, metadata=exported.metadata)
    assert second.version == 2 and second.changed == (NAMES.detector,)
    assert detector_versions(repo, MODEL) == [1, 2]
    assert not [p for p in (repo / NAMES.detector).iterdir() if p.name.startswith(".")]
    with pytest.raises(FileExistsError, match="versions are immutable"):
        write_repository(exported.exported_dir, repo, version=1)


def test_exported_dir_errors(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ExportedModel.from_dir(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "m.onnx").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"m\.onnx: cannot read the model's embedded metadata"):
        ExportedModel.from_dir(broken)
    (broken / "n.onnx").write_bytes(b"junk")
    with pytest.raises(ValueError, match="expected exactly one exported model file"):
        ExportedModel.from_dir(broken)
    embedded = ExportedModel.from_dir(exported.exported_dir)  # the file's own metadata
    assert embedded.model_name == MODEL and embedded.image_size == 128
    given = ExportedModel.from_dir(exported.exported_dir, {"image_size": 128.0,
                                                           "class_names": CLASSES})
    assert given.class_names == tuple(CLASSES) and given.image_size == 128


def test_padded_bytes_decode_like_files(exported, tmp_path):
    jpg = tmp_path / "a.jpg"
    Image.fromarray(load_image(exported.images[2])).save(jpg, quality=90)
    files = [exported.images[0], jpg, exported.images[2]]
    batch = pad_batch([p.read_bytes() for p in files])
    assert batch.shape == (3, max(p.stat().st_size for p in files))
    for fit in ("letterbox", "stretch"):
        out = preprocess_batch(batch, 128, fit)
        for path, image, row in zip(files, out["images"], out["placement"], strict=True):
            expected = prepare_image(load_image(path), 128, fit)
            np.testing.assert_array_equal(image, expected.tensor.numpy())
            assert list(row) == expected.placement.to_row()
    with pytest.raises(NotAnImageError, match="image 1"):
        decode_image(io.BytesIO(b"text").getvalue(), "image 1")


def test_postprocess_batch_equals_predict(exported):
    """The server's NMS step on the PyTorch model's raw outputs gives predict's detections."""
    model, meta = load_trained(exported.weights)
    prepared = preprocess_batch(pad_batch([p.read_bytes() for p in exported.images]), 128,
                                meta["fit"])
    with torch.no_grad():
        scores, boxes = model.head.decode(model(torch.from_numpy(prepared["images"])))
    out = postprocess_batch(scores.numpy(), boxes.numpy(), prepared["placement"],
                            score_threshold=0.3, iou_threshold=0.65, max_detections=100)
    expected = predict(model, exported.images, image_size=128, score_threshold=0.3,
                       workers=0)
    for i, det in enumerate(expected):
        k = int(out["num_dets"][i, 0])
        assert k == len(det)
        torch.testing.assert_close(torch.from_numpy(out["det_boxes"][i, :k]), det.boxes)
        assert out["det_classes"][i, :k].tolist() == det.labels.tolist()
        assert (out["det_classes"][i, k:] == -1).all()
