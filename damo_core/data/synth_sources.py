"""Three small synthetic sources in their native formats: COCO JSON, Objects365 JSON and the
OpenImages box CSV, for exercising :func:`damo_core.data.unify.unify` end to end.

Why three sources and not one synthetic COCO set: the local pipeline run must take the same
path real data takes -- readers per format, a label space merging classes that the sources
name differently, an ambiguous name kept apart, and sources of unequal size with a long-tailed
class frequency, so that source-share smoothing and repeat-factor sampling have something to
do. Everything is rendered by :mod:`damo_core.data.synth`, so boxes are exact and the shapes
learnable; a unified class is drawn as the same (shape, colour) in every source, otherwise a
merged class would be unlearnable.

Class lists are the sources' full ones (all 80 COCO categories with their real ids, the 365
Objects365 names and the 500 OpenImages MIDs of the ``coco-o365-oi`` preset), as real
annotation files ship them: the preset then resolves against every source. Only the classes in
:data:`CLASSES` carry boxes. Objects365 ids and OpenImages display names are taken from the
preset's rows (its column order and UniDet keys), not from the original releases.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from damo_core.data.errors import DatasetError
from damo_core.data.labelspace import LabelSpace, UnifiedClass, load_preset
from damo_core.data.synth import (
    JPEG_QUALITY,
    ObjectScale,
    class_specs,
    image_hw,
    render_image,
    scale_named,
)
from damo_core.errors import UserInputError
from damo_core.storage import open_store

__all__ = ["CLASSES", "COCO_CATEGORIES", "LABEL_SPACE_FILE", "PRESET", "SOURCE_SCALE",
           "SynthClass", "SynthSources", "generate_sources", "label_space_csv",
           "upload_sources"]

PRESET = "coco-o365-oi"
LABEL_SPACE_FILE = "label_space.csv"  # the small mapping, written beside the sources
OI_HEADER = ("ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
             "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")
# Images per source relative to ``images_per_source``: unequal, so source shares matter.
SOURCE_SCALE: dict[str, float] = {"coco": 1.0, "o365": 1.5, "oi": 2.0 / 3.0}
# Width / height cycled over each source's images (at least one non-square size per source).
_ASPECTS: dict[str, tuple[float, ...]] = {"coco": (4 / 3, 1.0), "o365": (1.0, 3 / 4),
                                          "oi": (4 / 3,)}
RARE_EVERY = 10  # a rare class is the guaranteed object of images 1, 11, 21, ... only
_MIN_IMAGE_SIZE = 48  # the 3/4 aspect then still leaves 36 px, above synth's 32 px floor

# COCO 2017: the 80 category names in id order; ids run 1..90 without these ten.
_COCO_MISSING_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
_COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)
COCO_CATEGORIES: dict[str, int] = dict(zip(
    _COCO_NAMES, (i for i in range(1, 91) if i not in _COCO_MISSING_IDS), strict=True))
# UniDet renamed two OpenImages pairs with digits; the real display names.
_OI_NAMES = {"/m/020lf": "Computer mouse"}


@dataclass(frozen=True)
class SynthClass:
    """A class that carries boxes: its member in each source (``None``: absent there) and
    its draw weight (0: rare, only the guaranteed object of every ``RARE_EVERY``-th image)."""

    coco: str | None
    o365: str | None
    oi: str | None  # an OpenImages MID
    weight: int

    def member(self, source: str) -> str | None:
        return {"coco": self.coco, "o365": self.o365, "oi": self.oi}[source]


# Index k is drawn as synth's class k in every source. Merges are the preset's: COCO 'bird'
# = Objects365 'wild bird'; 'suitcase' = 'luggage' = OpenImages Briefcase; 'orange' =
# 'tangerine' = Grapefruit. 'mouse' is a computer mouse in COCO/Objects365 and a rodent in
# OpenImages (/m/04rmv): same name, two classes. Both mice are the rare tail.
CLASSES: tuple[SynthClass, ...] = (
    SynthClass("person", "person", "/m/01g317", weight=8),
    SynthClass("car", "car", "/m/0k4j", weight=4),
    SynthClass("bird", "wild bird", None, weight=3),
    SynthClass("suitcase", "luggage", "/m/0584n8", weight=2),
    SynthClass("orange", "tangerine", "/m/0hqkz", weight=2),
    SynthClass("truck", None, "/m/07r04", weight=2),
    SynthClass("mouse", "mouse", None, weight=0),
    SynthClass(None, None, "/m/04rmv", weight=0),
)


def _specs(base: str) -> tuple[str, ...]:
    """Source specs for the layout :func:`generate_sources` writes, rooted at ``base``."""
    return (f"coco={base}/coco/instances.json",
            f"o365={base}/o365/objects365.json",
            f"oi={base}/oi/boxes.csv,classes={base}/oi/class-descriptions.csv")


@dataclass(frozen=True)
class SynthSources:
    """Where the generated sources lie, and the ``unify`` specs that read them."""

    root: Path
    specs: tuple[str, ...]

    def specs_at(self, base_uri: str) -> tuple[str, ...]:
        """The specs once the tree under ``root`` is copied to ``base_uri`` (e.g. S3)."""
        return _specs(base_uri.rstrip("/"))

    def label_space_at(self, base_uri: str | None = None) -> str:
        """URI of the small mapping CSV under ``base_uri`` (default: ``root``)."""
        base = str(self.root) if base_uri is None else base_uri.rstrip("/")
        return f"{base}/{LABEL_SPACE_FILE}"


# -- rendering --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Box:
    label: int  # index into CLASSES
    xywh: tuple[int, int, int, int]
    area: int  # visible pixels
    occluded: bool


def _scenes(source: str, count: int, image_size: int, seed: int, scale: ObjectScale
            ) -> Iterator[tuple[int, np.ndarray, list[_Box]]]:
    """``(index, RGB image, annotated boxes)`` for one source's images.

    render_image draws labels uniformly from the list it is given, so repeating a class in
    that list by its weight gives the long tail without touching the renderer.
    """
    look = class_specs(len(CLASSES))
    present = [k for k, c in enumerate(CLASSES) if c.member(source) is not None]
    common = [k for k in present if CLASSES[k].weight > 0]
    rare = [k for k in present if CLASSES[k].weight == 0]
    source_no = tuple(SOURCE_SCALE).index(source)
    for j in range(count):
        pool = [k for k in common for _ in range(CLASSES[k].weight)]
        if rare and j % RARE_EVERY == 1:
            pool.append(rare[(j // RARE_EVERY) % len(rare)])
            guaranteed = len(pool) - 1
        else:
            guaranteed = pool.index(common[j % len(common)])
        rng = np.random.default_rng([seed, 7, source_no, j])
        hw = image_hw(j, image_size, _ASPECTS[source])
        scene = render_image(rng, [look[k] for k in pool], hw, guaranteed_label=guaranteed,
                             scale=scale)
        boxes = [_Box(pool[o.label], o.bbox, o.visible_area, o.visible_area < o.full_area)
                 for o in scene.objects if o.annotated]
        yield j, scene.image, boxes


def _write_jpeg(image: np.ndarray, path: Path) -> None:
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY)


# -- the three formats ------------------------------------------------------------------------
def _preset_rows(preset: LabelSpace, source: str) -> list[tuple[str, UnifiedClass]]:
    """``(member, row)`` for every member of ``source`` in the preset, in row order."""
    return [(m, c) for c in preset.classes for m in c.members.get(source, ())]


def _categories(source: str, preset: LabelSpace) -> list[dict[str, object]]:
    """The full category list of a COCO-style source (real COCO ids; Objects365 by row)."""
    if source == "coco":
        return [{"id": i, "name": n, "supercategory": "object"}
                for n, i in COCO_CATEGORIES.items()]
    return [{"id": i, "name": m, "supercategory": "object"}
            for i, (m, _) in enumerate(_preset_rows(preset, source), start=1)]


def _write_coco_style(folder: Path, source: str, count: int, image_size: int, seed: int,
                      preset: LabelSpace, scale: ObjectScale) -> None:
    """``instances.json`` / ``objects365.json`` and ``images/``: one COCO-format source."""
    cats = _categories(source, preset)
    cat_id = {c["name"]: c["id"] for c in cats}
    image_dir = folder / "images"
    image_dir.mkdir(parents=True)
    images: list[dict[str, object]] = []
    anns: list[dict[str, object]] = []
    for j, image, boxes in _scenes(source, count, image_size, seed, scale):
        iid = j + 1
        name = f"{iid:012d}.jpg" if source == "coco" else f"objects365_v2_{iid:08d}.jpg"
        _write_jpeg(image, image_dir / name)
        images.append({"id": iid, "file_name": name, "width": int(image.shape[1]),
                       "height": int(image.shape[0])})
        for box in boxes:
            anns.append({"id": len(anns) + 1, "image_id": iid,
                         "category_id": cat_id[CLASSES[box.label].member(source)],
                         "bbox": [float(v) for v in box.xywh], "area": float(box.area),
                         "iscrowd": 0})
    doc = {"info": {"description": f"damo_core synthetic {source} source", "seed": seed},
           "licenses": [], "images": images, "annotations": anns, "categories": cats}
    file_name = "instances.json" if source == "coco" else "objects365.json"
    (folder / file_name).write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def _oi_display_name(mid: str, row: UnifiedClass) -> str:
    """The OpenImages display name: the first part of the row's UniDet key (``Name_o365_coco``),
    without UniDet's disambiguating digit."""
    if mid in _OI_NAMES:
        return _OI_NAMES[mid]
    key = row.origin.rpartition(": ")[2]
    name = re.sub(r"\d+$", "", key.split("_")[0]) if key.count("_") == 2 else ""
    return name or row.name


