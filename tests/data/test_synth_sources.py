"""The three synthetic native-format sources: reproducible bytes, readable by their readers,
unifiable under the preset and under their own small mapping, with a name collision for
``propose`` to find and a long-tailed class frequency."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from damo_core.data.errors import DatasetError
from damo_core.data.formats import open_source, parse_source
from damo_core.data.labelspace import LabelSpace, load_preset, propose
from damo_core.data.synth_sources import (
    CLASSES,
    COCO_CATEGORIES,
    SynthSources,
    generate_sources,
    label_space_csv,
)
from damo_core.data.unify import iter_manifest, read_summary, unify

N = 6  # images_per_source: coco 6, o365 9, oi 4
SIZE = 64
EXPECTED_IMAGES = {"coco": 6, "o365": 9, "oi": 4}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> SynthSources:
    return generate_sources(tmp_path_factory.mktemp("synth") / "src", images_per_source=N,
                            image_size=SIZE, seed=1)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _annotation_boxes(sources: SynthSources) -> dict[str, int]:
    """Boxes per source counted straight from the files, not through the readers."""
    counts = {}
    for name, file in (("coco", "coco/instances.json"), ("o365", "o365/objects365.json")):
        counts[name] = len(json.loads((sources.root / file).read_text())["annotations"])
    with open(sources.root / "oi" / "boxes.csv", newline="") as f:
        counts["oi"] = sum(1 for _ in csv.DictReader(f))
    return counts


def test_same_seed_same_bytes(sources: SynthSources, tmp_path: Path) -> None:
    again = generate_sources(tmp_path / "again", images_per_source=N, image_size=SIZE, seed=1)
    other = generate_sources(tmp_path / "other", images_per_source=N, image_size=SIZE, seed=2)
    first = _files(sources.root)
    assert _files(again.root) == first
    assert _files(other.root)["coco/instances.json"] != first["coco/instances.json"]
    assert sum(k.endswith(".jpg") for k in first) == sum(EXPECTED_IMAGES.values())


def test_existing_output_is_refused(sources: SynthSources, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(DatasetError, match=str(out)):
        generate_sources(out, images_per_source=2, image_size=SIZE)
    assert (out / "keep.txt").exists()
    generate_sources(out, images_per_source=2, image_size=SIZE, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "oi" / "boxes.csv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_native_formats_open(sources: SynthSources) -> None:
    expected_boxes = _annotation_boxes(sources)
    for spec in sources.specs:
        name = parse_source(spec).name
        reader = open_source(spec)
        records = list(reader)
        assert len(records) == EXPECTED_IMAGES[name]
        assert sum(len(r.labels) for r in records) == expected_boxes[name] > 0
        paths = [reader.image_uri(r.file_name) for r in records]
        assert all(Path(p).is_file() and p.startswith(f"{sources.root}/{name}/images/")
                   for p in paths)
    coco = json.loads((sources.root / "coco" / "instances.json").read_text())
    assert {c["name"]: c["id"] for c in coco["categories"]} == COCO_CATEGORIES
    assert COCO_CATEGORIES["mouse"] == 74 and COCO_CATEGORIES["toothbrush"] == 90
    header = (sources.root / "oi" / "boxes.csv").read_text().splitlines()[0]
    assert header == ("ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,"
                      "IsTruncated,IsGroupOf,IsDepiction,IsInside")


def test_unify_under_preset(sources: SynthSources, tmp_path: Path) -> None:
    preset = load_preset("coco-o365-oi")
    result = unify(sources.specs, "coco-o365-oi", tmp_path / "u", progress=False)
    assert result.num_classes == len(preset.classes) == 701
    summary = read_summary(tmp_path / "u")
    boxes = _annotation_boxes(sources)
    for name, images in EXPECTED_IMAGES.items():
        st = summary["sources"][name]
        assert (st["images"], st["boxes"], st["dropped_unmapped"]) == (images, boxes[name], 0)


def test_unify_under_small_mapping(sources: SynthSources, tmp_path: Path) -> None:
    text = label_space_csv(sources)
    assert (sources.root / "label_space.csv").read_text() == text
    space = LabelSpace.from_csv(text, "synthetic")
    assert len(space.classes) == len(CLASSES) == 8
    result = unify(sources.specs, sources.label_space_at(), tmp_path / "u", progress=False)
    assert result.num_classes == 8
    summary = read_summary(tmp_path / "u")
    boxes = _annotation_boxes(sources)
    assert {n: (s["images"], s["boxes"]) for n, s in summary["sources"].items()} == {
        n: (EXPECTED_IMAGES[n], boxes[n]) for n in EXPECTED_IMAGES}
    # Merged classes draw boxes from several sources under one id.
    seen: dict[str, set[str]] = {}
    for batch in iter_manifest(tmp_path / "u", ["source", "classes"]):
        for row in batch.to_pylist():
            for k in row["classes"]:
                seen.setdefault(space.names[k], set()).add(row["source"])
    assert seen["person"] == {"coco", "o365", "oi"}
    assert seen["bird [coco+o365]"] == {"coco", "o365"}
    assert seen["mouse (rodent)"] == {"oi"} and seen["mouse"] == {"coco", "o365"}


def test_propose_reports_the_mouse(sources: SynthSources) -> None:
    readers = {parse_source(s).name: open_source(s) for s in sources.specs}
    proposal = propose({n: (r.format_name, r.classes) for n, r in readers.items()})
    mouse = [c for c in proposal.collisions if c["name"] == "mouse"]
    assert mouse and set(mouse[0]["meanings"]) == {"computer mouse", "mouse (rodent)"}


def test_long_tail(tmp_path: Path) -> None:
    src = generate_sources(tmp_path / "src", images_per_source=20, image_size=SIZE)
    unify(src.specs, src.label_space_at(), tmp_path / "u", progress=False)
    with open(tmp_path / "u" / "class_counts.csv", newline="") as f:
        boxes = {r["name"]: int(r["boxes"]) for r in csv.DictReader(f)}
    assert min(boxes.values()) > 0
    assert max(boxes, key=boxes.get) == "person"
    assert boxes["person"] >= 10 * min(boxes.values())
