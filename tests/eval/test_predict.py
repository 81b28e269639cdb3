"""Input preparation (both fits), prediction in original pixels, and drawing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from damo_core.data.fit import PAD_VALUE, Placement, set_model_fit
from damo_core.data.synth import generate
from damo_core.eval.postprocess import Detections
from damo_core.eval.predict import class_colour, draw_detections, predict
from damo_core.eval.preprocess import prepare_image
from damo_core.models.detector import build_model

# ----------------------------------------------------------------------------- prepare


def _wide_image_with_white_box() -> np.ndarray:
    """200×100 dark image with a white rectangle covering x 20..60, y 10..50."""
    image = np.full((100, 200, 3), 40, dtype=np.uint8)
    image[10:50, 20:60] = 255
    return image


def test_letterbox_places_content_centred_on_grey() -> None:
    prepared = prepare_image(_wide_image_with_white_box(), 128, "letterbox")
    tensor, info = prepared.tensor, prepared.placement
    assert tensor.shape == (3, 128, 128) and tensor.dtype == torch.float32
    assert info == Placement((100, 200), (64, 128), (0, 32))  # 200 → 128 wide, 100 → 64 tall
    assert info.scale == (0.64, 0.64)
    assert torch.all(tensor[:, :32] == PAD_VALUE) and torch.all(tensor[:, 96:] == PAD_VALUE)
    x1, y1, x2, y2 = info.to_input(torch.tensor([20.0, 10, 60, 50])).tolist()
    assert (x1, y1, x2, y2) == pytest.approx((12.8, 38.4, 38.4, 64.0))
    assert torch.all(tensor[:, int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2] > 250)
    assert torch.all(tensor[:, 34:96, 45:] == 40)  # image content right of the box


def test_stretch_fills_the_input_without_padding() -> None:
    prepared = prepare_image(_wide_image_with_white_box(), 128, "stretch")
    assert prepared.placement == Placement((100, 200), (128, 128))
    assert prepared.placement.scale == (0.64, 1.28) and prepared.orig_size == (100, 200)
    assert torch.all(prepared.tensor[:, -1] == 40) and torch.all(prepared.tensor[:, :, -1] == 40)
    x1, y1, x2, y2 = prepared.placement.to_input(torch.tensor([20.0, 10, 60, 50])).tolist()
    assert (x1, y1, x2, y2) == pytest.approx((12.8, 12.8, 38.4, 64.0))
    assert torch.all(prepared.tensor[:, int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2]
                     > 250)


def test_prepare_rejects_channel_first_arrays() -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        prepare_image(np.zeros((3, 64, 64), dtype=np.uint8), 64)


# ----------------------------------------------------------------------------- predict


class _PassThroughHead(nn.Module):
    def decode(self, outputs: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return outputs


class _FixedBoxModel(nn.Module):
    """Predicts two boxes in letterbox pixels for every image: one confident, one weak."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(name="fixed", image_size=128)
        self.head = _PassThroughHead()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        b = images.shape[0]
        boxes = torch.tensor([[32.0, 40.0, 96.0, 88.0], [0.0, 0.0, 10.0, 10.0]]).expand(b, 2, 4)
        scores = torch.tensor([[0.0, 0.9], [0.2, 0.0]]).expand(b, 2, 2)
        return scores, boxes