def _csv_text(rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _write_openimages(folder: Path, count: int, image_size: int, seed: int,
                      preset: LabelSpace, scale: ObjectScale) -> None:
    """``boxes.csv`` (sorted by ImageID, like the release), the header-less
    ``class-descriptions.csv`` and ``images/<ImageID>.jpg``."""
    image_dir = folder / "images"
    image_dir.mkdir(parents=True)
    rows: list[tuple[object, ...]] = []
    for j, image, boxes in _scenes("oi", count, image_size, seed, scale):
        iid = hashlib.sha1(f"{seed}/oi/{j}".encode()).hexdigest()[:16]
        _write_jpeg(image, image_dir / f"{iid}.jpg")
        h, w = image.shape[:2]
        for b in boxes:
            x, y, bw, bh = b.xywh
            coords = (x / w, (x + bw) / w, y / h, (y + bh) / h)
            rows.append((iid, "xclick", CLASSES[b.label].oi, 1, *(f"{v:.6f}" for v in coords),
                         int(b.occluded), 0, 0, 0, 0))
    rows.sort(key=lambda r: str(r[0]))
    (folder / "boxes.csv").write_text(_csv_text([OI_HEADER, *rows]))
    mids = sorted((m, _oi_display_name(m, c)) for m, c in _preset_rows(preset, "oi"))
    (folder / "class-descriptions.csv").write_text(_csv_text(mids))


# -- the small label space --------------------------------------------------------------------
def _preset_row(preset: LabelSpace, cls: SynthClass) -> UnifiedClass:
    """The one preset row holding every member of ``cls`` (a table error otherwise)."""
    hits = {id(c): c for c in preset.classes for s in SOURCE_SCALE
            if cls.member(s) in c.members.get(s, ())}
    if len(hits) != 1:
        raise AssertionError(f"synthetic class {cls} spans {len(hits)} rows of preset {PRESET}")
    return next(iter(hits.values()))


def label_space_csv(sources: SynthSources) -> str:
    """A mapping CSV with only the classes that carry boxes, rows as in the preset, so a model
    trained on the unified set has ``len(CLASSES)`` outputs instead of the preset's 701."""
    names = tuple(s.partition("=")[0] for s in sources.specs)
    preset = load_preset(PRESET)
    rows = [_preset_row(preset, c) for c in CLASSES]
    space = LabelSpace(names, [UnifiedClass(r.name, {s: r.members[s] for s in names
                                                     if s in r.members}, r.origin)
                               for r in rows])
    return space.to_csv(f"The classes of damo_core's synthetic sources, rows copied from "
                        f"preset {PRESET}.")


# -- writing ----------------------------------------------------------------------------------
def _check_args(images_per_source: int, image_size: int, seed: int) -> None:
    if images_per_source < 1:
        raise UserInputError(f"images_per_source must be >= 1, got {images_per_source}")
    if image_size < _MIN_IMAGE_SIZE:
        raise UserInputError(f"image_size must be >= {_MIN_IMAGE_SIZE} pixels, got "
                             f"{image_size}")
    if seed < 0:
        raise UserInputError(f"seed must be >= 0, got {seed}")


def _occupied(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _install(tmp: Path, out: Path) -> None:
    """Rename the finished tree into place; an old ``out`` is removed only afterwards."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, trash / "old")
    os.rename(tmp, out)
    shutil.rmtree(trash, ignore_errors=True)


def generate_sources(out: str | Path, *, images_per_source: int = 60, image_size: int = 160,
                     seed: int = 0, overwrite: bool = False,
                     object_scale: str = "coco") -> SynthSources:
    """Write ``coco/``, ``o365/``, ``oi/`` and ``label_space.csv`` under ``out``; objects'
    areas follow ``object_scale`` (:data:`damo_core.data.synth.OBJECT_SCALES`).

    Built in a temp dir beside ``out`` and renamed into place, so an interrupted run leaves no
    half source behind; an existing non-empty ``out`` is refused unless ``overwrite``. The
    same arguments give byte-identical files.
    """
    _check_args(images_per_source, image_size, seed)
    scale = scale_named(object_scale)
    out = Path(out).absolute()
    if _occupied(out) and not overwrite:
        raise DatasetError(f"{out} already exists and is not empty; pass overwrite=True to "
                           "replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    preset = load_preset(PRESET)
    counts = {s: max(1, round(images_per_source * f)) for s, f in SOURCE_SCALE.items()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        for source in ("coco", "o365"):
            _write_coco_style(tmp / source, source, counts[source], image_size, seed, preset,
                              scale)
        _write_openimages(tmp / "oi", counts["oi"], image_size, seed, preset, scale)
        sources = SynthSources(out, _specs(str(out)))
        (tmp / LABEL_SPACE_FILE).write_text(label_space_csv(sources))
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sources


def upload_sources(sources: SynthSources, base_uri: str) -> tuple[str, ...]:
    """Copy every file under ``sources.root`` to ``base_uri`` (a bucket prefix or a local
    directory), keeping the layout, and return the specs that read it from there."""
    store = open_store(base_uri)
    for path in sorted(p for p in sources.root.rglob("*") if p.is_file()):
        store.put_file(path, path.relative_to(sources.root).as_posix())
    return sources.specs_at(base_uri)
