"""DAMO-YOLO vs the reference's export and yolov8n in OpenVINO on this CPU, precision by precision.

The paper's CPU claim, judged on this machine, every contender timed in one process.

Goals (issue #22), each judged at one precision on both sides, never across precisions:
ours / the reference export <= 0.9 in FP32 and in BF16 (only when ``--reference-onnx`` gives
that export: ONNX files you made with the reference repo's tools, which this script never
builds; without one the verdict says "no reference given"), and our INT8 IR >= 1.5x faster
than our FP32 IR, per model.

Contenders: DAMO-YOLO Ns/Nm/Nl at 416 and T/S at 640 (``--img-size`` overrides both) as
OpenVINO IR in FP32 (``INFERENCE_PRECISION_HINT`` f32), BF16 (the FP32 IR with the bf16
hint, only on a CPU with native BF16: elsewhere OpenVINO would run FP32 under a bf16 label,
so those rows are skipped and a line naming the CPU says so) and INT8 (NNCF post-training
quantisation, :func:`damo_core.export.openvino.quantize`, calibrated on a generated synthetic
set, which is fine for latency; INT8's accuracy cost is measured by
``tests/export/test_openvino.py`` and ``benchmarks/export_latency.py --weights --data``),
plus PyTorch eager (fused) as context. The reference's ONNX gets the same treatment at each
precision: converted to an FP32 IR, run with the bf16 hint, and quantised by the same
``quantize`` on the same calibration images as our model. Every graph includes box decode and
excludes NMS, as the paper times them.

Baseline: ultralytics' yolov8n at 640 px (architecture from its model YAML, no weights),
exported to ONNX by ultralytics itself in a cached side venv (torch 2.14.1 + torchvision
0.29.1 + ultralytics, several GB, made on first use, never by CI: ultralytics needs
torchvision, which does not work beside the project's torch 2.13), timed here at each
precision too (its INT8 calibrated on noise; latency does not depend on the values).
``--no-baseline`` leaves it out: no side venv, and the ratio-to-yolov8n column stays empty.

Timing: every contender runs in interleaved rounds (``damo_core.bench.compare``), every
ratio is taken within a round, and a ratio is the median over rounds with a distribution-free
confidence interval (``damo_core.bench.verdict``). At least ``--min-rounds`` rounds run; more
follow until every judged ratio's interval lies on one side of its goal or is within
``--tolerance`` of its median, or ``--max-rounds`` is reached (then the verdict is
"undecided"), so the run lasts as long as this machine's noise demands. Every runtime gets
the same thread count. Numbers measured on other CPUs (the paper's, issue #9's) are printed
below the table as context only: another CPU's ratios do not carry over, so nothing is
judged against them. On a machine with a CUDA GPU it also builds TensorRT FP16 engines of
T/S/M/L and prints them beside the paper's T4 numbers.

    python benchmarks/latency.py --reference-onnx damoyolo_ns=ref/ns.onnx damoyolo_nm=ref/nm.onnx
    python benchmarks/latency.py --models damoyolo_ns --no-baseline --img-size 320 --runs 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
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
from damo_core.bench.precision import PRECISIONS, CpuFeatures, cpu_features, supported
from damo_core.bench.side_env import SideEnv
from damo_core.bench.verdict import Goal, Interval, Verdict, judge, median_interval, min_rounds
from damo_core.data.fit import model_fit
from damo_core.data.synth import generate
from damo_core.export.common import calibration_images, require
from damo_core.export.formats import export_model, load_source
from damo_core.export.openvino import quantize
from damo_core.models import Detector

HERE = Path(__file__).resolve().parent
BASELINE = "yolov8n"
BASELINE_SIZE = 640
ULTRALYTICS = "8.4.190"  # pinned: the cached ONNX is named after it
SIDE_REQUIREMENTS = ["torch==2.14.1", "torchvision==0.29.1", f"ultralytics=={ULTRALYTICS}",
                     "onnx", "onnxslim", "onnxruntime"]
CACHE = Path(os.environ.get("DAMO_CACHE", "~/.cache/damo")).expanduser()
MODELS = {"damoyolo_ns": 416, "damoyolo_nm": 416, "damoyolo_nl": 416, "damoyolo_t": 640,
          "damoyolo_s": 640}
OURS, REF, BASE = "ours", "ref", "baseline"
EAGER = "eager"
BAR = Goal(0.9)  # ours / reference export, same precision (FP32 and BF16)
INT8_SPEEDUP = Goal(1.5, at_most=False)  # ours FP32 p50 / ours INT8 p50
JUDGED_VS_REF = ("fp32", "bf16")
# Context only, measured on other CPUs, never a pass criterion. The reference's deploy-graph
# ONNX in OpenVINO FP32 on a 2-core AVX-512 CPU as ratios to yolov8n@640 (issue #9), and the
# report's X86 CPU OpenVINO and T4 TensorRT FP16 tables, batch 1, milliseconds
# (../shared/seeds/damo-yolo-report.txt).
ELSEWHERE_REF_RATIO = {"damoyolo_ns": 0.39, "damoyolo_nm": 0.68, "damoyolo_nl": 1.19,
                       "damoyolo_t": 1.91, "damoyolo_s": 3.84}
PAPER_CPU_MS = {"yolov8n": 6.16, "damoyolo_ns": 4.08, "damoyolo_nm": 5.05, "damoyolo_nl": 6.69}
PAPER_T4_MS = {"damoyolo_t": 2.78, "damoyolo_s": 3.83, "damoyolo_m": 5.62, "damoyolo_l": 7.95}


@dataclass(frozen=True)
class Entry:
    """One contender to time: whose graph (``side``), of which model, at which precision."""

    model: str
    side: str
    precision: str

    @property
    def name(self) -> str:
        return " ".join([self.model, *([REF] if self.side == REF else []), self.precision])


def precisions_for(features: CpuFeatures, *, int8: bool) -> tuple[list[str], str | None]:
    """The precisions to time here, and the line to print about any that are skipped."""
    chosen = [p for p in supported(features) if p != "int8" or int8]
    note = None if features.bf16 else (
        f"BF16 rows skipped: this CPU ({features.model}; {features.summary()['isa']}) has no "
        "native BF16 (AMX or AVX-512-BF16), so OpenVINO would run FP32 under a bf16 label")
    return chosen, note


def plan(models: list[str], precisions: list[str], *, references: set[str], baseline: bool,
         eager: bool) -> list[Entry]:
    """Every contender, in timing order: yolov8n and the reference at each of ``precisions``
    beside ours, so that every ratio compares one precision with itself."""
    found = [Entry(BASELINE, BASE, p) for p in precisions] if baseline else []
    for model in models:
        found += [Entry(model, OURS, EAGER)] if eager else []
        found += [Entry(model, OURS, p) for p in precisions]
        found += [Entry(model, REF, p) for p in precisions] if model in references else []
    return found


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


def foreign_ir(onnx_path: Path, out: Path, *, image_size: int,
               calib: list[np.ndarray] | None = None) -> Path:
    """An ONNX made elsewhere (the reference's, yolov8n's) as an FP32 IR, or, with ``calib``,
    an INT8 IR quantised exactly as our export quantises (same ``quantize``, same images).
    Weights stay FP32 in the file, as in our FP32 export (OpenVINO would halve them by
    default)."""
    ov = require("openvino", "openvino", "OpenVINO conversion")
    model = ov.convert_model(str(onnx_path))
    shape = model.input(0).get_partial_shape()
    if shape.is_static and list(shape.to_shape())[2:] != [image_size, image_size]:
        raise SystemExit(f"{onnx_path} takes {list(shape.to_shape())} images, but this run "
                         f"feeds {image_size}x{image_size}; export it at that size or pass "
                         "--img-size")
    if calib is not None:
        model = quantize(require("nncf", "nncf", "INT8 quantisation"), model, calib)
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


class Artefacts:
    """The file each contender runs, made once in ``work``; BF16 runs the FP32 file."""

    def __init__(self, work: Path, *, sizes: dict[str, int], references: dict[str, Path],
                 baseline_onnx: Path | None, calib: int) -> None:
        self.work, self.sizes, self.references = work, sizes, references
        self.baseline_onnx, self.calib = baseline_onnx, calib
        self._models: dict[str, Detector] = {}
        self._files: dict[tuple[str, str, str], Path] = {}
        self._data: Path | None = None

    def model(self, name: str) -> Detector:
        if name not in self._models:
            self._models[name] = load_source(model_name=name).model
        return self._models[name]

    def feed(self, entry: Entry) -> np.ndarray:
        """Pixels 0..255 for DAMO graphs (ours and the reference's), 0..1 for yolov8n."""
        if entry.side == BASE:
            return random_images(BASELINE_SIZE, scale=1 / 255)
        return random_images(self.sizes[entry.model])

    def file(self, entry: Entry) -> Path:
        kind = "int8" if entry.precision == "int8" else "fp32"
        key = (entry.model, entry.side, kind)
        if key not in self._files:
            self._files[key] = self._make(entry.model, entry.side, kind)
        return self._files[key]

    def _data_yaml(self) -> Path:
        if self._data is None:
            self._data = generate(self.work / "calib", num_images=self.calib, image_size=640)
        return self._data

    def _make(self, model: str, side: str, kind: str) -> Path:
        if side == BASE:
            assert self.baseline_onnx is not None
            if kind == "fp32":
                return self.baseline_onnx
            rng = np.random.default_rng(0)  # yolov8n takes 0..1 input
            noise = [rng.uniform(0, 1, (1, 3, BASELINE_SIZE, BASELINE_SIZE)).astype(np.float32)
                     for _ in range(self.calib)]
            return foreign_ir(self.baseline_onnx, self.work / "yolov8n_640_int8.xml",
                              image_size=BASELINE_SIZE, calib=noise)
        size, detector = self.sizes[model], self.model(model)
        int8 = {"int8": True, "data": self._data_yaml(), "calib_count": self.calib}
        if side == OURS:
            return export_model(detector, "openvino", self.work / model, image_size=size,
                                **(int8 if kind == "int8" else {}))
        # The images our export calibrates on: same dataset, split, count, size and fit.
        calib = calibration_images(self._data_yaml(), size, fit=model_fit(detector),
                                   count=self.calib) if kind == "int8" else None
        return foreign_ir(self.references[model], self.work / model / f"reference_{kind}.xml",
                          image_size=size, calib=calib)


def contenders(entries: list[Entry], artefacts: Artefacts, *, threads: int) -> list[Contender]:
    """A runner per entry; OpenVINO is told each entry's precision (the bf16 hint on BF16).

    A reference graph that OpenVINO cannot convert, quantise or compile at some precision (a
    file made elsewhere; the reference's own head, quantised, fails OpenVINO's shape
    inference) leaves that one row without its reference, with a line saying why, instead of
    ending the run; a failure of our own graphs still ends it."""
    found = []
    for entry in entries:
        if entry.precision == EAGER:
            found.append(Contender(entry.name, TorchRunner(artefacts.model(entry.model)),
                                   torch.from_numpy(artefacts.feed(entry))))
        else:
            try:
                runner = make_runner("openvino", artefacts.file(entry), threads=threads,
                                     batch=1, precision=entry.precision)
            except RuntimeError as err:
                if entry.side != REF:
                    raise
                lines = [line.strip() for line in str(err).splitlines() if line.strip()]
                reason = "; ".join([x for x in lines if not x.startswith("Exception from")][:2]
                                   or lines[:1])  # OpenVINO's own words, not its file names
                print(f"skipped: {entry.name}: OpenVINO could not run it ({reason[:300]})",
                      flush=True)
                continue
            found.append(Contender(entry.name, runner, artefacts.feed(entry)))
        print(f"ready: {entry.name}", flush=True)
    return found


@dataclass(frozen=True)
class Row:
    """One model at one precision: latencies, ratios with their intervals, and the verdict
    (``None`` with ``note`` saying why nothing is judged)."""

    model: str
    image_size: int
    precision: str
    ours_ms: float
    ref_ms: float | None
    baseline_ms: float | None
    vs_ref: Interval | None
    vs_baseline: Interval | None
    speedup: Interval | None  # INT8 rows: ours FP32 / ours INT8
    verdict: Verdict | None
    note: str
    per_round: dict[str, list[float]]

    @property
    def verdict_text(self) -> str:
        return self.verdict.describe() if self.verdict is not None else self.note

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("model", "image_size", "precision", "ours_ms",
                                            "ref_ms", "baseline_ms", "note", "per_round")}
        for key in ("vs_ref", "vs_baseline", "speedup", "verdict"):
            value = getattr(self, key)
            out[key] = value.to_dict() if value is not None else None
        return {**out, "verdict_text": self.verdict_text}


