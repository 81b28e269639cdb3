"""DAMO-YOLO vs yolov8n on this CPU, in OpenVINO, in one process: the paper's CPU claim.

Baseline: ultralytics' yolov8n at 640 px (architecture from its model YAML, no weights),
exported to ONNX by ultralytics itself in a cached side venv (torch 2.14.1 + torchvision
0.29.1 + ultralytics, several GB, made on first use, never by CI: ultralytics needs
torchvision, which does not work beside the project's torch 2.13) and timed here in OpenVINO.
Contenders: DAMO-YOLO Ns/Nm/Nl at 416 and T/S at 640, each as PyTorch eager (fused) and as
OpenVINO IR, FP32 and INT8 (NNCF post-training quantisation; calibrated on a generated
synthetic set, which is fine for latency — INT8's accuracy cost is measured by
``tests/export/test_openvino.py`` and ``benchmarks/export_latency.py --weights --data``).
Every graph includes box decode and excludes NMS, as the paper times them. yolov8n is
quantised the same way, so INT8 is also compared with INT8.

All contenders are timed interleaved (``damo_core.bench.compare``): each round times every
one of them, ratios to yolov8n are taken within a round, the table shows the median over
rounds. Every runtime gets the same thread count. The bar is the reference implementation's
own deploy-graph export: on a 2-core AVX-512 CPU its ONNX files in OpenVINO FP32 measured
Ns/Nm/Nl/T/S at 0.39/0.68/1.19/1.91/3.84x yolov8n; a row passes at <= 0.9x that ratio.
``--reference-onnx`` times such files made by you (this script never builds them) beside ours.
On a machine with a CUDA GPU it also builds TensorRT FP16 engines of T/S/M/L and prints them
beside the paper's T4 numbers.

    python benchmarks/latency.py                     # all five, 2 threads, ~6 min
    python benchmarks/latency.py --models damoyolo_nm --rounds 5 --json nm.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from damo_core.atomic import atomic_write_text
from damo_core.bench.compare import Contender, Timing, interleaved
from damo_core.bench.latency import (
    TorchRunner,
    host_info,
    make_runner,
    random_images,
    run_benchmark,
)
from damo_core.bench.side_env import SideEnv
from damo_core.data.synth import generate
from damo_core.export.common import require
from damo_core.export.formats import export_model, load_source
from damo_core.export.openvino import quantize

HERE = Path(__file__).resolve().parent
BASELINE = "yolov8n"
BASELINE_SIZE = 640
ULTRALYTICS = "8.4.190"  # pinned: the cached ONNX is named after it
SIDE_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1", f"ultralytics=={ULTRALYTICS}",
                     "onnx", "onnxslim", "onnxruntime"]
CACHE = Path(os.environ.get("DAMO_CACHE", "~/.cache/damo")).expanduser()
MODELS = {"damoyolo_ns": 416, "damoyolo_nm": 416, "damoyolo_nl": 416, "damoyolo_t": 640,
          "damoyolo_s": 640}
# The reference implementation's deploy-graph ONNX in OpenVINO FP32, 2-core AVX-512 CPU,
# as ratios to yolov8n@640 measured in the same run (issue #9).
REFERENCE_RATIO = {"damoyolo_ns": 0.39, "damoyolo_nm": 0.68, "damoyolo_nl": 1.19,
                   "damoyolo_t": 1.91, "damoyolo_s": 3.84}
BAR = 0.9
# The report's tables (../shared/seeds/damo-yolo-report.txt): X86 CPU OpenVINO, and T4
# TensorRT FP16, batch 1, milliseconds.
PAPER_CPU_MS = {"yolov8n": 6.16, "damoyolo_ns": 4.08, "damoyolo_nm": 5.05, "damoyolo_nl": 6.69}
PAPER_T4_MS = {"damoyolo_t": 2.78, "damoyolo_s": 3.83, "damoyolo_m": 5.62, "damoyolo_l": 7.95}


def yolov8n_onnx(venv: Path, cache: Path, image_size: int = BASELINE_SIZE) -> Path:
    """The cached yolov8n ONNX, exported in the side venv on first use."""
    path = cache / f"yolov8n_{image_size}_ultralytics-{ULTRALYTICS}.onnx"
    if path.is_file():
        return path
    env = SideEnv(venv, SIDE_REQUIREMENTS).ensure()
    with tempfile.TemporaryDirectory(prefix=".yolov8n-", dir=cache) as tmp:
        out = Path(tmp) / path.name
        info = env.run(HERE / "yolov8n_export.py", ["--out", str(out), "--img-size",
                                                    str(image_size)])
        print(f"exported yolov8n in {venv}: {info.strip().splitlines()[-1]}")
        os.replace(out, path)  # the cache never holds a half-written file
    return path


def yolov8n_int8(onnx_path: Path, calib: list[np.ndarray], out_dir: Path) -> Path:
    """yolov8n quantised like the DAMO models (same NNCF settings) for an INT8-vs-INT8 row."""
    ov = require("openvino", "openvino", "OpenVINO")
    nncf = require("nncf", "nncf", "INT8 quantisation")
    model = quantize(nncf, ov.convert_model(str(onnx_path)), calib)
    path = out_dir / "yolov8n_640_int8.xml"
    ov.save_model(model, str(path))
    return path


def contenders(args: argparse.Namespace, baseline_onnx: Path, work: Path) -> list[Contender]:
    """yolov8n (FP32, INT8) plus, per DAMO model, eager, OpenVINO FP32 and INT8."""
    ov_runner = lambda path: make_runner("openvino", path, threads=args.threads,  # noqa: E731
                                         batch=1)
    found = [Contender(f"{BASELINE} fp32", ov_runner(baseline_onnx),
                       random_images(BASELINE_SIZE, scale=1 / 255))]
    data = None
    if args.int8:
        data = generate(work / "calib", num_images=args.calib, image_size=640)
        rng = np.random.default_rng(0)  # yolov8n takes 0..1 input; noise is fine for latency
        calib = [rng.uniform(0, 1, (1, 3, BASELINE_SIZE, BASELINE_SIZE)).astype(np.float32)
                 for _ in range(args.calib)]
        found.append(Contender(f"{BASELINE} int8",
                               ov_runner(yolov8n_int8(baseline_onnx, calib, work)),
                               random_images(BASELINE_SIZE, scale=1 / 255)))
    for name in args.models:
        size = MODELS[name]
        model = load_source(model_name=name).model
        feed = random_images(size)
        if args.eager:
            found.append(Contender(f"{name} eager", TorchRunner(model), torch.from_numpy(feed)))
        path = export_model(model, "openvino", work / name, image_size=size)
        found.append(Contender(f"{name} fp32", ov_runner(path), feed))
        if data is not None:
            path = export_model(model, "openvino", work / name, image_size=size, int8=True,
                                data=data, calib_count=args.calib)
            found.append(Contender(f"{name} int8", ov_runner(path), feed))
        if name in args.reference_onnx:
            found.append(Contender(f"{name} reference fp32",
                                   ov_runner(args.reference_onnx[name]), feed))
        print(f"exported {name} at {size}", flush=True)
    return found


def _p50(timings: dict[str, Timing], name: str) -> float | None:
    return timings[name].p50_ms if name in timings else None


def _ratio(timings: dict[str, Timing], name: str, base: str) -> float | None:
    if name not in timings or base not in timings:
        return None
    return timings[name].ratio_to(timings[base])


def rows(timings: dict[str, Timing], models: list[str]) -> list[dict[str, Any]]:
    """One row per DAMO model: latencies, ratios to yolov8n, the bar and the verdict."""
    found = []
    for name in models:
        fp32 = _ratio(timings, f"{name} fp32", f"{BASELINE} fp32")
        int8 = _ratio(timings, f"{name} int8", f"{BASELINE} fp32")
        bar = BAR * REFERENCE_RATIO[name]
        best = min(r for r in (fp32, int8) if r is not None)
        found.append({
            "model": name, "image_size": MODELS[name],
            "eager_ms": _p50(timings, f"{name} eager"), "fp32_ms": _p50(timings, f"{name} fp32"),
            "int8_ms": _p50(timings, f"{name} int8"),
            "ratio_fp32": fp32, "ratio_int8": int8,
            "ratio_int8_vs_yolov8n_int8": _ratio(timings, f"{name} int8", f"{BASELINE} int8"),
            "reference_ratio": REFERENCE_RATIO[name],
            "reference_ratio_here": _ratio(timings, f"{name} reference fp32", f"{BASELINE} fp32"),
            "bar": bar, "best_ratio": best,
            "passes": best <= bar, "paper_cpu_ms": PAPER_CPU_MS.get(name)})
    return found


def table(found: list[dict[str, Any]], timings: dict[str, Timing], threads: int) -> Table:
    host = host_info()
    base = _p50(timings, f"{BASELINE} fp32")
    out = Table(title=f"OpenVINO latency vs yolov8n@640 fp32 ({base:.1f} ms), {host['cpu']}, "
                      f"{threads} threads, batch 1, p50 (median of rounds)")
    for column in ("model", "size", "eager ms", "OV fp32 ms", "OV int8 ms", "fp32 / v8n",
                   "int8 / v8n", "int8 / v8n int8", "reference", "reference here",
                   f"bar ({BAR}x)", "verdict",
                   "paper ms"):
        out.add_column(column, justify="left" if column in ("model", "verdict") else "right")
    fmt = lambda v, spec=".2f": "-" if v is None else format(v, spec)  # noqa: E731
    for r in found:
        out.add_row(r["model"], str(r["image_size"]), fmt(r["eager_ms"], ".1f"),
                    fmt(r["fp32_ms"], ".1f"), fmt(r["int8_ms"], ".1f"), fmt(r["ratio_fp32"]),
                    fmt(r["ratio_int8"]), fmt(r["ratio_int8_vs_yolov8n_int8"]),
                    fmt(r["reference_ratio"]), fmt(r["reference_ratio_here"]),
                    fmt(r["bar"], ".3f"),
                    "PASS" if r["passes"] else "FAIL", fmt(r["paper_cpu_ms"]))
    return out


def tensorrt_rows(args: argparse.Namespace) -> None:
    """T/S/M/L as TensorRT FP16 engines beside the paper's T4 numbers (GPU machines only)."""
    if not torch.cuda.is_available():
        print("TensorRT: no CUDA GPU on this machine, so no FP16 engines were built; the "
              f"paper's T4 FP16 numbers are {PAPER_T4_MS} ms. Run this script on a GPU "
              "machine (with the tensorrt package) for that part.")
        return
    for name, paper in PAPER_T4_MS.items():
        model = load_source(model_name=name).model
        result = run_benchmark(model, "tensorrt", image_size=640, half=True,
                               warmup=args.warmup, runs=args.runs * args.rounds)
        print(f"TensorRT fp16 {name}@640 on {torch.cuda.get_device_name()}: p50 "
              f"{result.stats.p50_ms:.2f} ms (paper, T4: {paper} ms)", flush=True)


