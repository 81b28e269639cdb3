"""``damo infer`` on folders, patterns and videos, without a Triton server: a stand-in
detector replaces the gRPC client (the real server is tested in tests/serve/test_triton.py).

The stand-in is :class:`TritonDetector` itself with the network taken out: its own ``detect``
(file bytes, batching, the score rule) runs, and only ``detect_encoded`` (one request) is
replaced, recording every request and answering each picture with a confident box (0.9) and
a weak one (0.4), so which threshold was applied shows in what is kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import av
import pytest
import torch
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.eval.postprocess import Detections
from damo_core.serve import client
from damo_core.serve.codec import decode_image
from tests.eval.test_predict_media import make_nested_images, make_video

DETECTION_FIELDS = {"box", "score", "label", "class_name"}


class FakeTriton(client.TritonDetector):
    """A deployment with ``max_batch_size`` 4, two classes and, unless ``stored`` is None, a
    default threshold of 0.5 in its config."""

    made: list[FakeTriton] = []
    stored: float | None = 0.5

    def __init__(self, url: str, model: str, *, timeout: float = 30.0) -> None:  # no gRPC
        self.url, self.model, self.timeout = url, model, timeout
        self.max_batch_size, self.class_names = 4, ["circle", "square"]
        if self.stored is not None:
            self.default_score_threshold = self.stored
        self.requests: list[list[bytes]] = []
        FakeTriton.made.append(self)

    def detect_encoded(self, encoded: Sequence[bytes]) -> list[Detections]:
        assert len(encoded) <= self.max_batch_size
        self.requests.append(list(encoded))
        found = []
        for data in encoded:
            h, w = decode_image(data).shape[:2]
            boxes = torch.tensor([[w / 4, h / 4, 3 * w / 4, 3 * h / 4], [0.0, 0.0, 4.0, 4.0]])
            found.append(Detections(boxes, torch.tensor([0.9, 0.4]), torch.tensor([1, 0])))
        return found

    def close(self) -> None:
        pass


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeTriton]:
    FakeTriton.made = []
    monkeypatch.setattr(client, "TritonDetector", FakeTriton)
    return FakeTriton


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Nested images and, in ``c/``, a 3 s video at 10 fps."""
    root = make_nested_images(tmp_path / "photos")
    make_video(root / "c" / "clip.avi")
    return root


def _infer(*args: str) -> Result:
    return CliRunner().invoke(app, ["infer", "--model", "damoyolo_ns", *args])


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_infer_on_a_folder_with_a_video(fake: type[FakeTriton], folder: Path,
                                        tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _infer(str(folder), "--save", str(out), "--batch", "3")
    assert result.exit_code == 0, result.output
    (detector,) = fake.made
    sizes = [len(r) for r in detector.requests]
    assert sizes == [3] + [3] * 10  # the three images, then 30 frames three per request
    assert all(r.startswith(b"\x89PNG") for req in detector.requests[1:] for r in req)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a/b/x.png", "a/y.jpg", "c/clip.jsonl", "c/clip.mp4", "c/x.png",
                       "detections.jsonl"]
    with av.open(str(out / "c" / "clip.mp4")) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) == 30
        assert (stream.codec_context.width, stream.codec_context.height) == (96, 64)
        assert stream.average_rate == 10
    frames = _lines(out / "c" / "clip.jsonl")
    assert [f["frame"] for f in frames] == list(range(30))
    images = _lines(out / "detections.jsonl")
    assert [r["annotated"] for r in images] == ["a/b/x.png", "a/y.jpg", "c/x.png"]
    for record in frames + images:  # the deployment's stored threshold, 0.5, applied
        (det,) = record["detections"]
        assert set(det) == DETECTION_FIELDS and det["class_name"] == "square"
        assert det["score"] == pytest.approx(0.9)
    assert "score threshold 0.50, the deployed model's default" in result.output


@pytest.mark.parametrize(("stored", "conf", "kept"), [
    (None, None, 2),  # no threshold deployed: 0.3, so 0.4 is kept
    (0.5, "0.1", 2),  # --conf wins over the deployed one
    (0.5, "0.95", 0),
])
def test_infer_threshold(fake: type[FakeTriton], folder: Path, monkeypatch: pytest.MonkeyPatch,
                         stored: float | None, conf: str | None, kept: int) -> None:
    monkeypatch.setattr(FakeTriton, "stored", stored)
    image = folder / "a" / "y.jpg"
    result = _infer(str(image), "--json", *(["--conf", conf] if conf else []))
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["image"] == str(image) and len(row["detections"]) == kept


def test_infer_keeps_the_one_image_save_file(fake: type[FakeTriton], folder: Path,
                                             tmp_path: Path) -> None:
    shown = tmp_path / "shown.png"
    result = _infer(str(folder / "a" / "y.jpg"), "--save", str(shown))
    assert result.exit_code == 0, result.output
    assert f"-> {shown}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "shown.png"]
    assert Image.open(shown).size == (96, 64)


def test_infer_patterns_without_save_print_one_line_per_image(fake: type[FakeTriton],
                                                              folder: Path) -> None:
    result = _infer(f"{folder}/**/x.png")
    assert result.exit_code == 0, result.output
    assert f"{folder / 'a/b/x.png'}: 1 objects" in result.output
    assert f"{folder / 'c/x.png'}: 1 objects" in result.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["{folder}"], "name an output folder"),  # the folder holds a video
    (["{folder}/nothing/*.png"], "the pattern matches no image or video file"),
    (["{folder}/missing.jpg"], "no such file or directory"),
    (["{folder}", "--save", "{folder}"], "would overwrite this input"),
    (["{bad}", "--save", "{out}"], "not a readable video file"),
], ids=["video-without-save", "no-match", "missing", "save-on-inputs", "corrupt-video"])
def test_infer_bad_input_fails_before_contacting_the_server(
        fake: type[FakeTriton], folder: Path, tmp_path: Path, args: list[str],
        fragment: str) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 300)
    argv = [a.format(folder=folder, bad=bad, out=tmp_path / "out") for a in args]
    result = _infer(*argv)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith("error: ") and fragment in result.output
    assert fake.made == []  # no connection was made
    assert not (tmp_path / "out").exists()
