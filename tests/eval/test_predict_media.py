"""``damo predict`` on what users have: a video (annotated copy with the same frames, size and
rate, one JSON line per frame), a folder of nested images (results mirror it, inputs stay
untouched, ``--out`` on the inputs is refused), patterns, and bad videos.

An untrained ``damoyolo_ns`` at 64 px with ``--conf 0`` stands in for a trained model: every
picture then has detections, which is all drawing and writing need.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import Result
from PIL import Image
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.eval import predict, predict_batches, video
from damo_core.eval.video import Frame, read_frames
from damo_core.models import Detector, build_model
from damo_core.train.checkpoint_io import atomic_save, model_meta

SIZE = 64
DETECTION_FIELDS = {"box", "score", "label", "class_name"}  # damo infer --json's


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> Detector:
    torch.manual_seed(0)
    return build_model("damoyolo_ns", num_classes=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, model: Detector) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    atomic_save({**model_meta(model, ["circle", "square"], SIZE), "model": model.state_dict(),
                 "ema": None}, path)
    return path


def picture(i: int, width: int = 96, height: int = 64) -> np.ndarray:
    """A grey frame with a white and a coloured rectangle that move with ``i``."""
    image = np.full((height, width, 3), 60, np.uint8)
    x = (3 * i) % (width - 24)
    image[10:30, x : x + 20] = 255
    image[36:56, width - 24 - x : width - 4 - x] = (200, 40, 40)
    return image


def make_video(path: Path, frames: int = 30, fps: int = 10, width: int = 96,
               height: int = 64) -> Path:
    """``frames`` frames at ``fps`` (3 s by default) with moving rectangles, MPEG-4 Part 2
    (in every FFmpeg build), in the container ``path``'s suffix names."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(picture(i, width, height), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _decode(path: Path) -> tuple[int, int, int, Fraction]:
    """Frames actually decoded, width, height and the average frame rate."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, stream.codec_context.width, stream.codec_context.height, stream.average_rate


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _invoke(checkpoint: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["predict", "--weights", str(checkpoint), "--conf", "0",
                                    *args])


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_predicts_on_a_video(checkpoint: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.avi")
    out = tmp_path / "out"
    result = _invoke(checkpoint, str(clip), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["clip.jsonl", "clip.mp4"]  # no temp file
    assert _decode(out / "clip.mp4") == (30, 96, 64, 10)
    records = _lines(out / "clip.jsonl")
    assert [r["frame"] for r in records] == list(range(30))
    assert [r["time"] for r in records] == pytest.approx([i / 10 for i in range(30)])
    assert all(r["detections"] for r in records), "score threshold 0 keeps boxes everywhere"
    for d in (d for r in records for d in r["detections"]):
        assert set(d) == DETECTION_FIELDS and d["class_name"] in ("circle", "square")
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= 96 and 0 <= y1 <= y2 <= 64
    assert f"{clip}: 30 frames -> {out / 'clip.mp4'}" in result.output


def test_frames_stream_through_the_same_loop_as_files(model: Detector, tmp_path: Path) -> None:
    """A video's frames give the boxes the same pictures give as files, and the decoder is
    read one batch ahead at most (memory for a batch, whatever the video's length)."""
    clip = make_video(tmp_path / "clip.mkv", frames=7)
    frames = list(read_frames(clip))
    files = []
    for f in frames:
        Image.fromarray(f.image).save(tmp_path / f"{f.index}.png")
        files.append(tmp_path / f"{f.index}.png")
    options = {"image_size": SIZE, "score_threshold": 0.0, "max_detections": 5, "workers": 0}
    on_files = predict(model, files, batch_size=3, **options)
    pulled = []

    def stream() -> Iterator[Frame]:
        for f in frames:
            pulled.append(f.index)
            yield f

    batches = predict_batches(model, stream(), lambda f: f.image, batch_size=3, **options)
    first, found = next(batches)
    assert [f.index for f in first] == [0, 1, 2] and pulled == [0, 1, 2]
    on_frames = found + [d for _, more in batches for d in more]
    assert pulled == list(range(7))
    for a, b in zip(on_frames, on_files, strict=True):
        torch.testing.assert_close(a.boxes, b.boxes)
        torch.testing.assert_close(a.scores, b.scores)


def make_nested_images(root: Path) -> Path:
    """``a/b/x.png``, ``a/y.jpg`` and ``c/x.png`` under ``root``: nesting, and one name twice."""
    for i, rel in enumerate(["a/b/x.png", "a/y.jpg", "c/x.png"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture(5 * i)).save(root / rel)
    return root


@pytest.fixture
def nested(tmp_path: Path) -> Path:
    return make_nested_images(tmp_path / "photos")


def test_cli_mirrors_a_folder_and_leaves_it_untouched(checkpoint: Path, nested: Path,
                                                      tmp_path: Path) -> None:
    before = _snapshot(nested)
    out = tmp_path / "out"
    result = _invoke(checkpoint, str(nested), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert _snapshot(nested) == before
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a/b/x.png", "a/y.jpg", "c/x.png", "detections.jsonl"]
    records = _lines(out / "detections.jsonl")
    assert [r["image"] for r in records] == [str(nested / r) for r in written[:3]]
    assert [r["annotated"] for r in records] == written[:3]
    assert all(r["detections"] and set(r["detections"][0]) == DETECTION_FIELDS
               for r in records)
    assert Image.open(out / "a/y.jpg").size == (96, 64)


@pytest.mark.parametrize("where", ["folder", "pattern-root"])
def test_cli_refuses_out_on_the_inputs_before_any_work(checkpoint: Path, nested: Path,
                                                       where: str) -> None:
    before = _snapshot(nested)
    source = str(nested) if where == "folder" else f"{nested}/**/*.png"
    result = _invoke(checkpoint, source, "--out", str(nested))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith("error: ") and "would overwrite this input" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert _snapshot(nested) == before  # nothing written, nothing changed
    assert sorted(p.name for p in nested.rglob("*")) == ["a", "b", "c", "x.png", "x.png",
                                                         "y.jpg"]


def test_cli_patterns_and_equal_names_from_two_roots(checkpoint: Path, nested: Path,
                                                     tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(picture(1)).save(other / "x.png")
    out = tmp_path / "out"
    result = _invoke(checkpoint, f"{nested}/**/x.png", str(other / "*.png"), "--out", str(out))
    assert result.exit_code == 0, result.output
    records = _lines(out / "detections.jsonl")
    assert [(r["image"], r["annotated"]) for r in records] == [
        (str(nested / "a/b/x.png"), "a/b/x.png"), (str(nested / "c/x.png"), "c/x.png"),
        (str(other / "x.png"), "x.png")]  # relative to each pattern's root: no collision


@pytest.mark.parametrize(("kind", "fragment"), [
    ("corrupt", "not a readable video file"),
    ("truncated", "not a readable video file"),
    ("empty", "the video has no frames"),
    ("missing", "no such file or directory"),
])
def test_cli_bad_video_is_one_line_naming_it(checkpoint: Path, tmp_path: Path, kind: str,
                                             fragment: str) -> None:
    path = tmp_path / f"{kind}.avi"
    if kind == "corrupt":
        path.write_bytes(b"not a video at all " * 50)
    elif kind == "truncated":
        data = make_video(tmp_path / "whole.avi").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        with av.open(str(path), "w") as container:  # a video stream without a frame
            stream = container.add_stream("mpeg4", rate=10)
            stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
            container.start_encoding()
    out = tmp_path / "out"
    result = _invoke(checkpoint, str(path), "--out", str(out))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output.startswith(f"error: {path}: ") and fragment in result.output
    assert not out.exists()


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_video_writer_keeps_size_rate_and_count_with_either_codec(
        codec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Odd sides (x264 needs even ones for 4:2:0) and an NTSC rate survive both encoders."""
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {codec}")
    monkeypatch.setattr(video, "video_codec", lambda: codec)
    info = video.VideoInfo(width=97, height=63, fps=Fraction(30000, 1001), frames=None)
    with video.video_writer(tmp_path / "odd.mp4", info) as write:
        for i in range(5):
            write(picture(i, 97, 63))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4"]
    assert _decode(tmp_path / "odd.mp4") == (5, 97, 63, Fraction(30000, 1001))