def _model_path(item: str) -> tuple[str, Path]:
    name, _, path = item.partition("=")
    if name not in MODELS or not Path(path).is_file():
        raise SystemExit(f"--reference-onnx {item!r}: expected MODEL=PATH with MODEL in "
                         f"{list(MODELS)} and an existing file")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="timed calls per round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per round")
    parser.add_argument("--calib", type=int, default=32, help="INT8 calibration images")
    parser.add_argument("--no-int8", dest="int8", action="store_false")
    parser.add_argument("--no-eager", dest="eager", action="store_false")
    parser.add_argument("--venv", type=Path, default=CACHE / "yolov8-export-venv")
    parser.add_argument("--json", type=Path, default=Path("runs/bench/latency.json"))
    parser.add_argument("--reference-onnx", nargs="*", default=[], metavar="MODEL=PATH",
                        help="the reference implementation's own deploy-graph ONNX of MODEL "
                             "(decode, no NMS; made by you with its tools), timed in the same "
                             "rounds: its ratio on this machine, beside the stated one")
    args = parser.parse_args()
    args.reference_onnx = dict(_model_path(item) for item in args.reference_onnx)
    torch.set_num_threads(args.threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    baseline_onnx = yolov8n_onnx(args.venv, CACHE)
    print(f"baseline: {baseline_onnx}")
    with tempfile.TemporaryDirectory(prefix="damo-latency-") as tmp:
        found = contenders(args, baseline_onnx, Path(tmp))
        report = lambda i, stats: print(  # noqa: E731
            f"round {i + 1}/{args.rounds}: " + ", ".join(
                f"{k} {v.p50_ms:.1f}" for k, v in stats.items()), flush=True)
        timings = interleaved(found, rounds=args.rounds, runs=args.runs, warmup=args.warmup,
                              on_round=report)
    result = rows(timings, args.models)
    Console(width=200).print(table(result, timings, args.threads))
    tensorrt_rows(args)
    doc = {"host": host_info(), "threads": args.threads, "rounds": args.rounds,
           "runs": args.runs, "baseline": f"{BASELINE} fp32 @{BASELINE_SIZE}",
           "baseline_onnx": str(baseline_onnx), "rows": result,
           "timings": {k: v.to_dict() for k, v in timings.items()}}
    print(f"report: {atomic_write_text(args.json, json.dumps(doc, indent=2) + chr(10))}")


if __name__ == "__main__":
    main()