def rows(timings: dict[str, Timing], sizes: dict[str, int], *, confidence: float = 0.95,
         tolerance: float = 0.05) -> list[Row]:
    """One row per (model, precision) timed, in :data:`PRECISIONS` order after eager."""
    return [_row(timings, model, size, precision, confidence, tolerance)
            for model, size in sizes.items() for precision in (EAGER, *PRECISIONS)
            if Entry(model, OURS, precision).name in timings]


def _row(timings: dict[str, Timing], model: str, size: int, precision: str, confidence: float,
         tolerance: float) -> Row:
    ours, ref = Entry(model, OURS, precision).name, Entry(model, REF, precision).name
    base = Entry(BASELINE, BASE, "fp32" if precision == EAGER else precision).name

    def per_round(num: str, den: str) -> list[float] | None:
        return timings[num].ratios_to(timings[den]) if {num, den} <= timings.keys() else None

    series = {"ours/ref": per_round(ours, ref), "ours/yolov8n": per_round(ours, base),
              "int8 speed-up": (per_round(Entry(model, OURS, "fp32").name, ours)
                                if precision == "int8" else None)}
    found = {k: v for k, v in series.items() if v is not None}
    interval = {k: median_interval(v, confidence) for k, v in found.items()}
    verdict, note = None, ""
    if precision == "int8":
        verdict = judge(found["int8 speed-up"], INT8_SPEEDUP, confidence=confidence,
                        tolerance=tolerance)
    elif precision in JUDGED_VS_REF and "ours/ref" in found:
        verdict = judge(found["ours/ref"], BAR, confidence=confidence, tolerance=tolerance)
    else:
        note = "no reference given" if precision in JUDGED_VS_REF else "not judged"
    p50 = lambda name: timings[name].p50_ms if name in timings else None  # noqa: E731
    return Row(model, size, precision, timings[ours].p50_ms, p50(ref), p50(base),
               interval.get("ours/ref"), interval.get("ours/yolov8n"),
               interval.get("int8 speed-up"), verdict, note, found)


