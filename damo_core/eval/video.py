"""Video files for prediction: frames decoded one at a time, annotated frames encoded to MP4.

PyAV (FFmpeg bundled in its wheel) reads every container FFmpeg knows. Frames are streamed:
:func:`read_frames` is a generator, so predicting on an hour of video holds a batch of frames,
not the hour. The annotated copy keeps the input's frame count, frame size and (average)
frame rate, so its frame ``i`` and line ``i`` of the detections file describe the same
picture; it has no audio track. It is H.264 (``libx264``) when the bundled FFmpeg has that
encoder, else MPEG-4 Part 2 (``mpeg4``, always built in; its frame rate is rounded to a
fraction with a denominator of at most 1001, which keeps 30000/1001 and the other usual rates
exact), and is written under a temporary name and renamed when complete
(:mod:`damo_core.atomic`).

A file FFmpeg cannot read, one without a video stream and one without a single frame are each
a :class:`~damo_core.errors.UserInputError` naming the file; :func:`probe_video` finds them
before any output is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from damo_core.atomic import atomic_path
from damo_core.errors import InputNotFoundError, UserInputError

__all__ = ["Frame", "VideoInfo", "probe_video", "read_frames", "video_codec", "video_writer"]

# H.264 plays everywhere; mpeg4 is FFmpeg's own encoder, present in every build.
_CODECS = ("libx264", "mpeg4")


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its position in the video, seconds since the first frame, and its
    pixels as an ``H×W×3`` uint8 RGB array."""

    index: int
    time: float
    image: np.ndarray


@dataclass(frozen=True)
class VideoInfo:
    """What the annotated copy must match: frame size and average frame rate. ``frames`` is
    the count the container states (None when it states none); only decoding is exact."""

    width: int
    height: int
    fps: Fraction
    frames: int | None


def video_codec() -> str:
    """The encoder annotated videos use: the first of ``libx264``, ``mpeg4`` FFmpeg has."""
    available = av.codecs_available
    return next((c for c in _CODECS if c in available), _CODECS[-1])


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Any]:
    """The container, with FFmpeg's errors (not a video, truncated, unsupported) turned into
    one line naming the file."""
    if not path.is_file():
        raise InputNotFoundError(f"video file {path} does not exist")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise UserInputError(f"{path}: not a readable video file ({err})") from None
    with container:
        yield container


def _stream_info(container: Any, path: Path) -> tuple[Any, VideoInfo]:
    if not container.streams.video:
        raise UserInputError(f"{path}: the file has no video stream")
    stream = container.streams.video[0]
    fps = stream.average_rate or stream.guessed_rate
    if not fps:
        raise UserInputError(f"{path}: the video states no frame rate")
    ctx = stream.codec_context
    return stream, VideoInfo(ctx.width, ctx.height, Fraction(fps), stream.frames or None)


def _decoded(container: Any, stream: Any, path: Path) -> Iterator[Any]:
    """``container.decode(stream)`` with a corrupt packet's error naming the file."""
    try:
        yield from container.decode(stream)
    except av.error.FFmpegError as err:
        raise UserInputError(f"{path}: the video cannot be decoded ({err})") from None


def probe_video(path: str | Path) -> VideoInfo:
    """The video's size and frame rate, after checking that it opens, has a video stream and
    decodes at least one frame: every way a video can be unusable before it is read in full."""
    path = Path(path)
    with _open(path) as container:
        stream, info = _stream_info(container, path)
        if next(_decoded(container, stream, path), None) is None:
            raise UserInputError(f"{path}: the video has no frames")
    return info


def read_frames(path: str | Path) -> Iterator[Frame]:
    """The video's frames in order, decoded as they are asked for (FFmpeg's decoding threads
    hold a few frames, never the video). A video that yields no frame at all is an error, so
    no empty result is ever written for it."""
    path = Path(path)
    with _open(path) as container:
        stream, info = _stream_info(container, path)
        stream.thread_type = "AUTO"  # frame- and slice-threaded decoding where the codec can
        index, start = 0, None
        for frame in _decoded(container, stream, path):
            # the presentation time when the container has one, else the nominal one
            seconds = float(frame.time) if frame.time is not None else index / float(info.fps)
            start = seconds if start is None else start
            yield Frame(index, seconds - start, frame.to_ndarray(format="rgb24"))
            index += 1
    if index == 0:
        raise UserInputError(f"{path}: the video has no frames")


@contextlib.contextmanager
def video_writer(path: str | Path, info: VideoInfo) -> Iterator[Callable[[np.ndarray], None]]:
    """A function that appends one ``H×W×3`` uint8 RGB frame to an MP4 at ``path`` with
    ``info``'s size and frame rate. The file appears under ``path`` complete when the block
    ends; if it raises, nothing is left behind. A frame of another size is scaled to
    ``info``'s, as a player would show it."""
    codec = video_codec()
    # yuv420p is what players expect; x264 needs even sides for it, and keeps odd ones in 4:4:4
    odd = info.width % 2 or info.height % 2
    pix_fmt = "yuv444p" if odd and codec == "libx264" else "yuv420p"
    # mpeg4 allows a time base denominator (the rate's numerator) of at most 65535
    rate = info.fps if codec == "libx264" else info.fps.limit_denominator(1001)
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = info.width, info.height, pix_fmt

        def write(image: np.ndarray) -> None:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if (frame.width, frame.height) != (info.width, info.height):
                frame = frame.reformat(width=info.width, height=info.height)
            container.mux(stream.encode(frame))

        yield write
        container.mux(stream.encode(None))  # flush the frames the encoder still holds
