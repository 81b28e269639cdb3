"""Eager PyTorch forward latency, batch 1, CPU: fused deploy graph vs the training graph.

Baseline: the unfused (training-graph) model in eval mode. Prints, per model, the median and p90
latency of both and the speed-up ratio (unfused / fused) in one run.

    python benchmarks/forward.py                 # every model at its own input size
    python benchmarks/forward.py damoyolo_t --runs 20 --img-size 320
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from damo_core.models import build_model, list_models


def time_forward(model: torch.nn.Module, size: int, runs: int, warmup: int) -> list[float]:
    x = torch.rand(1, 3, size, size) * 255
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            start = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list_models())
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch 1, {args.runs} timed runs")
    print(f"{'model':<12} {'size':>5} {'unfused p50 ms':>15} {'fused p50 ms':>13} "
          f"{'fused p90 ms':>13} {'speed-up (unfused/fused)':>25}")
    for name in args.models:
        model = build_model(name).eval()
        size = args.img_size or model.config.image_size
        fused = copy.deepcopy(model).fuse()
        base = time_forward(model, size, args.runs, args.warmup)
        fast = time_forward(fused, size, args.runs, args.warmup)
        b50, f50 = statistics.median(base), statistics.median(fast)
        print(f"{name:<12} {size:>5} {b50:>15.1f} {f50:>13.1f} {percentile(fast, 0.9):>13.1f} "
              f"{b50 / f50:>25.2f}")


if __name__ == "__main__":
    main()