def stop_rule(sizes: dict[str, int], *, confidence: float, tolerance: float,
              log: bool = True) -> Callable[[dict[str, Timing]], bool]:
    """``until`` for :func:`interleaved`: stop once no judged goal is undecided (true at once
    when nothing is judged)."""
    def settled(timings: dict[str, Timing]) -> bool:
        found = rows(timings, sizes, confidence=confidence, tolerance=tolerance)
        undecided = [r for r in found if r.verdict is not None and not r.verdict.settled]
        if log:
            print(f"  after {len(next(iter(timings.values())).rounds)} rounds: "
                  f"{len(undecided)} judged goals undecided", flush=True)
        return not undecided
    return settled


def _goal(row: Row) -> str:
    if row.precision == "int8":
        return f"fp32/int8 {INT8_SPEEDUP}"
    return f"ours/ref {BAR}" if row.precision in JUDGED_VS_REF else "-"


def _ci(interval: Interval | None) -> str:
    if interval is None:
        return "-"
    if not math.isfinite(interval.low):
        return f"{interval.median:.3f} [too few rounds]"
    return f"{interval.median:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def table(found: list[Row], *, rounds: int, threads: int, confidence: float) -> Table:
    host = host_info()
    out = Table(title=f"OpenVINO latency, batch 1, {threads} threads, p50 = median over "
                      f"{rounds} interleaved rounds; ratios: median [{confidence:.0%} CI] of "
                      f"per-round ratios, same precision on both sides\nhost: {host['cpu']} "
                      f"(isa: {host['isa']}; bf16: {host['bf16']})")
    for column in ("model", "size", "precision", "ours ms", "ref ms", "ours / ref",
                   "ours / yolov8n", "int8 speed-up", "goal", "verdict"):
        out.add_column(column, justify="right" if column in ("size", "ours ms", "ref ms")
                       else "left")
    ms = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in found:
        out.add_row(r.model, str(r.image_size), r.precision, ms(r.ours_ms), ms(r.ref_ms),
                    _ci(r.vs_ref), _ci(r.vs_baseline), _ci(r.speedup), _goal(r),
                    r.verdict_text)
    return out


