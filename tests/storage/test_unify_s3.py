"""Unification against a real S3 server: sources read from a bucket, manifests written to
one, the trainer export downloading images; and an unreachable bucket named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from damo_core.cli.data_cmds import data_app
from damo_core.data.manifest_dataset import ManifestDetection
from damo_core.data.synth import generate
from damo_core.data.unify import iter_manifest, read_summary, unify
from damo_core.storage import StorageError, open_store
from tests.data.test_source_formats import write_oi
from tests.servers import free_port


def _upload_tree(local: Path, store, prefix: str) -> None:
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        store.put_file(path, f"{prefix}/{path.relative_to(local).as_posix()}")


def test_unify_from_and_to_bucket(s3_bucket: str, tmp_path: Path) -> None:
    generate(tmp_path / "syn", num_classes=2, num_images=8, image_size=64, seed=3)
    write_oi(tmp_path / "oi", [("i1", "/m/c", 0.1, 0.4, 0.1, 0.4, 0, 0)],
             [("/m/c", "Circle")])
    bucket = open_store(f"s3://{s3_bucket}")
    _upload_tree(tmp_path / "syn", bucket, "src/coco")
    _upload_tree(tmp_path / "oi", bucket, "src/oi")
    bucket.write_text("labels.csv", "name,coco,oi\ncircle,circle,/m/c\nsquare,square,\n")
    base = f"s3://{s3_bucket}/src"
    sources = [f"coco={base}/coco/annotations/instances_train.json,"
               f"images={base}/coco/images/train",
               f"oi={base}/oi/boxes.csv,classes={base}/oi/classes.csv"]
    out = f"s3://{s3_bucket}/unified"
    result = unify(sources, f"s3://{s3_bucket}/labels.csv", out, shard_images=3,
                   progress=False)
    keys = open_store(out).list()
    assert "summary.json" in keys and "label_space.json" in keys and "source_share.png" in keys
    summary = read_summary(out)
    assert all(k in keys for k in summary["shards"]) and len(summary["shards"]) >= 3
    rows = [r for b in iter_manifest(out) for r in b.to_pylist()]
    assert len(rows) == result.num_images == summary["num_images"]
    oi_row = next(r for r in rows if r["source"] == "oi")
    assert oi_row["path"] == f"{base}/oi/images/i1.jpg" and oi_row["classes"] == [0]
    coco_rows = [r for r in rows if r["source"] == "coco"]
    assert all(r["path"].startswith(f"{base}/coco/images/train/") for r in coco_rows)
    # Training reads the S3 images where they lie, through the cache (only COCO's exist).
    coco_only = f"s3://{s3_bucket}/unified-coco"
    unify(sources[:1], f"s3://{s3_bucket}/labels.csv", coco_only, val_fraction=0.3,
          progress=False)
    train = ManifestDetection(coco_only, "train")
    assert train.path(0).startswith(f"{base}/coco/images/train/")
    assert train[0].image.shape == (64, 64, 3)


def test_unreachable_bucket_is_named(s3_env: str, monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # released: nobody listens there
    monkeypatch.setenv("DAMO_S3_ENDPOINT", dead)
    with pytest.raises(StorageError, match=rf"bucket 'gone'.*endpoint {dead}"):
        unify(["coco=s3://gone/coco.json"], "preset:coco-o365-oi", tmp_path / "o",
              progress=False)
    result = CliRunner().invoke(data_app, ["unify", "--source", "coco=s3://gone/coco.json",
                                           "--label-space", "preset:coco-o365-oi",
                                           "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "bucket 'gone'" in result.output
    assert not (tmp_path / "o").exists()
