"""Unification at scale: an OpenImages-style box CSV of 2 M boxes plus a COCO-style JSON of
500 k boxes, unified into Parquet manifests, read from and written to a local directory and
to an S3 endpoint. Prints wall time, peak RSS and boxes/s for each, and PASS/FAIL against the
2 GiB peak-RSS budget (exit status 1 on any FAIL).

The inputs are generated once (seeded, in chunks, so generation itself stays small). Each
unify -- proposing the label space from the two sources' classes, then ``unify`` -- runs in
a fresh child process that reports its own ``ru_maxrss``, so the peak RSS is unify's alone
(interpreter and imports included), not the generator's or the S3 server's. For ``--s3`` a
moto S3 server is started on 127.0.0.1 (``moto[server]``), the annotation files are uploaded
(images are not needed: manifests only reference them), and the sources, the label-space CSV
and the output manifest are all ``s3://`` URIs; the server is stopped by PID at the end.

    python benchmarks/unify_scale.py                      # local, then S3 (default: both)
    python benchmarks/unify_scale.py --s3                 # S3 only
    python benchmarks/unify_scale.py --local --oi-boxes 200000 --coco-boxes 50000 --keep /tmp/b
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

BUDGET_GIB = 2.0
CHUNK = 100_000
BOXES_PER_IMAGE = 8
OI_BOXES, OI_CLASSES, COCO = "oi-boxes.csv", "oi-classes.csv", "coco.json"


def write_openimages(root: Path, boxes: int, classes: int, seed: int) -> list[Path]:
    """Box CSV (V6 columns) + class descriptions; returns the files written."""
    rng = np.random.default_rng(seed)
    mids = [f"/m/bench{i:04d}" for i in range(classes)]
    desc = "\n".join(f"{m},Thing {i}" for i, m in enumerate(mids)) + "\n"
    (root / OI_CLASSES).write_text(desc)
    path = root / OI_BOXES
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
    return [path, root / OI_CLASSES]


def _oi_schema() -> pa.Schema:
    fields = [("ImageID", pa.string()), ("Source", pa.string()), ("LabelName", pa.string()),
              ("Confidence", pa.int8())]
    fields += [(c, pa.float64()) for c in ("XMin", "XMax", "YMin", "YMax")]
    fields += [(c, pa.int8()) for c in ("IsOccluded", "IsTruncated", "IsGroupOf",
                                        "IsDepiction", "IsInside")]
    return pa.schema(fields)


def write_coco(root: Path, boxes: int, classes: int, seed: int) -> list[Path]:
    """COCO JSON written in chunks (boxes sometimes reach past the image: clipped)."""
    rng = np.random.default_rng(seed)
    images = -(-boxes // BOXES_PER_IMAGE)
    path = root / COCO
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
    return [path]




def source_specs(base: str) -> list[str]:
    """The two sources' specs with their files under ``base`` (a directory or ``s3://``)."""
    return [f"oi={base}/{OI_BOXES},classes={base}/{OI_CLASSES}", f"coco={base}/{COCO}"]


def unify_job(sources: list[str], labels_dir: str, out: str) -> dict:
    """The measured part, in a fresh process: propose the label space, unify, own peak RSS."""
    from damo_core.data.formats import open_source
    from damo_core.data.labelspace import propose
    from damo_core.data.unify import unify
    from damo_core.storage import open_store

    peaks = {"imports": _peak_rss()}
    t0 = time.perf_counter()
    readers = {s.split("=")[0]: open_source(s) for s in sources}
    proposal = propose({n: (r.format_name, r.classes) for n, r in readers.items()})
    labels = open_store(labels_dir).write_text("labels.csv", proposal.label_space.to_csv())
    del readers
    t1 = time.perf_counter()
    peaks["proposal"] = _peak_rss()
    result = unify(sources, labels, out, progress=False)
    t2 = time.perf_counter()
    peaks["unify"] = _peak_rss()
    return {"propose_s": t1 - t0, "unify_s": t2 - t1, "peak": peaks, "out": result.out,
            "classes": result.num_classes, "images": result.num_images,
            "boxes": result.num_boxes, "sources": result.summary["sources"]}


