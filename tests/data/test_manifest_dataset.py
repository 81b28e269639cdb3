"""The training format's reader: one split of a manifest, and its errors on bad manifests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from damo_core.data.errors import DatasetError
from damo_core.data.manifest_dataset import ManifestDetection
from damo_core.data.resolve import manifest_for
from damo_core.data.synth import generate


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, num_classes=3, num_images=12, image_size=64, seed=1)
    return Path(manifest_for(root / "dataset.yaml"))


def _copy(manifest: Path, tmp_path: Path) -> Path:
    out = tmp_path / "m"
    shutil.copytree(manifest, out)
    return out


def test_splits_partition_the_rows_and_boxes_are_pixels(manifest: Path) -> None:
    train, val = ManifestDetection(manifest, "train"), ManifestDetection(manifest, "val")
    summary = json.loads((manifest / "summary.json").read_text())
    assert (len(train), len(val)) == (summary["splits"]["train"], summary["splits"]["val"])
    sample = train[0]
    h, w = sample.image.shape[:2]
    assert sample.boxes.dtype == np.float32 and len(sample.boxes) == len(sample.labels)
    assert (sample.boxes[:, 2] <= w + 1e-3).all() and (sample.boxes[:, 3] <= h + 1e-3).all()
    assert set(train.image_ids).isdisjoint(val.image_ids)
    assert not train.remote and not train.sampling  # local paths; a dataset.yaml: one pass


def test_another_schema_version_is_refused(manifest: Path, tmp_path: Path) -> None:
    out = _copy(manifest, tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "schema_version": 1}))
    with pytest.raises(DatasetError, match=r"summary.json: field 'schema_version' is 1"):
        ManifestDetection(out, "train")
    del summary["schema_version"]  # manifests written before versioning
    (out / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(DatasetError, match="manifest schema 2 only"):
        ManifestDetection(out, "train")


def test_a_missing_image_is_named_with_its_row(manifest: Path, tmp_path: Path) -> None:
    out = _copy(manifest, tmp_path)
    [shard] = sorted((out / "manifest").glob("*.parquet"))
    table = pq.read_table(shard)
    paths = table.column("path").to_pylist()
    splits = table.column("split").to_pylist()
    first_train = splits.index("train")
    paths[first_train] = str(tmp_path / "gone.jpg")
    table = table.set_column(table.schema.get_field_index("path"), "path", [paths])
    pq.write_table(table, shard)
    dataset = ManifestDetection(out, "train")
    with pytest.raises(DatasetError, match=r"train row 0 \(data:\d+, path .*gone.jpg\)"):
        dataset[0]


def test_a_split_without_images_is_named(manifest: Path, tmp_path: Path) -> None:
    out = _copy(manifest, tmp_path)
    [shard] = sorted((out / "manifest").glob("*.parquet"))
    table = pq.read_table(shard)
    column = table.schema.get_field_index("split")
    pq.write_table(table.set_column(column, "split", [["train"] * table.num_rows]), shard)
    with pytest.raises(DatasetError, match="split 'val' has no images"):
        ManifestDetection(out, "val")


def test_a_dataset_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nowhere.yaml: dataset not found"):
        manifest_for(tmp_path / "nowhere.yaml")
    with pytest.raises(DatasetError, match="neither a manifest directory"):
        manifest_for(tmp_path)
    with pytest.raises(DatasetError, match="not converted implicitly"):
        manifest_for("s3://bucket/data.yaml")
