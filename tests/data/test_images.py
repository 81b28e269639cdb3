"""Image decoding: deep images keep their contrast, bad files are one named error, huge images
are refused from their header, and ``damo predict`` never overwrites or loses an output."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.data.images import MAX_PIXELS_ENV, ImageDecodeError, load_rgb_array, open_rgb
from damo_core.eval import annotated_paths
from damo_core.models import build_model
from damo_core.train.checkpoint_io import atomic_save, model_meta


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width×height`` but carries no pixel data: what an attacker
    sends to make a server allocate for a huge image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_sixteen_bit_grey_png_is_rescaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    rgb = load_rgb_array(path)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    expected = np.round(ramp / 257.0).astype(np.uint8)
    assert np.abs(rgb[..., 0].astype(int) - expected).max() <= 1
    assert (rgb == 255).mean() < 0.01  # clipping made ~99 % of such an image white


def test_float_image_in_unit_range_is_scaled(tmp_path: Path) -> None:
    values = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    path = tmp_path / "float.tiff"
    Image.fromarray(values, mode="F").save(path)
    rgb = load_rgb_array(path)
    assert rgb[..., 1].max() == 255 and rgb[..., 1].min() == 0


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_pixels_are_the_rgb_conversions(tmp_path: Path, mode: str) -> None:
    """RGB files are read without a conversion; every mode gives what converting would."""
    pixels = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    path = tmp_path / f"{mode}.png"
    Image.fromarray(pixels).convert(mode).save(path)
    with Image.open(path) as im:
        expected = np.asarray(im.convert("RGB"))
    rgb = load_rgb_array(path)
    assert rgb.shape == (24, 40, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, expected)
    np.testing.assert_array_equal(np.asarray(open_rgb(path)), expected)


BAD_FILES = {
    "empty.png": b"",
    "text.jpg": b"this is not a JPEG, only named like one\n",
    "truncated.jpg": None,  # made below from a real JPEG
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_are_one_named_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    data = BAD_FILES[name]
    if data is None:
        Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "ok.jpg")
        data = (tmp_path / "ok.jpg").read_bytes()[:300]
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError, match=rf"^{path}: not a decodable image"):
        load_rgb_array(path)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="is a directory"):
        load_rgb_array(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.png does not exist"):
        load_rgb_array(tmp_path / "missing.png")


@pytest.mark.parametrize("side", [9000, 30000])  # under and over PIL's own bomb limit
def test_huge_image_refused_from_its_header(tmp_path: Path, side: int) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(ImageDecodeError, match=rf"^{path}: .*over the 64 MP limit"):
        load_rgb_array(path)


def test_pixel_cap_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "5000")
    with pytest.raises(ImageDecodeError, match=MAX_PIXELS_ENV):
        load_rgb_array(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match=rf"\${MAX_PIXELS_ENV} must be a positive integer"):
        load_rgb_array(path)


def test_annotated_paths_never_overwrite_inputs_or_each_other(tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = [out / "a.jpg", tmp_path / "x" / "b.jpg", tmp_path / "y" / "b.jpg",
              tmp_path / "c.png"]
    targets = annotated_paths(inputs, out)
    assert targets == [out / "a_2.jpg", out / "b.jpg", out / "b_2.jpg", out / "c.png"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ns = build_model("damoyolo_ns", num_classes=2).eval()
    path = tmp_path_factory.mktemp("w") / "best.pt"
    atomic_save({**model_meta(ns, ["a", "b"], 64), "model": ns.state_dict(), "ema": None}, path)
    return path


def test_predict_keeps_inputs_and_every_result(weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    out.mkdir()
    inputs = [out / "a.jpg", tmp_path / "x" / "b.jpg", tmp_path / "y" / "b.jpg"]
    for i, path in enumerate(inputs):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(path)
    before = inputs[0].read_bytes()
    result = CliRunner().invoke(app, ["predict", "--weights", str(weights),
                                      *map(str, inputs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert inputs[0].read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [
        "a.jpg", "a_2.jpg", "b.jpg", "b_2.jpg", "detections.jsonl"]


@pytest.mark.parametrize("kind", ["empty", "text", "directory", "huge"])
def test_predict_bad_image_is_one_line(weights: Path, tmp_path: Path, kind: str) -> None:
    path = {"empty": tmp_path / "e.png", "text": tmp_path / "t.jpg",
            "directory": tmp_path / "d.jpg", "huge": tmp_path / "h.png"}[kind]
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello")
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_bytes(_png_header_only(30000, 30000))
    result = CliRunner().invoke(app, ["predict", "--weights", str(weights), str(path),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith(f"error: {path}")
    assert not (tmp_path / "out").exists()


def test_serve_decoder_refuses_an_oversized_image_by_its_header() -> None:
    """What Triton's preprocess model runs on each request's bytes."""
    from damo_core.serve.codec import decode_image
    from damo_core.serve.errors import NotAnImageError

    with pytest.raises(NotAnImageError, match="^image 3 of the batch: .*over the 64 MP limit"):
        decode_image(_png_header_only(12000, 12000), "image 3 of the batch")
