"""Deploy latency per runtime, batch 1, CPU: PyTorch eager vs ONNX Runtime vs OpenVINO.

Baseline: PyTorch eager on the fused (reparameterised) graph. Every row is the deploy graph
with box decode and without NMS (as the paper times it), at the model's own input size,
and shows its speed-up over that baseline (baseline p50 / row p50), all in one run on one
machine with the same thread count for every runtime. OpenVINO INT8 (NNCF PTQ) is added
when nncf is installed, calibrated on ``--data`` or, without it, on a generated synthetic
dataset (fine for latency; accuracy needs real data and weights).

With ``--weights best.pt --data dataset.yaml`` it also reports AP50 on the val split for
each runtime, so INT8's accuracy cost is measured next to its speed-up.

    python benchmarks/export_latency.py                     # damoyolo_ns, nm, nl
    python benchmarks/export_latency.py damoyolo_t damoyolo_s --runs 20 --threads 4
    python benchmarks/export_latency.py --weights runs/train/best.pt --data data/dataset.yaml
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
from pathlib import Path

import torch
from rich.console import Console

from damo_core.bench.latency import BenchResult, TorchRunner, make_runner, run_benchmark
from damo_core.bench.report import side_by_side, write_report
from damo_core.data import CocoDetection, load_dataset_yaml
from damo_core.data.fit import model_fit
from damo_core.data.synth import generate
from damo_core.eval.evaluator import score_detections
from damo_core.eval.postprocess import Detections, nms_defaults, postprocess
from damo_core.eval.preprocess import prepare_image
from damo_core.export.formats import export_model, load_source
from damo_core.models import Detector

NANO = ["damoyolo_ns", "damoyolo_nm", "damoyolo_nl"]


def ap50(model: Detector, fmt: str, precision: str, data: Path, size: int, work: Path,
         threads: int) -> float:
    """AP50 on the val split through the given runtime (same input fit, the model's own, and
    postprocess)."""
    if fmt == "pytorch":
        runner = TorchRunner(model)
    else:
        path = export_model(model, fmt, work / f"{fmt}-{precision}", image_size=size,
                            int8=precision == "int8", data=data if precision == "int8" else None)
        runner = make_runner(fmt, path, threads=threads, batch=1)
    dataset = CocoDetection.from_spec(load_dataset_yaml(data), "val")
    score_thr, iou_thr = nms_defaults(model.name)
    found: dict[int, Detections] = {}
    for index in range(len(dataset)):
        sample = dataset[index]
        prepared = prepare_image(sample.image, size, model_fit(model))
        scores, boxes = runner(prepared.tensor.unsqueeze(0).numpy())
        (det,) = postprocess(torch.as_tensor(scores), torch.as_tensor(boxes),
                             score_threshold=score_thr, iou_threshold=iou_thr)
        det.boxes = prepared.placement.to_original(det.boxes)
        found[sample.image_id] = det
    return score_detections(dataset.coco, found, cat_ids=dataset.cat_ids).AP50


def targets(with_int8: bool) -> list[tuple[str, str]]:
    rows = [("pytorch", "fp32"), ("onnx", "fp32"), ("openvino", "fp32")]
    return [*rows, ("openvino", "int8")] if with_int8 else rows


def bench_model(model: Detector, size: int, args: argparse.Namespace,
                data: Path | None) -> list[BenchResult]:
    results = []
    for fmt, precision in targets(data is not None):
        result = run_benchmark(model, fmt, image_size=size, warmup=args.warmup, runs=args.runs,
                               threads=args.threads, int8=precision == "int8", data=data,
                               calib_count=args.calib)
        print(f"  {model.name} {fmt} {precision}: p50 {result.stats.p50_ms:.2f} ms", flush=True)
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=NANO)
    parser.add_argument("--weights", type=Path, help="trained checkpoint (replaces models)")
    parser.add_argument("--data", type=Path, help="dataset.yaml: INT8 calibration (+ AP50)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--calib", type=int, default=64, help="INT8 calibration images")
    parser.add_argument("--no-int8", action="store_true")
    parser.add_argument("--json", type=Path, help="write the report JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with_int8 = not args.no_int8 and importlib.util.find_spec("nncf") is not None
    print(f"torch {torch.__version__}, {args.threads} threads for every runtime, batch 1, "
          f"{args.runs} timed runs; INT8 {'on' if with_int8 else 'off (nncf missing)'}")
    sources = ([load_source(args.weights)] if args.weights else
               [load_source(model_name=name) for name in args.models])
    results: list[BenchResult] = []
    with tempfile.TemporaryDirectory(prefix="damo-export-bench-") as tmp:
        work = Path(tmp)
        data = args.data
        if with_int8 and data is None:
            data = generate(work / "calib", num_images=args.calib, image_size=416)
        for source in sources:
            size = args.img_size or source.image_size
            results += bench_model(source.model, size, args, data if with_int8 else None)
        if args.weights and args.data:
            size = args.img_size or sources[0].image_size
            for fmt, precision in targets(with_int8):
                value = ap50(sources[0].model, fmt, precision, args.data, size, work,
                             args.threads)
                print(f"AP50 {fmt} {precision}: {value:.4f}")
    Console(width=170).print(side_by_side(results))
    if args.json:
        print(f"report: {write_report(results, args.json)}")


if __name__ == "__main__":
    main()
