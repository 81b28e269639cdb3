"""Label space: proposals (ambiguities, synonyms, splits), the CSV file, the preset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from damo_core.cli.data_cmds import data_app
from damo_core.data.errors import DatasetError
from damo_core.data.formats.base import SourceClass
from damo_core.data.labelspace import LabelSpace, load_preset, propose
from tests.data.test_source_formats import write_oi

COCO = [SourceClass("1", "person"), SourceClass("74", "mouse"), SourceClass("5", "airplane")]


def _member_sets(space: LabelSpace) -> list[dict[str, tuple[str, ...]]]:
    return [dict(c.members) for c in space.classes]


def test_coco_mouse_and_openimages_rodent_stay_apart_and_collision_reported() -> None:
    oi = [SourceClass("/m/04rmv", "Mouse"), SourceClass("/m/01g317", "Person")]
    proposal = propose({"coco": ("coco", COCO), "oi": ("oi", oi)})
    members = _member_sets(proposal.label_space)
    assert {"coco": ("mouse",)} in members  # the computer mouse, alone
    assert {"oi": ("/m/04rmv",)} in members  # the rodent, alone
    assert {"coco": ("person",), "oi": ("/m/01g317",)} in members  # same name, merged
    assert len(proposal.label_space.classes) == 4
    mouse = [c for c in proposal.collisions if c["name"] == "mouse"]
    assert mouse and "kept apart" in mouse[0]["resolution"]
    assert sorted(mouse[0]["meanings"]) == ["computer mouse", "mouse (rodent)"]


def test_openimages_computer_mouse_merges_by_mid() -> None:
    oi = [SourceClass("/m/020lf", "Computer mouse"), SourceClass("/m/04rmv", "Mouse")]
    proposal = propose({"coco": ("coco", COCO), "oi": ("oi", oi)})
    assert {"coco": ("mouse",), "oi": ("/m/020lf",)} in _member_sets(proposal.label_space)
    assert {"oi": ("/m/04rmv",)} in _member_sets(proposal.label_space)


def test_ambiguous_name_without_sense_is_not_merged() -> None:
    a = [SourceClass("3", "Crane")]
    b = [SourceClass("crane", "crane")]
    proposal = propose({"a": ("coco", a), "b": ("voc", b)})
    assert len(proposal.label_space.classes) == 2
    assert sum("ambiguous" in c["resolution"] for c in proposal.collisions) == 2


def test_synonyms_merge_and_unmatched_reported() -> None:
    voc = [SourceClass("aeroplane", "aeroplane"), SourceClass("pottedplant", "pottedplant")]
    proposal = propose({"coco": ("coco", COCO), "voc": ("voc", voc)})
    assert {"coco": ("airplane",), "voc": ("aeroplane",)} in _member_sets(proposal.label_space)
    assert [m["name"] for m in proposal.merges] == ["airplane"]
    unmatched = {(u["source"], u["name"]) for u in proposal.unmatched}
    assert unmatched == {("coco", "person"), ("coco", "mouse"), ("voc", "pottedplant")}


def test_same_source_duplicate_names_are_split() -> None:
    oi = [SourceClass("/m/1", "Bench"), SourceClass("/m/2", "Bench")]
    proposal = propose({"oi": ("oi", oi)})
    assert len(proposal.label_space.classes) == 2
    assert any("several classes" in c["resolution"] for c in proposal.collisions)
    csv_text = proposal.label_space.to_csv()
    again = LabelSpace.from_csv(csv_text, "round trip")
    assert again.resolve("oi", oi).tolist() == [0, 1]


MAPPING = """# a comment
name,coco,oi,origin
human,person|1,/m/p,by hand
mouse,mouse,,computer
__drop__,airplane,,not wanted
"""


def test_csv_resolve_by_id_name_and_drop() -> None:
    space = LabelSpace.from_csv(MAPPING.replace("person|1", "person"), "m.csv")
    assert space.names == ["human", "mouse"]
    assert space.resolve("coco", COCO).tolist() == [0, 1, -1]
    assert space.to_json()["dropped"] == {"coco": ("airplane",), "oi": ()}


@pytest.mark.parametrize("text, match", [
    (MAPPING, r"m\.csv: source 'coco' class 'person' is mapped twice \('human' and 'human'\)"),
    (MAPPING.replace("person|1", "persn"), r"class 'human': source 'coco' has no class 'persn'"),
])
def test_resolve_errors(text: str, match: str) -> None:
    space = LabelSpace.from_csv(text, "m.csv")
    with pytest.raises(DatasetError, match=match):
        space.resolve("coco", COCO, "m.csv")


@pytest.mark.parametrize("text, match", [
    (MAPPING + "mouse2,mouse,,\n", r"row 6 \(mouse2\): source 'coco' class 'mouse' is mapped "
                                   r"twice \(also row 4, 'mouse'\)"),
    (MAPPING + "mouse,,/m/x,\n", r"row 6: unified name 'mouse' already used in row 4"),
    (MAPPING + "empty,,,\n", r"row 6 \(empty\): no source class is mapped"),
    ("coco,oi\nx,y\n", "header row with a 'name' column"),
    (MAPPING + "short,x\n", "row 6: 2 fields, header has 4"),
])
def test_mapping_file_errors(text: str, match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        LabelSpace.from_csv(text, "m.csv")


def test_missing_source_column() -> None:
    with pytest.raises(DatasetError, match="no column for source 'o365'"):
        LabelSpace.from_csv(MAPPING, "m.csv").resolve("o365", COCO)


def test_preset_is_the_papers_701_classes() -> None:
    space = load_preset("coco-o365-oi")
    assert len(space.classes) == 701 and space.sources == ("coco", "o365", "oi")
    for source, expected in (("coco", 80), ("o365", 365), ("oi", 500)):
        items = [m for c in space.classes for m in c.members.get(source, ())]
        assert len(items) == len(set(items)) == expected
    by_name = {c.name: c for c in space.classes}
    assert dict(by_name["mouse"].members) == {"coco": ("mouse",), "o365": ("mouse",),
                                              "oi": ("/m/020lf",)}
    assert dict(by_name["mouse (rodent)"].members) == {"oi": ("/m/04rmv",)}
    assert all(c.origin.startswith("UniDet learned_mAP.csv line") for c in space.classes)


def test_labelspace_command_proposes_from_sources(tmp_path: Path) -> None:
    spec = write_oi(tmp_path / "oi", [("i", "/m/04rmv", 0, 1, 0, 1, 0, 0)],
                    [("/m/04rmv", "Mouse"), ("/m/01g317", "Person")])
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": [
        {"id": 1, "name": "person"}, {"id": 74, "name": "mouse"}]}))
    out = tmp_path / "labels.csv"
    result = CliRunner().invoke(data_app, ["labelspace", "--source", f"coco={coco}",
                                           "--source", spec, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "num_classes=3" in result.output and "collisions=1" in result.output
    space = LabelSpace.from_csv(out.read_text(), str(out))
    assert sorted(space.names) == ["computer mouse", "mouse (rodent)", "person"]
    report = json.loads((tmp_path / "labels.csv.report.json").read_text())
    assert report["collisions"][0]["name"] == "mouse"
    bad = CliRunner().invoke(data_app, ["labelspace", "--preset", "nope", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown label-space preset 'nope'" in bad.output
