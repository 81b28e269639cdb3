"""What serving costs: client-side latency through Triton vs the same model in-process.

Exports a model to ONNX (dynamic batch), deploys it to the local CPU Triton server (the
Python-backend variant: preprocess → ONNX Runtime detector → NMS), then measures

* served: client p50/p99 latency and throughput at concurrency 1, 2 and 4, each request one
  encoded image over gRPC (``damo serve-bench``);
* in-process, same ONNX file, same ONNX Runtime thread count, batch 1: the detector alone,
  and the whole path the server runs (decode + input fit + detector + NMS, the very functions
  the Python models call), without gRPC or the backend stubs.

The overhead ratio is served p50 at concurrency 1 over the in-process full-path p50: what
Triton, gRPC and the three backend-stub hops add per request on this machine. A random-init
model has no detections (NMS does little); pass ``--weights best.pt`` for a trained one.

    python benchmarks/serve.py                         # damoyolo_ns, random init
    python benchmarks/serve.py --weights runs/train/best.pt --requests 200
    python benchmarks/serve.py --soak 4 60             # 4 clients x 60 s: p50/p99, errors, RSS
    python benchmarks/serve.py --soak 3 20 --oversized # + one client sending a 12000x12000 PNG

Soak mode (bounded: N client threads for T seconds, each request one image, then it stops)
prints p50/p99, request and error counts, and the resident memory of the server and its backend
stubs at the start and the end. With ``--oversized`` the soak runs twice, without and with one
extra client that sends a 12000x12000 PNG (140 KB encoded, 432 MB decoded) back to back: the
well-behaved clients' p99 in both runs shows whether one hostile request stalls everyone.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from damo_core.bench.latency import benchmark, host_info
from damo_core.data.fit import model_fit
from damo_core.export.formats import export_model, load_source
from damo_core.export.onnx import load_runner
from damo_core.serve.bench import serve_bench
from damo_core.serve.codec import pad_batch, read_image_bytes
from damo_core.serve.deploy import deploy, probe_image
from damo_core.serve.local_server import LocalTriton
from damo_core.serve.model_config import PLACEMENT, ServingOptions
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
    parser.add_argument("--soak", type=int, nargs=2, metavar=("CLIENTS", "SECONDS"),
                        help="soak mode instead of the latency table")
    parser.add_argument("--oversized", action="store_true",
                        help="with --soak: a second run with one client sending 12000x12000")
    args = parser.parse_args()
    if args.soak:
        clients, seconds = args.soak
        if not (1 <= clients <= 64 and 1 <= seconds <= 3600):
            parser.error("--soak takes 1-64 clients and 1-3600 seconds")
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
        fit = model_fit(source.model)  # what the export records and Triton's preprocess uses
        prepared = preprocess_batch(batch, size, fit)

        def full_path(raw: object) -> object:
            pre = preprocess_batch(raw, size, fit)  # type: ignore[arg-type]
            scores, boxes = detector(pre["images"])[:2]
            return postprocess_batch(scores, boxes, pre[PLACEMENT], **thresholds)

        ort_only = benchmark(detector, prepared["images"], warmup=10, runs=args.runs)
        in_process = benchmark(full_path, batch, warmup=10, runs=args.runs)
        repo = work / "repo"
        repo.mkdir()
        with LocalTriton(repo) as server:
            deploy(onnx.parent, repo, server.grpc_url,
                   options=ServingOptions(threads=args.threads))
            if args.soak:
                _soak_report(server, source.model.name, encoded, *args.soak, args.oversized)
                return
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


def _soak_report(server: LocalTriton, model: str, encoded: bytes, clients: int,
                 seconds: int, oversized: bool) -> None:
    runs = [("soak", None)]
    if oversized:
        runs.append(("soak + one 12000x12000 client", _huge_png(12000)))
    table = Table("run", "clients", "requests", "errors", "p50 ms", "p99 ms", "hostile sent",
                  "hostile refused", "server RSS MB start", "end",
                  title=f"{model}: {clients} clients x {seconds} s per run on "
                        f"{host_info()['cpu']} ({host_info()['cpu_count']} cores)")
    for name, hostile in runs:
        rss_start = _tree_rss_mb(server.pid)
        stats = soak(server.grpc_url, model, encoded, clients=clients, seconds=seconds,
                     hostile=hostile)
        table.add_row(name, str(clients), str(stats["requests"]), str(stats["errors"]),
                      f"{stats['p50_ms']:.2f}", f"{stats['p99_ms']:.2f}",
                      str(stats["hostile_sent"]), str(stats["hostile_refused"]),
                      f"{rss_start:.0f}", f"{_tree_rss_mb(server.pid):.0f}")
    Console(width=160).print(table)


def soak(url: str, model: str, encoded: bytes, *, clients: int, seconds: float,
         hostile: bytes | None = None) -> dict[str, float]:
    """``clients`` threads send ``encoded`` back to back for ``seconds`` (closed loop, bounded
    in time); with ``hostile``, one more thread sends that image back to back meanwhile."""
    from damo_core.serve.client import TritonDetector

    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    latencies: list[float] = []
    counts = {"errors": 0, "hostile_sent": 0, "hostile_refused": 0}

    def client() -> None:
        detector = TritonDetector(url, model)
        try:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    detector.detect_encoded([encoded])
                except Exception:  # counted, the soak goes on
                    with lock:
                        counts["errors"] += 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - start)
        finally:
            detector.close()

    def attacker() -> None:
        assert hostile is not None
        detector = TritonDetector(url, model)
        try:
            while time.monotonic() < deadline:
                try:
                    detector.detect_encoded([hostile])
                except Exception:  # expected: the server refuses it
                    with lock:
                        counts["hostile_refused"] += 1
                with lock:
                    counts["hostile_sent"] += 1
        finally:
            detector.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    if hostile is not None:
        threads.append(threading.Thread(target=attacker, daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)  # a wedged server must not hang the benchmark
    ms = np.array(latencies or [float("nan")]) * 1000
    return {"requests": len(latencies), **counts, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


def _huge_png(side: int) -> bytes:
    """A real ``side``×``side`` PNG (flat grey compresses to ~140 KB at 12000²)."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 90, 90)).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def _tree_rss_mb(pid: int | None) -> float:
    """Resident memory of ``pid`` and all its descendants (Triton's Python backend stubs are
    child processes), from /proc."""
    if pid is None:
        return float("nan")
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _thresholds(model_name: str) -> dict[str, float | int]:
    from damo_core.eval.postprocess import nms_defaults

    score, iou = nms_defaults(model_name)
    return {"score_threshold": score, "iou_threshold": iou, "max_detections": 100}


if __name__ == "__main__":
    main()
