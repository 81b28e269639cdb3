"""Deterministic synthetic detection dataset (COCO format) for tests, demos and smoke training.

Why it exists: the project needs a small dataset that is bundled-by-recipe (no download),
exercises the hard parts of detection -- scale spread across COCO's small/medium/large area
ranges, partial occlusion, background clutter and non-class distractors -- and is exactly
reproducible, so a failing test or a training regression can be replayed bit for bit.

Each class is a distinct (shape, colour) pair. Objects are painted in random order into an
RGB canvas and a per-pixel instance mask; afterwards every object's *visible* pixels decide
its box (tight bbox of what can be seen) and whether it is annotated at all (an object more
than 60 % hidden is dropped, as a human labeller would). All randomness comes from
``numpy.random.Generator`` instances derived from ``seed``; nothing touches global RNG state.

Area buckets are fractions of the image area chosen so that, at the default 256 px image
size, unoccluded objects land in COCO's absolute ranges (small < 32**2 <= medium < 96**2 <=
large); at other sizes they keep the same *relative* spread. That is the ``coco`` object
scale. The ``coarse`` one draws object areas between 3 % and 26 % of the image, for short
CPU runs at small inputs (the local pipeline trains at 96 px, where ``coco``'s small objects
are 6-11 px and barely learnable in a few minutes).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from damo_core.errors import OutputExistsError, UserInputError

__all__ = [
    "AREA_BUCKETS",
    "OBJECT_SCALES",
    "ObjectScale",
    "ClassSpec",
    "MIN_VISIBILITY",
    "RenderedImage",
    "SHAPES",
    "SynthObject",
    "annotate_visible",
    "class_specs",
    "generate",
    "image_hw",
    "render_image",
    "scale_named",
    "shape_mask",
]

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "diamond",
    "star",
    "hexagon",
)
# Nine saturated colours: 9 is coprime with 8 shapes, so (shape, colour) pairs stay unique
# for up to lcm(8, 9) = 72 classes when both are cycled.
COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (220, 40, 40)),
    ("green", (40, 180, 60)),
    ("blue", (40, 80, 225)),
    ("yellow", (235, 215, 40)),
    ("magenta", (215, 50, 205)),
    ("cyan", (40, 205, 215)),
    ("orange", (245, 140, 25)),
    ("purple", (115, 45, 170)),
    ("white", (248, 248, 248)),
)
MAX_CLASSES = len(SHAPES) * len(COLOURS)

# (low, high) object area as a fraction of image area, and how often each bucket is drawn.
AREA_BUCKETS: dict[str, tuple[float, float]] = {
    "small": (0.004, 0.014),
    "medium": (0.018, 0.12),
    "large": (0.16, 0.26),
}
_BUCKET_PROBS = (0.45, 0.42, 0.13)


@dataclass(frozen=True)
class ObjectScale:
    """Where object areas come from: (low, high) fractions of the image area per bucket, and
    how often each bucket is drawn."""

    buckets: tuple[tuple[float, float], ...]
    probs: tuple[float, ...]


OBJECT_SCALES: dict[str, ObjectScale] = {
    "coco": ObjectScale(tuple(AREA_BUCKETS.values()), _BUCKET_PROBS),
    # >= 3 % of the image: at 96 px no object side below ~16 px
    "coarse": ObjectScale(((0.03, 0.16), (0.16, 0.26)), (0.8, 0.2)),
}


def scale_named(name: str) -> ObjectScale:
    """The named :data:`OBJECT_SCALES` entry; an unknown name is refused with the choices."""
    if name not in OBJECT_SCALES:
        raise UserInputError(f"object_scale must be one of {sorted(OBJECT_SCALES)}, "
                             f"got {name!r}")
    return OBJECT_SCALES[name]
MIN_VISIBILITY = 0.4  # annotate only objects with at least 40 % of their pixels visible
JPEG_QUALITY = 90
_DISTRACTOR = -1  # instance-mask value for clutter that is not any class


@dataclass(frozen=True)
class ClassSpec:
    """One object class: its COCO name, the shape drawn and its RGB colour."""

    name: str
    shape: str
    colour: tuple[int, int, int]


@dataclass
class SynthObject:
    """One painted object; ``bbox`` (COCO xywh) and ``area`` describe its visible pixels."""

    label: int
    full_area: int
    visible_area: int = 0
    bbox: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def visibility(self) -> float:
        """Fraction of the object's own pixels not covered by later-painted things."""
        return self.visible_area / self.full_area if self.full_area else 0.0

    @property
    def annotated(self) -> bool:
        """Whether a labeller would still box it (enough of it is visible)."""
        return self.visible_area > 0 and self.visibility >= MIN_VISIBILITY