def test_predict_returns_boxes_in_original_pixels(tmp_path: Path) -> None:
    Image.fromarray(_wide_image_with_white_box()).save(tmp_path / "wide.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "small.png")  # upscaled ×2, no padding
    dets = predict(_FixedBoxModel(), [tmp_path / "wide.png", tmp_path / "small.png"])
    assert [len(d) for d in dets] == [1, 1]  # the 0.2 box is below the 0.3 default
    assert dets[0].labels.tolist() == [1] and dets[0].scores.tolist() == pytest.approx([0.9])
    # wide: scale 0.64, pad_top 32 → x / 0.64, (y - 32) / 0.64
    assert dets[0].boxes.tolist() == [pytest.approx([50.0, 12.5, 150.0, 87.5])]
    assert dets[1].boxes.tolist() == [pytest.approx([16.0, 20.0, 48.0, 44.0])]
    (single,) = predict(_FixedBoxModel(), tmp_path / "small.png")  # a lone path is accepted
    assert torch.equal(single.boxes, dets[1].boxes)


def test_predict_fits_by_the_models_recorded_mode(tmp_path: Path) -> None:
    """A model trained stretched (its checkpoint says so) is predicted with stretched inputs,
    and its boxes are mapped back per axis; an explicit ``fit`` overrides the model's."""
    Image.fromarray(_wide_image_with_white_box()).save(tmp_path / "wide.png")
    model = _FixedBoxModel()
    set_model_fit(model, "stretch")
    (det,) = predict(model, tmp_path / "wide.png")
    assert det.boxes.tolist() == [pytest.approx([50.0, 31.25, 150.0, 68.75])]  # / (0.64, 1.28)
    (boxed,) = predict(model, tmp_path / "wide.png", fit="letterbox")
    assert boxed.boxes.tolist() == [pytest.approx([50.0, 12.5, 150.0, 87.5])]


@pytest.fixture(scope="module")
def synth_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = generate(tmp_path_factory.mktemp("synth") / "ds", num_images=8, image_size=96).parent
    return sorted((root / "images" / "train").glob("*.jpg"))[:3]


def test_predict_with_untrained_model(synth_images: list[Path]) -> None:
    model = build_model("damoyolo_t", num_classes=4)
    dets = predict(
        model, synth_images, image_size=128, score_threshold=0.005, batch_size=2, max_detections=20
    )
    assert len(dets) == len(synth_images)
    for det in dets:
        assert 0 < len(det) <= 20
        assert det.boxes.min() >= 0 and det.boxes.max() <= 96  # clipped to the 96×96 image
        assert torch.all(det.scores > 0.005) and torch.all(det.labels < 4)


# ----------------------------------------------------------------------------- drawing


def _one_box(label: int = 1) -> Detections:
    return Detections(
        torch.tensor([[10.0, 30.0, 60.0, 70.0]]), torch.tensor([0.87]), torch.tensor([label])
    )


def test_draw_detections_marks_the_box_only(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (120, 80), (128, 128, 128)).save(src)
    out = draw_detections(src, _one_box(), ["cat", "dog"], tmp_path / "out" / "drawn.png")
    before = np.asarray(Image.open(src).convert("RGB")).astype(int)
    after = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert after.shape == before.shape
    assert tuple(after[70, 35]) == class_colour(1)  # bottom edge of the box
    assert np.any(after[10:30, 10:60] != before[10:30, 10:60])  # label tag above the box
    assert np.array_equal(after[:, 100:], before[:, 100:])  # far from the box: untouched
    assert np.array_equal(after[50, 20:50], before[50, 20:50])  # box interior: untouched
    assert [p.name for p in out.parent.iterdir()] == ["drawn.png"]  # no temp files left


def test_draw_detections_jpeg_and_empty(tmp_path: Path) -> None:
    src = tmp_path / "in.jpg"
    Image.new("RGB", (120, 80), (200, 200, 200)).save(src)
    out = draw_detections(src, _one_box(label=7), [], tmp_path / "drawn.jpg")  # unnamed class
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (120, 80)
        pixels = np.asarray(im).astype(int)
    # JPEG smears a thin line, so compare the box's bottom-edge band with the background.
    assert np.abs(pixels[68:73, 15:55] - 200).mean() > 30
    assert np.abs(pixels[:, 100:] - 200).max() < 8
    same = draw_detections(src, Detections.empty(), ["a"], tmp_path / "same.png")
    assert np.array_equal(np.asarray(Image.open(same)), np.asarray(Image.open(src)))


def test_draw_detections_rejects_unknown_suffix(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.new("RGB", (20, 20)).save(src)
    with pytest.raises(ValueError, match="unknown image suffix"):
        draw_detections(src, _one_box(), ["a", "b"], tmp_path / "out.xyz")
    assert not (tmp_path / "out.xyz").exists()


def test_class_colours_are_distinct_and_stable() -> None:
    colours = [class_colour(k) for k in range(80)]
    assert len(set(colours)) == 80
    assert class_colour(3) == colours[3]
    # Neighbouring ids must be easy to tell apart, not just different.
    for a, b in zip(colours, colours[1:], strict=False):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) > 60
