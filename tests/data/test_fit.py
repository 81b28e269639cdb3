"""The one image fit (``damo_core.data.fit``): geometry of both modes on non-square images, the
exact forward/inverse box mapping, the float32 row Triton carries, and the mode recorded in
checkpoints and exports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from damo_core.data.fit import (
    FIT_MODES,
    LEGACY_FIT,
    Placement,
    check_fit,
    fit_from_keep_ratio,
    fit_image,
    fit_planes,
    model_fit,
    resample,
    set_model_fit,
)
from damo_core.errors import UserInputError
from damo_core.models import build_model
from damo_core.train.checkpoint_io import atomic_save, load_trained, model_meta

SHAPES = [(96, 128), (72, 128), (128, 72), (61, 203)]  # 4:3, 16:9, portrait, odd sizes


@pytest.mark.parametrize("fit", FIT_MODES)
@pytest.mark.parametrize("hw", SHAPES)
def test_box_mapping_round_trips(fit: str, hw: tuple[int, int]) -> None:
    h, w = hw
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    canvas, placement = fit_image(image, 128, fit)
    assert canvas.shape == (128, 128, 3) and placement.orig_size == (h, w)
    boxes = np.array([[0, 0, w, h], [3.5, 2.25, w / 2, h - 1]], np.float32)
    into = placement.to_input(boxes)
    left, top = placement.pad
    ch, cw = placement.content_size
    np.testing.assert_allclose(into[0], [left, top, left + cw, top + ch], atol=1e-4)
    np.testing.assert_allclose(placement.to_original(into), boxes, atol=1e-4)
    as_tensor = placement.to_original(placement.to_input(torch.from_numpy(boxes)))
    np.testing.assert_allclose(as_tensor.numpy(), boxes, atol=1e-4)


def test_modes_differ_only_where_they_should() -> None:
    image = np.zeros((72, 128, 3), np.uint8)
    _, boxed = fit_image(image, 128, "letterbox")
    assert boxed == Placement((72, 128), (72, 128), (0, 28))  # no resize, centred
    canvas, stretched = fit_image(image, 128, "stretch")
    assert stretched == Placement((72, 128), (128, 128)) and stretched.scale == (1.0, 128 / 72)
    assert not (canvas == 114).any()
    _, odd = fit_image(np.zeros((61, 203, 3), np.uint8), 128, "letterbox")
    assert odd.content_size == (38, 128) and odd.pad == (0, 45)  # rest (45) goes to the bottom


def test_inverse_clips_to_the_image() -> None:
    placement = Placement((100, 120), (50, 60), (10, 20))  # scale 0.5, padded
    preds = np.array([[-10.0, 5.0, 90.0, 200.0], [0.0, 0.0, 10.0, 10.0]], np.float32)
    back = placement.to_original(preds)
    np.testing.assert_allclose(back, [[0, 0, 120, 100], [0, 0, 0, 0]])
    np.testing.assert_allclose(placement.to_original(torch.from_numpy(preds)).numpy(), back)
    assert placement.to_original(preds, clip=False)[0, 0] == -40.0


def test_placement_row_is_exact_in_float32() -> None:
    """What Triton's preprocess sends its postprocess: integers, so the server rebuilds the very
    placement (and scales) the local path uses."""
    _, placement = fit_image(np.zeros((61, 203, 3), np.uint8), 128, "letterbox")
    row = np.asarray(placement.to_row(), np.float32)
    assert Placement.from_row(row) == placement
    assert Placement.from_row(row).scale == placement.scale
    with pytest.raises(ValueError, match="placement row"):
        Placement.from_row([1.0, 2.0, 3.0])


def test_mode_names_and_keep_ratio() -> None:
    assert fit_from_keep_ratio(True) == "letterbox" and fit_from_keep_ratio(False) == "stretch"
    with pytest.raises(UserInputError, match="unknown image fit 'squash'"):
        check_fit("squash")
    model = torch.nn.Identity()
    assert model_fit(model) == LEGACY_FIT  # zoo model: never recorded one
    set_model_fit(model, "stretch")
    assert model_fit(model) == "stretch" and model_fit(model, "letterbox") == "letterbox"


@pytest.fixture(scope="module")
def stretched_model() -> torch.nn.Module:
    model = build_model("damoyolo_ns", num_classes=2).eval()
    set_model_fit(model, "stretch")
    return model


def _save(model: torch.nn.Module, path: Path, **extra: object) -> Path:
    meta = {**model_meta(model, ["a", "b"], 64), **extra}
    atomic_save({**meta, "model": model.state_dict(), "ema": None}, path)
    return path


def test_checkpoint_records_and_restores_the_mode(stretched_model, tmp_path: Path) -> None:
    path = _save(stretched_model, tmp_path / "best.pt")
    model, meta = load_trained(path)
    assert meta["fit"] == "stretch" and model_fit(model) == "stretch"
    old = tmp_path / "old.pt"  # a checkpoint from before the field: the legacy mode
    ckpt = {k: v for k, v in torch.load(path, weights_only=True).items() if k != "fit"}
    atomic_save(ckpt, old)
    model, meta = load_trained(old)
    assert meta["fit"] == LEGACY_FIT == model_fit(model)
    atomic_save({**ckpt, "fit": "squash"}, tmp_path / "bad.pt")
    with pytest.raises(UserInputError, match=r"bad\.pt: field fit"):
        load_trained(tmp_path / "bad.pt")


def test_export_and_repository_carry_the_mode(stretched_model, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from damo_core.export.formats import export_model
    from damo_core.export.onnx import read_metadata
    from damo_core.serve.exported import ExportedModel

    path = export_model(stretched_model, "onnx", tmp_path / "onnx", image_size=64,
                        class_names=["a", "b"])
    assert read_metadata(path)["fit"] == "stretch"
    assert ExportedModel.from_dir(path.parent).fit == "stretch"
    engine_dir = tmp_path / "trt"  # an engine's metadata is the JSON beside it
    engine_dir.mkdir()
    (engine_dir / "m.engine").write_bytes(b"engine")
    (engine_dir / "m.json").write_text(json.dumps({**read_metadata(path), "fit": "letterbox"}))
    assert ExportedModel.from_dir(engine_dir).fit == "letterbox"


@pytest.mark.parametrize("src, out", [((480, 640), (312, 416)), ((150, 200), (312, 416)),
                                      ((1080, 1920), (234, 416)), ((97, 33), (96, 40)),
                                      ((417, 416), (416, 416))])
def test_resample_is_pillows_bilinear_filter(src: tuple[int, int], out: tuple[int, int]) -> None:
    """The resize computes Pillow's anti-aliased bilinear filter (what models trained before it
    saw), up to rounding: within 1 of 255; under 1 % of pixels differ when both axes shrink,
    more where an axis is enlarged (97x33 to 96x40: a quarter)."""
    image = np.random.default_rng(1).integers(0, 256, (*src, 3), dtype=np.uint8)
    image.flags.writeable = False  # as Pillow's arrays are
    (h, w) = out
    ours = resample(image, w, h).astype(int)
    pillow = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
    diff = np.abs(ours - pillow.astype(int))
    assert ours.shape == (h, w, 3) and diff.max() <= 1
    if h <= src[0] and w <= src[1]:
        assert (diff > 0).mean() < 0.01


@pytest.mark.parametrize("fit", FIT_MODES)
@pytest.mark.parametrize("hw", SHAPES)
def test_float_planes_are_the_fitted_image(fit: str, hw: tuple[int, int]) -> None:
    """The float input built in one pass is exactly the uint8 fit, transposed."""
    image = np.random.default_rng(2).integers(0, 256, (*hw, 3), dtype=np.uint8)
    canvas, placement = fit_image(image, 128, fit)
    planes, same = fit_planes(image, 128, fit, dtype=torch.float32)
    assert same == placement and planes.dtype == torch.float32 and planes.is_contiguous()
    assert canvas.flags.c_contiguous
    np.testing.assert_array_equal(planes.numpy(), canvas.transpose(2, 0, 1).astype(np.float32))
