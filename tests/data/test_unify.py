"""Unification end to end on small generated sources: manifests, counts, plots, atomicity,
and the export to the COCO dataset the trainer reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from damo_core.cli.data_cmds import data_app
from damo_core.data.coco import CocoDetection
from damo_core.data.errors import DatasetError
from damo_core.data.synth import generate
from damo_core.data.unify import (
    FLAG_BOXES_CLIPPED,
    FLAG_BOXES_DROPPED,
    FLAG_UNMAPPED_DROPPED,
    iter_manifest,
    read_summary,
    unify,
)
from damo_core.steps import unify as unify_step
from tests.data.test_source_formats import coco_box, write_coco, write_oi

LABELS = """name,coco,oi
circle,circle,/m/c
square,square,
ball,,/m/b
__drop__,triangle,
"""


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    root = tmp_path_factory.mktemp("sources")
    generate(root / "syn", num_classes=3, num_images=12, image_size=96, seed=2)
    coco = (f"coco={root / 'syn/annotations/instances_train.json'},"
            f"images={root / 'syn/images/train'}")
    rows = [("a", "/m/c", -0.2, 0.5, 0.1, 0.5, 0, 0),  # clipped
            ("a", "/m/b", 1.1, 1.3, 0.1, 0.5, 0, 1),  # wholly outside: dropped
            ("b", "/m/x", 0.1, 0.2, 0.1, 0.2, 0, 0),  # class not in the label space
            ("b", "/m/b", 0.1, 0.2, 0.1, 0.2, 0, 0)]
    oi = write_oi(root / "oi", rows, [("/m/c", "Circle"), ("/m/b", "Ball"), ("/m/x", "X")])
    (root / "labels.csv").write_text(LABELS)
    return [coco, oi], root


def test_unify_writes_manifest_counts_and_plots(sources, tmp_path: Path) -> None:
    specs, root = sources
    out = tmp_path / "out"
    result = unify(specs, str(root / "labels.csv"), out, shard_images=5, progress=False)
    summary = read_summary(out)
    assert result.num_classes == 3 and summary["num_images"] == result.num_images
    n_coco = summary["sources"]["coco"]["images"]
    assert n_coco == len(CocoDetection(root / "syn/annotations/instances_train.json",
                                       root / "syn/images/train"))
    assert len([k for k in summary["shards"] if k.startswith("manifest/coco-")]) == -(-n_coco // 5)
    oi = summary["sources"]["oi"]
    assert (oi["images"], oi["boxes"], oi["clipped"], oi["dropped_outside"],
            oi["dropped_unmapped"]) == (2, 2, 1, 1, 1)
    assert oi["unmapped_classes"] == {"/m/x (X)": 1}
    rows = [r for b in iter_manifest(out) for r in b.to_pylist()]
    by_id = {(r["source"], r["image_id"]): r for r in rows}
    a, b = by_id["oi", "a"], by_id["oi", "b"]
    np.testing.assert_allclose(a["boxes"], [[0.0, 0.1, 0.5, 0.5]])
    assert a["classes"] == [0] and a["flags"] == FLAG_BOXES_CLIPPED | FLAG_BOXES_DROPPED
    assert b["classes"] == [2] and b["flags"] == FLAG_UNMAPPED_DROPPED
    assert a["path"] == f"{root / 'oi' / 'images'}/a.jpg"
    coco_rows = [r for r in rows if r["source"] == "coco"]
    assert all(c in (0, 1) for r in coco_rows for c in r["classes"])  # triangle dropped
    assert summary["sources"]["coco"]["dropped_unmapped"] > 0
    counts = (out / "class_counts.csv").read_text().splitlines()
    assert counts[0] == "id,name,images,boxes,boxes_coco,boxes_oi"
    ball = counts[3].split(",")
    assert ball[:4] == ["2", "ball", "1", "1"]
    space = json.loads((out / "label_space.json").read_text())
    assert [c["name"] for c in space["classes"]] == ["circle", "square", "ball"]
    weights = pq.read_table(out / "sampling_weights.parquet").column("weight").to_numpy()
    assert len(weights) == len(rows) and weights.sum() == pytest.approx(1.0)
    for png in ("source_share.png", "class_frequency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # staging removed


def test_interrupted_run_leaves_no_manifest(sources, tmp_path: Path, monkeypatch) -> None:
    specs, root = sources
    calls = {"n": 0}
    real = pq.write_table

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", failing)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        unify(specs, str(root / "labels.csv"), out, shard_images=4, progress=False)
    assert list(out.iterdir()) == []  # no shard, no summary, no staging directory
    with pytest.raises(DatasetError, match="summary.json missing"):
        read_summary(out)


def test_bad_mapping_and_duplicate_sources_fail_before_writing(sources, tmp_path: Path) -> None:
    specs, root = sources
    bad = tmp_path / "bad.csv"
    bad.write_text(LABELS.replace("square,square", "square,squar"))
    with pytest.raises(DatasetError, match="bad.csv: class 'square': source 'coco' has no "
                                           "class 'squar'"):
        unify(specs, str(bad), tmp_path / "out", progress=False)
    with pytest.raises(DatasetError, match="distinct names"):
        unify([specs[0], specs[0]], str(root / "labels.csv"), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_duplicate_image_ids_error_or_counted_skip(tmp_path: Path) -> None:
    images = [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
              {"id": 1, "file_name": "b.jpg", "width": 10, "height": 10}]
    spec = write_coco(tmp_path / "c.json", images, [coco_box(1, 1, 1, [1, 1, 2, 2])],
                      [{"id": 1, "name": "x"}])
    (tmp_path / "l.csv").write_text("name,coco\nx,x\n")
    with pytest.raises(DatasetError, match="duplicated"):
        unify([spec], str(tmp_path / "l.csv"), tmp_path / "out", progress=False)
    result = unify([spec], str(tmp_path / "l.csv"), tmp_path / "out", skip_invalid=True,
                   progress=False)
    assert result.summary["sources"]["coco"]["skipped"] == {"duplicate_image_id": 1}


def test_cli_unify_reports_counts_and_errors(sources, tmp_path: Path) -> None:
    specs, root = sources
    args = ["unify", "--source", specs[0], "--source", specs[1], "--out", str(tmp_path / "o")]
    ok = CliRunner().invoke(data_app, [*args, "--label-space", str(root / "labels.csv")])
    assert ok.exit_code == 0, ok.output
    assert "oi: 2 images, 2 boxes; clipped 1, dropped outside 1, dropped unmapped 1" in ok.output
    bad = CliRunner().invoke(data_app, [*args, "--label-space", str(tmp_path / "none.csv")])
    assert bad.exit_code == 2 and "none.csv" in bad.output


def test_the_step_writes_the_manifest_training_reads(sources, tmp_path: Path) -> None:
    """The unify step's output is the manifest itself: no images in it, the same split on a
    re-run, and training's dataset reads the boxes of the source it came from."""
    from damo_core.data.manifest_dataset import ManifestDetection

    specs, root = sources
    meta = unify_step.run(specs[:1], tmp_path / "coco", label_space=str(root / "labels.csv"),
                          sampling={"val_fraction": 0.3}, seed=0)
    assert meta["num_classes"] == 3 and meta["num_train_images"] > 0
    plots = {"source_share.png", "class_frequency.png"}
    assert not [p for p in (tmp_path / "coco").rglob("*")
                if p.suffix in (".jpg", ".png") and p.name not in plots]
    unify_step.run(specs[:1], tmp_path / "again", label_space=str(root / "labels.csv"),
                   sampling={"val_fraction": 0.3}, seed=0)
    split = [r["split"] for b in iter_manifest(tmp_path / "coco", ["split"])
             for r in b.to_pylist()]
    again = [r["split"] for b in iter_manifest(tmp_path / "again", ["split"])
             for r in b.to_pylist()]
    assert split == again and {"train", "val"} == set(split)
    train = ManifestDetection(tmp_path / "coco", "train")
    val = ManifestDetection(tmp_path / "coco", "val")
    assert train.class_names == ("circle", "square", "ball")
    ref = CocoDetection(root / "syn/annotations/instances_train.json", root / "syn/images/train")
    assert len(train) + len(val) == len(ref) and len(val) > 0
    sample = train[0]
    names = [ref.coco.imgs[i]["file_name"] for i in ref.image_ids]
    src = ref[names.index(Path(sample.file_name).name)]
    keep = src.labels != 2  # triangles are dropped by the mapping
    np.testing.assert_allclose(sample.boxes, src.boxes[keep], atol=1e-3)
    assert sample.labels.tolist() == src.labels[keep].tolist()
    assert len(train.weights) == len(train) and np.all(train.weights > 0) and train.sampling


def test_the_synthetic_source_takes_its_object_scale(tmp_path: Path, monkeypatch) -> None:
    """``object_scale`` reaches the generated set (and its cache key): coarse boxes are larger."""
    from damo_core.data.blob_cache import CACHE_DIR_ENV
    from damo_core.data.manifest_dataset import ManifestDetection

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    mean_area = {}
    for scale in ("coco", "coarse"):
        unify_step.run(["synthetic"], tmp_path / scale, num_images=12, image_size=64,
                       object_scale=scale)
        boxes = np.concatenate([ManifestDetection(tmp_path / scale, "train")[i].boxes
                                for i in range(4)])
        mean_area[scale] = float(np.mean((boxes[:, 2] - boxes[:, 0])
                                         * (boxes[:, 3] - boxes[:, 1])))
    assert mean_area["coarse"] > 1.5 * mean_area["coco"], mean_area
