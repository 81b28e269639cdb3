"""Drawing detections: a box and a ``"name score"`` tag per object, in a colour per class.

One place for every picture the project draws (``damo predict``'s and ``damo infer``'s
annotated copies and videos, TensorBoard's sample predictions), so a class has the same colour
everywhere. :func:`draw_boxes` draws onto a picture in memory (a video's frame);
:func:`draw_detections` reads an image, draws and writes the file atomically.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from damo_core.atomic import atomic_path
from damo_core.data.images import open_rgb
from damo_core.errors import UserInputError
from damo_core.eval.postprocess import Detections

__all__ = ["class_colour", "draw_boxes", "draw_detections"]

_GOLDEN_RATIO_CONJUGATE = 0.618033988749895


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable RGB colour per class. Hues step by the golden ratio, so consecutive class
    ids land far apart on the colour wheel however many classes there are."""
    hue = (label * _GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``background`` (Rec. 601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size``; the fixed bitmap font if FreeType is missing."""
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


def _save_format(out_path: Path) -> str:
    """Pillow format name for the output suffix, checked before any drawing work is done."""
    fmt = Image.registered_extensions().get(out_path.suffix.lower())
    if fmt is None:
        raise UserInputError(f"{out_path}: unknown image suffix {out_path.suffix!r}; use .png "
                             "or .jpg")
    return fmt


def draw_detections(
    image: str | Path | np.ndarray,
    detections: Detections,
    class_names: Sequence[str],
    out_path: str | Path,
    *,
    line_width: int | None = None,
) -> Path:
    """Draw each box with a ``"name score"`` tag in its class colour and write the result to
    ``out_path`` atomically (format from the suffix). Boxes are in original-image pixels.

    ``image`` is a file, or an already decoded ``H×W×3`` uint8 RGB array (a dataset's sample,
    so an S3 image is not fetched twice); the array is copied, never drawn on."""
    out_path = Path(out_path)
    fmt = _save_format(out_path)
    canvas = (Image.fromarray(image).convert("RGB") if isinstance(image, np.ndarray)
              else open_rgb(image))
    draw_boxes(canvas, detections, class_names, line_width=line_width)
    save_kwargs = {"quality": 95} if fmt == "JPEG" else {}
    with atomic_path(out_path) as tmp:
        canvas.save(tmp, format=fmt, **save_kwargs)
    return out_path


def draw_boxes(
    canvas: Image.Image,
    detections: Detections,
    class_names: Sequence[str],
    *,
    line_width: int | None = None,
) -> Image.Image:
    """Draw :func:`draw_detections`' boxes and tags onto ``canvas`` (RGB) in place and return
    it: the drawing alone, for pictures that are not written as files (a video's frames)."""
    lw = line_width or max(2, round(min(canvas.size) / 200))
    font = _font(max(10, 5 * lw + 2))
    draw = ImageDraw.Draw(canvas)
    for box, score, label in zip(
        detections.boxes.tolist(),
        detections.scores.tolist(),
        detections.labels.tolist(),
        strict=True,
    ):
        colour = class_colour(int(label))
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        x1, y1, x2, y2 = box
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=colour, width=lw)
        text = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        # Tag sits above the box, or inside its top edge when the box touches the image top.
        ty = y1 - th - 2 * lw if y1 - th - 2 * lw >= 0 else y1
        draw.rectangle((x1, ty, x1 + tw + 2 * lw, ty + th + 2 * lw), fill=colour)
        draw.text((x1 + lw - left, ty + lw - top), text, fill=_text_colour(colour), font=font)
    return canvas
