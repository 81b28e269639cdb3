"""The accuracy an export pays for its precision, and ``precision auto``: the fastest precision
this CPU runs within the accuracy limits, chosen by measuring, not assumed.

Why measure instead of a rule: whether INT8 or BF16 pays depends on the model and the CPU
(depthwise-heavy nano graphs can get slower in INT8), and what they cost in accuracy depends
on the trained weights. So ``auto`` exports every candidate (FP32; BF16 where the CPU has it;
INT8 calibrated on the train split), times each on this machine (p50 over ``runs`` calls,
batch 1), evaluates each on the val split, and keeps the fastest whose AP50 loss against FP32
is within :data:`damo_core.bench.precision.AP50_LOSS_LIMIT`. The table of all candidates
travels with the export's metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from damo_core.bench.precision import Measured, auto_candidates, choose, cpu_features
from damo_core.data.scratch import scratch_dir
from damo_core.errors import UserInputError
from damo_core.eval.engine import ExportedDetector
from damo_core.models import Detector

SCRATCH_PREFIX = ".damo-auto-"


def export_accuracy(exported: Path | ExportedDetector, data: str | Path, *,
                    split: str = "val", threads: int | None = None) -> dict[str, float]:
    """COCO AP and AP50 of an exported file (or one already opened) on ``split`` of ``data``,
    through the same detection loop and scoring as ``damo eval``."""
    from damo_core.eval.evaluator import evaluate
    from damo_core.steps._common import dataset_ref

    detector = exported if isinstance(exported, ExportedDetector) else ExportedDetector(
        exported, threads=threads)
    result = evaluate(detector, dataset_ref(data), split=split, workers=0, progress=False)
    return {"AP": float(result.AP), "AP50": float(result.AP50)}


def _latency_ms(detector: ExportedDetector, image_size: int, *, runs: int) -> float:
    from damo_core.bench.latency import benchmark, random_images

    return benchmark(detector._runner, random_images(image_size), warmup=max(3, runs // 4),
                     runs=runs).p50_ms


def choose_precision(model: Detector, out_dir: str | Path, *, image_size: int,
                     data: str | Path | None, class_names: list[str] | None,
                     threads: int | None = None, runs: int = 30) -> tuple[Path, dict[str, Any]]:
    """Export every candidate precision of ``model`` as OpenVINO IR, measure, publish the
    chosen one into ``out_dir``; returns its path and ``precision``, ``precision_reason`` and
    ``precision_candidates`` (one row per candidate: p50 ms, AP, AP50)."""
    from damo_core.export import openvino

    if data is None:
        raise UserInputError("precision auto measures every precision's accuracy on the val "
                             "split and calibrates INT8 on the train split: pass data")
    features = cpu_features()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with scratch_dir(out_dir, SCRATCH_PREFIX) as tmp:
        paths = {}
        for precision in auto_candidates(features):
            paths[precision] = openvino.export(
                model, Path(tmp) / precision, image_size=image_size, int8=precision == "int8",
                bf16=precision == "bf16", data=data if precision == "int8" else None,
                class_names=class_names)
            detector = ExportedDetector(paths[precision], threads=threads)  # compiled once
            rows.append({"precision": precision,
                         "p50_ms": _latency_ms(detector, image_size, runs=runs),
                         **export_accuracy(detector, data)})
        chosen, reason = choose(Measured(r["precision"], r["p50_ms"], r["AP50"]) for r in rows)
        final = openvino.publish_pair(paths[chosen], out_dir)
    skipped = [] if features.bf16 else [f"bf16 not measured: {features.model} has no native "
                                        "BF16"]
    return final, {"precision": chosen, "precision_reason": reason,
                   "precision_candidates": rows, "precision_notes": skipped,
                   "cpu": features.model}
