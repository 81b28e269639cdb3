"""The synthetic sources uploaded to a real S3 server and unified by URI: the manifest points
at the images in the bucket, and nothing is copied beside the local output."""

from __future__ import annotations

from pathlib import Path

from damo_core.data.synth_sources import generate_sources, upload_sources
from damo_core.data.unify import iter_manifest, read_summary, unify
from damo_core.storage import open_store


def test_unify_uploaded_sources(s3_bucket: str, tmp_path: Path) -> None:
    sources = generate_sources(tmp_path / "src", images_per_source=4, image_size=64)
    base = f"s3://{s3_bucket}/synth"
    specs = upload_sources(sources, base)
    assert specs == sources.specs_at(base) and all(base in s for s in specs)
    local = sorted(p.relative_to(sources.root).as_posix()
                   for p in sources.root.rglob("*") if p.is_file())
    assert sorted(open_store(base).list()) == local

    out = tmp_path / "unified"
    result = unify(specs, sources.label_space_at(base), out, progress=False)
    assert result.num_classes == 8
    summary = read_summary(out)
    assert {n: s["uri"].startswith(f"{base}/") for n, s in summary["sources"].items()} == {
        "coco": True, "o365": True, "oi": True}
    paths = [p for b in iter_manifest(out, ["path"]) for p in b.column("path").to_pylist()]
    assert len(paths) == result.num_images > 0
    assert all(p.startswith(f"{base}/") and p.endswith(".jpg") for p in paths)
    bucket = open_store(f"s3://{s3_bucket}")
    assert all(bucket.exists(p.removeprefix(f"s3://{s3_bucket}/")) for p in paths)
    assert not list(out.rglob("*.jpg"))