@dataclass
class RenderedImage:
    """A rendered image plus every object painted into it (annotated or not)."""

    image: np.ndarray  # HxWx3 uint8 RGB
    instance_mask: np.ndarray  # HxW int32: 0 background, k+1 object k, -1 distractor
    objects: list[SynthObject]


def class_specs(num_classes: int) -> list[ClassSpec]:
    """Assign each class a unique (shape, colour) pair; names stay readable ("circle", ...)."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise UserInputError(f"num_classes must be in [1, {MAX_CLASSES}], got {num_classes}")
    specs = []
    for k in range(num_classes):
        shape = SHAPES[k % len(SHAPES)]
        colour_name, colour = COLOURS[k % len(COLOURS)]
        name = shape if k < len(SHAPES) else f"{colour_name}_{shape}"
        specs.append(ClassSpec(name=name, shape=shape, colour=colour))
    return specs


def shape_mask(shape: str, height: int, width: int) -> np.ndarray:
    """Boolean HxW mask of ``shape`` filling an ``height`` x ``width`` box."""
    v = ((np.arange(height, dtype=np.float32) + 0.5) / height * 2.0 - 1.0)[:, None]
    u = ((np.arange(width, dtype=np.float32) + 0.5) / width * 2.0 - 1.0)[None, :]
    r = np.sqrt(u * u + v * v)
    if shape == "circle":
        return r <= 1.0
    if shape == "square":
        return np.ones((height, width), dtype=bool)
    if shape == "triangle":
        return np.abs(u) <= (v + 1.0) / 2.0
    if shape == "cross":
        return (np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "star":
        theta = np.arctan2(u, -v)  # one point straight up
        return r <= 0.42 + 0.58 * ((1.0 + np.cos(5.0 * theta)) / 2.0) ** 2
    if shape == "hexagon":
        s3 = math.sqrt(3.0)
        return (np.abs(v) <= s3 / 2.0) & (s3 * np.abs(u) + np.abs(v) <= s3)
    raise UserInputError(f"unknown shape {shape!r}; expected one of {SHAPES}")


@cache
def _fill_factor(shape: str) -> float:
    """Mask area / box area, so a target pixel area can be turned into a box size."""
    return float(shape_mask(shape, 128, 128).mean())


def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinearly upsample an (n, n, C) float grid to (height, width, C) float32.

    Uses Pillow's float ("F") resampler per channel: C code, fast and bit-reproducible.
    """
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(grid[:, :, c], dtype=np.float32)).resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for c in range(grid.shape[2])
    ]
    return np.stack(planes, axis=-1)


def _normal(rng: np.random.Generator, std: float, shape: tuple[int, ...]) -> np.ndarray:
    """float32 Gaussian noise (float32 sampling is ~2x faster than the float64 default)."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(std)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Low-saturation textured canvas (float32 HxWx3) so objects are not on flat colour."""
    base = (rng.uniform(80.0, 160.0) + rng.uniform(-15.0, 15.0, size=3)).astype(np.float32)
    coarse = _upsample(_normal(rng, 22.0, (5, 5, 1)), height, width)
    fine = _upsample(_normal(rng, 9.0, (24, 24, 3)), height, width)
    return fine + coarse + base


def _blob_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Irregular lumpy blob (no straight edges or symmetry) used as a non-class distractor."""
    v = ((np.arange(height) + 0.5) / height * 2.0 - 1.0)[:, None]
    u = ((np.arange(width) + 0.5) / width * 2.0 - 1.0)[None, :]
    theta = np.arctan2(v, u)
    radius = np.full_like(theta, 0.7)
    for k in (2, 3, 5):
        radius = radius + rng.uniform(0.05, 0.15) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.sqrt(u * u + v * v) <= radius


def _sample_size(
    rng: np.random.Generator, shape: str, image_hw: tuple[int, int], scale: ObjectScale
) -> tuple[int, int]:
    """Pick an area bucket (a fraction of the image area), then a (h, w) box whose *mask* area
    hits a log-uniform target; neither side exceeds 0.9 of the image's shorter side."""
    bucket = rng.choice(len(scale.buckets), p=scale.probs)
    low, high = scale.buckets[bucket]
    area = math.exp(rng.uniform(math.log(low), math.log(high))) * image_hw[0] * image_hw[1]
    side = math.sqrt(area / _fill_factor(shape))
    aspect = math.exp(rng.uniform(-0.15, 0.15))
    limit = 0.9 * min(image_hw)
    h = int(round(min(max(side * aspect, 6.0), limit)))
    w = int(round(min(max(side / aspect, 6.0), limit)))
    return h, w