def findings(found: list[Row]) -> list[str]:
    """Lines a reader must not miss (the README must say so too): where a model's export
    stays slower than yolov8n's at the same precision here."""
    return [f"{r.model} is slower than yolov8n at {r.precision} on this CPU: ratio "
            f"{_ci(r.vs_baseline)} (the whole interval above 1)"
            for r in found if r.precision != EAGER and r.vs_baseline is not None
            and r.vs_baseline.low > 1.0]


def context_lines() -> list[str]:
    return ["Measured on other CPUs, printed as context only (not judged: ratios do not carry "
            "over between CPUs):",
            f"  reference export / yolov8n@640, OpenVINO FP32, 2-core AVX-512 CPU (issue #9): "
            f"{ELSEWHERE_REF_RATIO}",
            f"  the paper's X86 CPU, OpenVINO, ms: {PAPER_CPU_MS}"]


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
                               warmup=args.warmup, runs=args.runs * args.min_rounds)
        print(f"TensorRT fp16 {name}@640 on {torch.cuda.get_device_name()}: p50 "
              f"{result.stats.p50_ms:.2f} ms (paper, T4: {paper} ms)", flush=True)


def _model_path(item: str) -> tuple[str, Path]:
    name, _, path = item.partition("=")
    if name not in MODELS or not Path(path).is_file():
        raise SystemExit(f"--reference-onnx {item!r}: expected MODEL=PATH with MODEL in "
                         f"{list(MODELS)} and an existing file")
    return name, Path(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    add("--img-size", type=int, help="input size of every DAMO model and reference file "
        "(default: 416 for Ns/Nm/Nl, 640 for T/S); yolov8n stays at 640")
    add("--threads", type=int, default=os.cpu_count() or 1)
    add("--min-rounds", type=int, default=6, help="rounds always timed; at --confidence 0.95 "
        "the first interval of a median exists at 6")
    add("--max-rounds", type=int, default=30, help="rounds at most; a goal still undecided "
        "then is reported as undecided")
    add("--confidence", type=float, default=0.95, help="coverage of each ratio's interval")
    add("--tolerance", type=float, default=0.05, help="stop once every judged interval that "
        "straddles its goal is within this fraction of its median (the median decides)")
    add("--runs", type=int, default=20, help="timed calls per contender per round")
    add("--warmup", type=int, default=5, help="untimed calls per contender per round")
    add("--calib", type=int, default=32, help="synthetic images generated for INT8 "
        "calibration (its train split calibrates ours and the reference alike)")
    add("--no-int8", dest="int8", action="store_false")
    add("--no-eager", dest="eager", action="store_false")
    add("--no-baseline", dest="baseline", action="store_false", help="leave yolov8n out (no "
        "side venv): no ratios to yolov8n")
    add("--venv", type=Path, default=CACHE / "yolov8-export-venv")
    add("--json", type=Path, default=Path("runs/bench/latency.json"))
    add("--reference-onnx", nargs="*", default=[], metavar="MODEL=PATH",
        help="the reference implementation's own deploy-graph ONNX of MODEL (decode, no NMS; "
             "made by you with its tools), timed in the same rounds at every precision; FP32 "
             "and BF16 rows pass at ours/ref <= 0.9")
    args = parser.parse_args(argv)
    args.reference_onnx = dict(_model_path(item) for item in args.reference_onnx)
    if not set(args.reference_onnx) <= set(args.models):
        parser.error(f"--reference-onnx names {sorted(set(args.reference_onnx) - set(args.models))}"
                     ", which --models leaves out")
    if not 1 <= args.min_rounds <= args.max_rounds:
        parser.error("need 1 <= --min-rounds <= --max-rounds")
    if args.min_rounds < min_rounds(args.confidence):
        print(f"note: a {args.confidence:.0%} interval needs {min_rounds(args.confidence)} "
              "rounds; until then every judged goal is undecided and rounds continue")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = {m: args.img_size or MODELS[m] for m in args.models}
    torch.set_num_threads(args.threads)
    features = cpu_features()
    precisions, skipped = precisions_for(features, int8=args.int8)
    if skipped:
        print(skipped)
    baseline_onnx = None
    if args.baseline:
        CACHE.mkdir(parents=True, exist_ok=True)
        baseline_onnx = yolov8n_onnx(args.venv, CACHE)
        print(f"baseline: {baseline_onnx}")
    entries = plan(args.models, precisions, references=set(args.reference_onnx),
                   baseline=args.baseline, eager=args.eager)
    with tempfile.TemporaryDirectory(prefix="damo-latency-") as tmp:
        artefacts = Artefacts(Path(tmp), sizes=sizes, references=args.reference_onnx,
                              baseline_onnx=baseline_onnx, calib=args.calib)
        found = contenders(entries, artefacts, threads=args.threads)
        report = lambda i, stats: print(  # noqa: E731
            f"round {i + 1}: " + ", ".join(f"{k} {v.p50_ms:.1f}" for k, v in stats.items()),
            flush=True)
        timings = interleaved(found, rounds=args.min_rounds, max_rounds=args.max_rounds,
                              runs=args.runs, warmup=args.warmup, on_round=report,
                              until=stop_rule(sizes, confidence=args.confidence,
                                              tolerance=args.tolerance))
    result = rows(timings, sizes, confidence=args.confidence, tolerance=args.tolerance)
    used = len(next(iter(timings.values())).rounds)
    Console(width=220).print(table(result, rounds=used, threads=args.threads,
                                   confidence=args.confidence))
    print(f"rounds used: {used} (min {args.min_rounds}, max {args.max_rounds}); a goal is "
          f"decided when its {args.confidence:.0%} interval lies on one side of it, or the "
          f"interval is within ±{args.tolerance:.0%} of its median (the median decides)")
    if args.img_size and args.baseline:
        print(f"note: DAMO models at {args.img_size} px against yolov8n at {BASELINE_SIZE} px")
    for line in [*findings(result), *context_lines()]:
        print(line)
    tensorrt_rows(args)
    doc = {"host": host_info(), "threads": args.threads, "runs": args.runs,
           "warmup": args.warmup, "rounds": used, "min_rounds": args.min_rounds,
           "max_rounds": args.max_rounds, "confidence": args.confidence,
           "tolerance": args.tolerance, "precisions": precisions, "skipped": skipped,
           "baseline": f"{BASELINE} @{BASELINE_SIZE}" if args.baseline else None,
           "baseline_onnx": str(baseline_onnx) if baseline_onnx else None,
           "references": {k: str(v) for k, v in args.reference_onnx.items()},
           "rows": [r.to_dict() for r in result],
           "timings": {k: v.to_dict() for k, v in timings.items()}}
    print(f"report: {atomic_write_text(args.json, json.dumps(doc, indent=2) + chr(10))}")


if __name__ == "__main__":
    main()
