"""NMS cost: the blockwise :func:`batched_nms` vs the per-candidate Python loop it replaced.

Baseline: "old loop", the library's previous NMS, kept here only for this comparison: the
``[n, n]`` IoU matrix computed once, then a Python walk over every candidate in score order,
with classes kept apart by shifting each class's boxes by a class-dependent offset.

Candidates look like a detector's output after the score threshold: ``--objects`` objects,
each seen by many jittered boxes, mostly of the object's class and sometimes of a confused
one, with random scores. For each candidate count the script prints the median time of the old
loop, of the new code uncapped, and of the new code with ``max_detections`` (postprocess's
default, 100), each ratio against the old loop, and whether the uncapped keep list equals the
old loop's. It should: these scores have no ties, where the old loop's unstable sort could
order boxes differently, so a "NO" means a bug or the old class offsets' float32 rounding
moving an IoU across the threshold. A "chain" row shows the input that makes the new code
iterate most: boxes sliding one pixel at a time so that each suppresses the next, so each
block's fixed-point resolution takes about as many steps as the block has boxes.

    python benchmarks/nms.py                 # 1 thread, 100/1000/2000/5000 candidates
    python benchmarks/nms.py --threads 2 --repeats 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from damo_core.bench.latency import host_info
from damo_core.models.layers.box_ops import batched_nms, pairwise_iou

BASELINE = "old loop"


def old_loop_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """The previous ``nms``: vectorised IoU matrix, then a Python loop over every candidate."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    ranked = boxes[order]
    over = (pairwise_iou(ranked, ranked) > iou_threshold).triu(diagonal=1).cpu()
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    keep_rank: list[int] = []
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep_rank.append(i)
        suppressed |= over[i]
    return order[torch.tensor(keep_rank, dtype=torch.long, device=boxes.device)]


def old_loop_batched(boxes: Tensor, scores: Tensor, class_ids: Tensor, thr: float) -> Tensor:
    """The previous ``batched_nms``: per-class coordinate offsets, then :func:`old_loop_nms`."""
    span = boxes.max() - boxes.min() + 1
    return old_loop_nms(boxes + (class_ids.to(boxes.dtype) * span)[:, None], scores, thr)


def detector_like(n: int, objects: int, classes: int, seed: int) -> tuple[Tensor, ...]:
    """``n`` candidates clustered on ``objects`` objects in a 640 px image."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(objects, 2, generator=g) * 560 + 40
    size = torch.rand(objects, 2, generator=g) * 150 + 20
    label = torch.randint(0, classes, (objects,), generator=g)
    owner = torch.randint(0, objects, (n,), generator=g)
    jitter = 1 + 0.25 * torch.randn(n, 4, generator=g)
    half = size[owner].repeat(1, 2) / 2 * jitter.abs()
    c = centre[owner].repeat(1, 2)
    boxes = torch.cat([c[:, :2] - half[:, :2], c[:, 2:] + half[:, 2:]], dim=1)
    confused = torch.rand(n, generator=g) < 0.2
    cls = torch.where(confused, torch.randint(0, classes, (n,), generator=g), label[owner])
    return boxes, torch.rand(n, generator=g), cls


def chain(n: int) -> tuple[Tensor, ...]:
    """``n`` boxes 10 px wide, 1 px apart, scores falling left to right, one class: IoU 9/11
    with the next box, 8/12 with the one after, so at IoU 0.7 every other box is kept."""
    x = torch.arange(n, dtype=torch.float32)
    boxes = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], dim=1)
    return boxes, torch.linspace(1, 0, n), torch.zeros(n, dtype=torch.long)


def median_ms(fn: Callable[[], Tensor], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 2000, 5000])
    parser.add_argument("--objects", type=int, default=30)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--iou", type=float, default=0.7, help="postprocess's default")
    parser.add_argument("--max-detections", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steady figures on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    host = host_info()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"CPU {host['cpu']} ({cores} usable cores, load {load}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; IoU {args.iou}, {args.classes} classes, "
          f"median of {args.repeats}; baseline = {BASELINE}")
    cap = args.max_detections
    print(f"{'case':<16} {'kept':>5} {BASELINE + ' ms':>12} {'new ms':>9} {'ratio':>7} "
          f"{f'new cap{cap} ms':>14} {'ratio':>7}  same keep")
    cases = [(f"detector {n}", detector_like(n, args.objects, args.classes, seed=n))
             for n in args.sizes]
    cases.append((f"chain {max(args.sizes)}", chain(max(args.sizes))))
    for name, (boxes, scores, cls) in cases:
        old = old_loop_batched(boxes, scores, cls, args.iou)
        new = batched_nms(boxes, scores, cls, args.iou)
        t_old = median_ms(lambda b=boxes, s=scores, c=cls: old_loop_batched(b, s, c, args.iou),
                          args.repeats)
        t_new = median_ms(lambda b=boxes, s=scores, c=cls: batched_nms(b, s, c, args.iou),
                          args.repeats)
        t_cap = median_ms(lambda b=boxes, s=scores, c=cls: batched_nms(
            b, s, c, args.iou, max_detections=cap), args.repeats)
        same = "yes" if torch.equal(old, new) else "NO"
        print(f"{name:<16} {new.numel():>5} {t_old:>12.2f} {t_new:>9.2f} {t_old / t_new:>6.1f}x "
              f"{t_cap:>14.2f} {t_old / t_cap:>6.1f}x  {same}")


if __name__ == "__main__":
    main()
