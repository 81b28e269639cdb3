"""Unification at scale: an OpenImages-style box CSV of 2 M boxes plus a COCO-style JSON of
500 k boxes, unified into Parquet manifests. Prints wall time, peak RSS and boxes/s.

The inputs are generated here (seeded, in chunks, so generation itself stays small); the
label space is proposed from the two sources' classes. Peak RSS is the process maximum from
``resource.getrusage`` and includes the generation step, so it is an upper bound for unify.

    python benchmarks/unify_scale.py                      # 2 M + 500 k boxes in a temp dir
    python benchmarks/unify_scale.py --oi-boxes 200000 --coco-boxes 50000 --keep /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from damo_core.data.formats import open_source
from damo_core.data.labelspace import propose
from damo_core.data.unify import unify

CHUNK = 100_000
BOXES_PER_IMAGE = 8


def write_openimages(root: Path, boxes: int, classes: int, seed: int) -> str:
    """Box CSV (V6 columns) + class descriptions; returns the source spec."""
    rng = np.random.default_rng(seed)
    mids = [f"/m/bench{i:04d}" for i in range(classes)]
    desc = "\n".join(f"{m},Thing {i}" for i, m in enumerate(mids)) + "\n"
    (root / "oi-classes.csv").write_text(desc)
    path = root / "oi-boxes.csv"
    with pacsv.CSVWriter(path, _oi_schema()) as writer:
        for start in range(0, boxes, CHUNK):
            n = min(CHUNK, boxes - start)
            image = (start + np.arange(n)) // BOXES_PER_IMAGE
            x0, y0 = rng.uniform(0, 0.9, n), rng.uniform(0, 0.9, n)
            w, h = rng.uniform(0.01, 0.2, n), rng.uniform(0.01, 0.2, n)
            label = np.minimum(rng.zipf(1.3, n) - 1, classes - 1)
            flag = rng.integers(0, 2, n).astype(np.int8)
            writer.write_table(pa.table({
                "ImageID": pa.array(np.char.mod("%016x", image)), "Source": ["xclick"] * n,
                "LabelName": pa.array(np.asarray(mids)[label]), "Confidence": np.ones(n, "i1"),
                "XMin": x0, "XMax": x0 + w, "YMin": y0, "YMax": y0 + h,
                "IsOccluded": flag, "IsTruncated": flag, "IsGroupOf": 1 - flag,
                "IsDepiction": np.zeros(n, "i1"), "IsInside": np.zeros(n, "i1"),
            }, schema=_oi_schema()))
    return f"oi={path},classes={root / 'oi-classes.csv'}"


def _oi_schema() -> pa.Schema:
    fields = [("ImageID", pa.string()), ("Source", pa.string()), ("LabelName", pa.string()),
              ("Confidence", pa.int8())]
    fields += [(c, pa.float64()) for c in ("XMin", "XMax", "YMin", "YMax")]
    fields += [(c, pa.int8()) for c in ("IsOccluded", "IsTruncated", "IsGroupOf",
                                        "IsDepiction", "IsInside")]
    return pa.schema(fields)


def write_coco(root: Path, boxes: int, classes: int, seed: int) -> str:
    """COCO JSON written in chunks (boxes sometimes reach past the image: clipped)."""
    rng = np.random.default_rng(seed)
    images = -(-boxes // BOXES_PER_IMAGE)
    path = root / "coco.json"
    with path.open("w") as f:
        f.write('{"categories": ')
        json.dump([{"id": i + 1, "name": f"thing {i}"} for i in range(classes)], f)
        f.write(', "images": [')
        for start in range(0, images, CHUNK):
            ids = range(start, min(images, start + CHUNK))
            f.write(("," if start else "") + ",".join(
                f'{{"id": {i}, "file_name": "{i:012d}.jpg", "width": 640, "height": 480}}'
                for i in ids))
        f.write('], "annotations": [')
        for start in range(0, boxes, CHUNK):
            n = min(CHUNK, boxes - start)
            xy = rng.uniform(0, 600, (n, 2)).round(1)
            wh = rng.uniform(2, 120, (n, 2)).round(1)
            cat = np.minimum(rng.zipf(1.5, n), classes)
            f.write(("," if start else "") + ",".join(
                f'{{"id": {start + k}, "image_id": {(start + k) // BOXES_PER_IMAGE}, '
                f'"category_id": {cat[k]}, "bbox": [{xy[k, 0]}, {xy[k, 1]}, {wh[k, 0]}, '
                f'{wh[k, 1]}], "area": {wh[k, 0] * wh[k, 1]:.1f}, "iscrowd": 0}}'
                for k in range(n)))
        f.write("]}")
    return f"coco={path}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oi-boxes", type=int, default=2_000_000)
    parser.add_argument("--coco-boxes", type=int, default=500_000)
    parser.add_argument("--keep", type=Path, help="work here instead of a temp dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        sources = [write_openimages(root, args.oi_boxes, 500, 0),
                   write_coco(root, args.coco_boxes, 80, 1)]
        t1 = time.perf_counter()
        readers = {s.split("=")[0]: open_source(s) for s in sources}
        proposal = propose({n: (r.format_name, r.classes) for n, r in readers.items()})
        (root / "labels.csv").write_text(proposal.label_space.to_csv())
        result = unify(sources, str(root / "labels.csv"), root / "out", progress=False)
        t2 = time.perf_counter()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    total_in = args.oi_boxes + args.coco_boxes
    print(f"generated {total_in} boxes in {t1 - t0:.1f} s")
    print(f"unified {result.num_images} images, {result.num_boxes} boxes "
          f"({len(proposal.label_space.classes)} classes) in {t2 - t1:.1f} s: "
          f"{total_in / (t2 - t1):,.0f} boxes/s")
    print(f"peak RSS {peak_gib:.2f} GiB ({'under' if peak_gib < 2 else 'OVER'} the 2 GiB budget)")
    for name, stats in result.summary["sources"].items():
        print(f"  {name}: images {stats['images']}, boxes {stats['boxes']}, "
              f"clipped {stats['clipped']}, dropped outside {stats['dropped_outside']}")


if __name__ == "__main__":
    main()