def _peak_rss() -> int:
    """This process's peak resident set so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_unify(sources: list[str], labels_dir: str, out: str) -> dict:
    """:func:`unify_job` in a child interpreter (inherits the environment, S3 settings too)."""
    job = json.dumps({"sources": sources, "labels_dir": labels_dir, "out": out})
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", job], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"unify child exited with {proc.returncode}:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["child_s"] = time.perf_counter() - t0
    return result


def _server_peak(pid: int) -> float:
    """The S3 server's own peak RSS in GiB (VmHWM), reported beside but not in the budget."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def bench_s3(files: list[Path], root: Path, bucket: str) -> tuple[dict, str]:
    """Upload the annotation files to a fresh moto server and unify bucket to bucket."""
    from damo_core.storage import open_store
    from damo_core.storage.local_s3 import local_s3
    from damo_core.storage.s3 import S3Store

    with local_s3(root / "moto_server.log") as server:
        S3Store(bucket).ensure_bucket()
        t0 = time.perf_counter()
        src = open_store(f"s3://{bucket}/src")
        for path in files:
            src.put_file(path, path.name)
        size = sum(p.stat().st_size for p in files) / 2**20
        note = (f"uploaded {size:,.0f} MiB to {server.url} in {time.perf_counter() - t0:.1f} s")
        result = run_unify(source_specs(f"s3://{bucket}/src"), f"s3://{bucket}",
                           f"s3://{bucket}/unified")
        note += f"; moto server peak RSS {_server_peak(server.pid):.2f} GiB (not counted)"
    return result, note


def host_line() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return (f"host: {cpu}, {os.cpu_count()} cores ({usable} usable), python "
            f"{sys.version.split()[0]}, pyarrow {pa.__version__}, numpy {np.__version__}")


def report(where: str, r: dict, total_in: int) -> bool:
    """Print one target's numbers; True when its peak RSS is within the budget."""
    peak = {k: v / 2**30 for k, v in r["peak"].items()}
    ok = peak["unify"] < BUDGET_GIB
    print(f"[{where}] -> {r['out']}")
    print(f"  label space: {r['classes']} classes proposed in {r['propose_s']:.1f} s")
    print(f"  unified {r['images']} images, {r['boxes']} boxes in {r['unify_s']:.1f} s: "
          f"{total_in / r['unify_s']:,.0f} boxes/s (child process {r['child_s']:.1f} s)")
    print(f"  peak RSS {peak['unify']:.2f} GiB (after imports {peak['imports']:.2f}, after "
          f"proposal {peak['proposal']:.2f}): {'PASS' if ok else 'FAIL'} "
          f"(budget < {BUDGET_GIB:g} GiB)")
    for name, st in r["sources"].items():
        print(f"    {name}: images {st['images']}, boxes {st['boxes']}, clipped {st['clipped']}, "
              f"dropped outside {st['dropped_outside']}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oi-boxes", type=int, default=2_000_000)
    parser.add_argument("--coco-boxes", type=int, default=500_000)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="local directory only")
    where.add_argument("--s3", action="store_true", help="S3 (moto on 127.0.0.1) only")
    parser.add_argument("--bucket", default="damo-bench")
    parser.add_argument("--keep", type=Path, help="work here instead of a temp dir")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(unify_job(**json.loads(args.child))))
        return
    print(host_line())
    total_in = args.oi_boxes + args.coco_boxes
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        files = [*write_openimages(root, args.oi_boxes, 500, 0),
                 *write_coco(root, args.coco_boxes, 80, 1)]
        print(f"generated {total_in} boxes in {time.perf_counter() - t0:.1f} s")
        if not args.s3:
            ok &= report("local", run_unify(source_specs(str(root)), str(root),
                                            str(root / "out")), total_in)
        if not args.local:
            result, note = bench_s3(files, root, args.bucket)
            print(note)
            ok &= report("s3", result, total_in)
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
