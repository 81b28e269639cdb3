"""What serving costs: client-side latency through Triton vs the same model in-process.

Exports a model to ONNX (dynamic batch), deploys it to the local CPU Triton server (the
Python-backend variant: preprocess → ONNX Runtime detector → NMS), then measures

* served: client p50/p99 latency and throughput at concurrency 1, 2 and 4, each request one
  encoded image over gRPC (``damo serve-bench``);
* in-process, same ONNX file, same ONNX Runtime thread count, batch 1: the detector alone,
  and the whole path the server runs (decode + letterbox + detector + NMS, the very functions
  the Python models call), without gRPC or the backend stubs.

The overhead ratio is served p50 at concurrency 1 over the in-process full-path p50: what
Triton, gRPC and the three backend-stub hops add per request on this machine. A random-init
model has no detections (NMS does little); pass ``--weights best.pt`` for a trained one.

    python benchmarks/serve.py                         # damoyolo_ns, random init
    python benchmarks/serve.py --weights runs/train/best.pt --requests 200
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from damo_core.bench.latency import benchmark
from damo_core.export.formats import export_model, load_source
from damo_core.export.onnx import load_runner
from damo_core.serve.bench import serve_bench
from damo_core.serve.codec import pad_batch, read_image_bytes
from damo_core.serve.deploy import deploy, probe_image
from damo_core.serve.local_server import LocalTriton
from damo_core.serve.model_config import ServingOptions
from damo_core.serve.python_models import postprocess_batch, preprocess_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="damoyolo_ns", help="zoo model (random init)")
    parser.add_argument("--weights", type=Path, help="trained checkpoint instead of --model")
    parser.add_argument("--image", type=Path, help="image to send (default: 640x480 probe)")
    parser.add_argument("--requests", type=int, default=100, help="per concurrency level")
    parser.add_argument("--runs", type=int, default=100, help="in-process timed runs")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads, both")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    source = (load_source(args.weights) if args.weights else
              load_source(model_name=args.model))
    encoded = read_image_bytes(args.image) if args.image else probe_image(640, 480)
    size = source.image_size
    with tempfile.TemporaryDirectory(prefix="damo-serve-bench-") as tmp:
        work = Path(tmp)
        onnx = export_model(source.model, "onnx", work / "exported", image_size=size,
                            dynamic_batch=True, class_names=source.class_names)
        print(f"{source.origin}: {onnx.name}, ONNX Runtime {args.threads} thread(s)")
        detector = load_runner(onnx, threads=args.threads)
        thresholds = _thresholds(source.model.name)
        batch = pad_batch([encoded])
        prepared = preprocess_batch(batch, size)

        def full_path(raw: object) -> object:
            pre = preprocess_batch(raw, size)  # type: ignore[arg-type]
            scores, boxes = detector(pre["images"])[:2]
            return postprocess_batch(scores, boxes, pre["letterbox"], **thresholds)

        ort_only = benchmark(detector, prepared["images"], warmup=10, runs=args.runs)
        in_process = benchmark(full_path, batch, warmup=10, runs=args.runs)
        repo = work / "repo"
        repo.mkdir()
        with LocalTriton(repo) as server:
            deploy(onnx.parent, repo, server.grpc_url,
                   options=ServingOptions(threads=args.threads))
            served = serve_bench(server.grpc_url, source.model.name, [encoded],
                                 concurrencies=args.concurrency, requests=args.requests)
    table = Table("path", "concurrency", "p50 ms", "p99 ms", "images/s",
                  title=f"{source.model.name} {size}px, one image per request")
    for name, stats in (("in-process ORT detector", ort_only),
                        ("in-process full path", in_process)):
        table.add_row(name, "1", f"{stats.p50_ms:.2f}", f"{stats.p99_ms:.2f}",
                      f"{1000 / stats.mean_ms:.1f}")
    for r in served:
        table.add_row("Triton gRPC ensemble", str(r.concurrency), f"{r.p50_ms:.2f}",
                      f"{r.p99_ms:.2f}", f"{r.throughput_ips:.1f}")
    Console(width=120).print(table)
    c1 = served[0]
    print(f"serving overhead (p50, concurrency {c1.concurrency}): "
          f"{c1.p50_ms / in_process.p50_ms:.2f}x the in-process full path, "
          f"{c1.p50_ms / ort_only.p50_ms:.2f}x the ORT detector alone "
          f"(+{c1.p50_ms - in_process.p50_ms:.2f} ms per request)")


def _thresholds(model_name: str) -> dict[str, float | int]:
    from damo_core.eval.postprocess import nms_defaults

    score, iou = nms_defaults(model_name)
    return {"score_threshold": score, "iou_threshold": iou, "max_detections": 100}


if __name__ == "__main__":
    main()