def _place(
    rng: np.random.Generator,
    h: int,
    w: int,
    image_hw: tuple[int, int],
    centres: Sequence[tuple[float, float]],
) -> tuple[int, int]:
    """Top-left corner keeping the box inside the image; often near an earlier object so
    that occlusion actually happens."""
    if centres and rng.random() < 0.4:
        cy, cx = centres[int(rng.integers(len(centres)))]
        cy += rng.normal(0.0, 0.35 * h)
        cx += rng.normal(0.0, 0.35 * w)
    else:
        cy, cx = rng.uniform(0, image_hw[0]), rng.uniform(0, image_hw[1])
    y0 = int(np.clip(round(cy - h / 2), 0, image_hw[0] - h))
    x0 = int(np.clip(round(cx - w / 2), 0, image_hw[1] - w))
    return y0, x0


def _paint(
    canvas: np.ndarray,
    inst: np.ndarray,
    mask: np.ndarray,
    corner: tuple[int, int],
    pixels: np.ndarray,
    value: int,
) -> None:
    """Write ``pixels`` (N x 3) and instance id ``value`` where ``mask`` is set."""
    y0, x0 = corner
    h, w = mask.shape
    canvas[y0 : y0 + h, x0 : x0 + w][mask] = pixels
    inst[y0 : y0 + h, x0 : x0 + w][mask] = value


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` px of its border (4-neighbour erosion)."""
    inner = mask.copy()
    for _ in range(width):
        eroded = inner.copy()
        eroded[1:] &= inner[:-1]
        eroded[:-1] &= inner[1:]
        eroded[:, 1:] &= inner[:, :-1]
        eroded[:, :-1] &= inner[:, 1:]
        eroded[[0, -1], :] = False
        eroded[:, [0, -1]] = False
        inner = eroded
    return mask & ~inner


def _draw_object(
    rng: np.random.Generator,
    scene: RenderedImage,
    canvas: np.ndarray,
    spec: ClassSpec,
    label: int,
    centres: list[tuple[float, float]],
    scale: ObjectScale,
) -> None:
    """Paint one class instance and record its full area.

    Colour is jittered and shaded; a dark outline keeps overlapping same-class objects
    visually separable, so every annotated instance is one a person could box.
    """
    image_hw = (canvas.shape[0], canvas.shape[1])
    h, w = _sample_size(rng, spec.shape, image_hw, scale)
    y0, x0 = _place(rng, h, w, image_hw, centres)
    mask = shape_mask(spec.shape, h, w)
    count = int(mask.sum())
    colour = np.asarray(spec.colour, np.float32) + _normal(rng, 8.0, (3,))
    pixels = colour + _normal(rng, 6.0, (count, 1))
    pixels[_outline(mask, max(1, min(h, w) // 32))[mask]] *= np.float32(0.45)
    _paint(canvas, scene.instance_mask, mask, (y0, x0), pixels, len(scene.objects) + 1)
    scene.objects.append(SynthObject(label=label, full_area=count))
    centres.append((y0 + h / 2, x0 + w / 2))


def _draw_distractor(rng: np.random.Generator, scene: RenderedImage, canvas: np.ndarray) -> None:
    """Paint a desaturated, heavily textured blob: clutter that must not be detected."""
    height, width = canvas.shape[:2]
    side = min(height, width)
    h = int(rng.integers(max(6, side // 20), max(8, side // 4)))
    w = int(np.clip(h * math.exp(rng.uniform(-0.5, 0.5)), 6, width - 1))
    y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    mask = _blob_mask(rng, h, w)
    grey = (rng.uniform(50.0, 200.0) + rng.uniform(-12.0, 12.0, size=3)).astype(np.float32)
    texture = _normal(rng, 18.0, (int(mask.sum()), 1))
    _paint(canvas, scene.instance_mask, mask, (y0, x0), grey + texture, _DISTRACTOR)


def annotate_visible(instance_mask: np.ndarray, objects: Sequence[SynthObject]) -> None:
    """Fill each object's visible area and tight visible-pixel bbox from the instance mask.

    Done after all painting because later objects (and distractors) may cover earlier ones.
    """
    flat = instance_mask.ravel()
    counts = np.bincount(flat[flat > 0], minlength=len(objects) + 1)
    for k, obj in enumerate(objects, start=1):
        obj.visible_area = int(counts[k])
        if obj.visible_area == 0:
            obj.bbox = (0, 0, 0, 0)
            continue
        hit = instance_mask == k
        rows = np.flatnonzero(hit.any(axis=1))
        cols = np.flatnonzero(hit.any(axis=0))
        x0, y0 = int(cols[0]), int(rows[0])
        obj.bbox = (x0, y0, int(cols[-1]) + 1 - x0, int(rows[-1]) + 1 - y0)


def render_image(
    rng: np.random.Generator,
    classes: Sequence[ClassSpec],
    size: int | tuple[int, int],
    guaranteed_label: int | None = None,
    scale: ObjectScale = OBJECT_SCALES["coco"],
) -> RenderedImage:
    """Render one cluttered scene, ``size`` square or ``(height, width)``; ``guaranteed_label``
    is painted last so it is never hidden, which lets :func:`generate` promise every class
    appears in every split. ``scale``: where the objects' areas are drawn from."""
    height, width = (size, size) if isinstance(size, int) else size
    canvas = _background(rng, height, width)
    scene = RenderedImage(np.empty(0, np.uint8), np.zeros((height, width), np.int32), [])
    plan = [int(rng.integers(len(classes))) for _ in range(int(rng.integers(3, 9)))]
    plan += [-1] * int(rng.integers(2, 5))  # distractors
    plan = [plan[i] for i in rng.permutation(len(plan))]
    if guaranteed_label is not None:
        plan.append(guaranteed_label)
    centres: list[tuple[float, float]] = []
    for label in plan:
        if label < 0:
            _draw_distractor(rng, scene, canvas)
        else:
            _draw_object(rng, scene, canvas, classes[label], label, centres, scale)
    annotate_visible(scene.instance_mask, scene.objects)
    canvas += _normal(rng, 5.0, (height, width, 1))  # luminance grain over everything
    scene.image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return scene


def _write_jpeg(image: np.ndarray, path: Path) -> None:
    """Encode one RGB uint8 image as a baseline JPEG (deterministic for a given libjpeg)."""
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY)


def _write_json(obj: object, path: Path) -> None:
    """Compact JSON with fixed key order, so identical inputs give identical bytes."""
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n", encoding="utf-8")


def image_hw(index: int, image_size: int, aspect_ratios: Sequence[float]) -> tuple[int, int]:
    """``(height, width)`` of image ``index``: its aspect ratio (width / height) is
    ``aspect_ratios[index % len]`` and its longer side ``image_size``. Indexing by the image
    (not by its position in a split) keeps the size independent of the train/val partition."""
    aspect = aspect_ratios[index % len(aspect_ratios)]
    if aspect >= 1.0:
        return round(image_size / aspect), image_size
    return image_size, round(image_size * aspect)


def _check_args(num_images: int, image_size: int, val_fraction: float, seed: int) -> None:
    """Reject arguments that would produce an empty split or shapes that cannot fit."""
    if seed < 0:
        raise UserInputError(f"seed must be >= 0, got {seed}")
    if num_images < 2:
        raise UserInputError(
            f"num_images must be >= 2 (one train and one val image), got {num_images}")
    if image_size < 32:
        raise UserInputError(f"image_size must be >= 32 pixels, got {image_size}")
    if not 0.0 < val_fraction < 1.0:
        raise UserInputError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")


def _check_aspects(aspect_ratios: Sequence[float], image_size: int) -> None:
    """Every image's shorter side must still hold the 32 px that ``image_size`` must."""
    if not aspect_ratios:
        raise UserInputError("aspect_ratios must name at least one width/height ratio")
    for aspect in aspect_ratios:
        if not (isinstance(aspect, int | float) and math.isfinite(aspect) and aspect > 0):
            raise UserInputError(f"aspect ratio {aspect!r} must be a positive number")
        if min(image_hw(0, image_size, [aspect])) < 32:
            raise UserInputError(f"aspect ratio {aspect} leaves the shorter side of a "
                                 f"{image_size} px image under 32 pixels")


def _split_indices(num_images: int, val_fraction: float, seed: int) -> dict[str, list[int]]:
    """Seeded random train/val partition; both splits get at least one image."""
    n_val = min(max(1, round(num_images * val_fraction)), num_images - 1)
    order = np.random.default_rng([seed, 0, 0]).permutation(num_images)
    return {"train": sorted(order[n_val:].tolist()), "val": sorted(order[:n_val].tolist())}


def _coco_file(
    classes: Sequence[ClassSpec], seed: int, images: list[dict], anns: list[dict]
) -> dict[str, object]:
    """A whole COCO document (no timestamps: output must be byte-reproducible)."""
    return {
        "info": {"description": "damo_core synthetic shapes", "version": "1", "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [
            {"id": k + 1, "name": c.name, "supercategory": "shape"} for k, c in enumerate(classes)
        ],
    }


def _iter_split(
    indices: Sequence[int],
    classes: Sequence[ClassSpec],
    size: int,
    seed: int,
    aspect_ratios: Sequence[float],
    scale: ObjectScale,
) -> Iterator[tuple[int, RenderedImage]]:
    """Render a split's images; the j-th image's top object has class j % K (coverage)."""
    for j, idx in enumerate(indices):
        rng = np.random.default_rng([seed, 1, idx])  # one independent stream per image
        hw = image_hw(idx, size, aspect_ratios)
        yield idx, render_image(rng, classes, hw, guaranteed_label=j % len(classes),
                                scale=scale)


def _write_split(
    root: Path,
    split: str,
    indices: Sequence[int],
    classes: Sequence[ClassSpec],
    size: int,
    seed: int,
    progress: tqdm,
    aspect_ratios: Sequence[float],
    scale: ObjectScale,
) -> None:
    """Write one split's JPEGs and its ``instances_<split>.json``."""
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True)
    images: list[dict] = []
    anns: list[dict] = []
    for idx, scene in _iter_split(indices, classes, size, seed, aspect_ratios, scale):
        name = f"{idx:06d}.jpg"
        _write_jpeg(scene.image, image_dir / name)
        height, width = scene.image.shape[:2]
        images.append({"id": idx + 1, "file_name": name, "width": width, "height": height})
        for obj in scene.objects:
            if obj.annotated:
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": idx + 1,
                        "category_id": obj.label + 1,
                        "bbox": [float(v) for v in obj.bbox],
                        "area": float(obj.visible_area),
                        "iscrowd": 0,
                    }
                )
        progress.update(1)
    _write_json(
        _coco_file(classes, seed, images, anns), root / "annotations" / f"instances_{split}.json"
    )


def _write_yaml(root: Path, classes: Sequence[ClassSpec]) -> Path:
    """Dataset descriptor with paths relative to the dataset root (relocatable)."""
    spec = {
        "path": ".",
        "train": "annotations/instances_train.json",
        "val": "annotations/instances_val.json",
        "train_images": "images/train",
        "val_images": "images/val",
        "names": [c.name for c in classes],
    }
    path = root / "dataset.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def _install(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the finished temp dir into place; an old dataset is only removed afterwards."""
    if out_dir.exists() and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    if not overwrite:
        raise OutputExistsError(f"{out_dir} already exists; pass overwrite=True to replace it")
    trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.rename(out_dir, trash / "old")
    os.rename(tmp, out_dir)
    shutil.rmtree(trash, ignore_errors=True)


def generate(
    out_dir: Path,
    *,
    num_classes: int = 4,
    num_images: int = 64,
    image_size: int = 256,
    val_fraction: float = 0.25,
    seed: int = 0,
    overwrite: bool = False,
    aspect_ratios: Sequence[float] = (1.0,),
    object_scale: str = "coco",
) -> Path:
    """Write the synthetic dataset to ``out_dir`` and return the path of its ``dataset.yaml``.

    Layout: ``images/{train,val}/*.jpg``, ``annotations/instances_{train,val}.json`` and
    ``dataset.yaml``. Everything is built in a hidden temp dir beside ``out_dir`` and renamed
    into place at the end, so an interrupted run never leaves a half-written dataset. An
    existing non-empty ``out_dir`` is an error unless ``overwrite`` is set. Same arguments
    give byte-identical files.

    ``aspect_ratios`` (width / height, e.g. ``(4 / 3, 16 / 9)``) cycle over the images, whose
    longer side is ``image_size``: non-square images show whether training, evaluation and
    serving fit inputs the same way (square ones hide it). The default is all square.
    ``object_scale`` names an :data:`OBJECT_SCALES` entry (``coco`` or ``coarse``).
    """
    _check_args(num_images, image_size, val_fraction, seed)
    _check_aspects(aspect_ratios, image_size)
    scale = scale_named(object_scale)
    classes = class_specs(num_classes)
    out_dir = Path(out_dir).absolute()
    if not overwrite and out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise OutputExistsError(f"{out_dir} already exists; pass overwrite=True to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    splits = _split_indices(num_images, val_fraction, seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset should not be
        (tmp / "annotations").mkdir()
        with tqdm(total=num_images, desc="synth", unit="img", disable=None) as progress:
            for split, indices in splits.items():
                _write_split(tmp, split, indices, classes, image_size, seed, progress,
                             aspect_ratios, scale)
        _write_yaml(tmp, classes)
        _install(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "dataset.yaml"
