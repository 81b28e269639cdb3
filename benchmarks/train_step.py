"""Training throughput and peak memory per model and variant, against the data loader and FP32.

Baselines: the data loader, and the model's own ``fp32`` variant. For each model at a fixed
batch it prints images/s of a full training step (forward, AlignOTA + losses, backward, optimiser
step) for every variant asked, peak resident memory, the ratio to the loader's own images/s
with the same augmentation (which side bottlenecks) and the ratio to ``fp32`` (what the
variant buys). A variant is a precision, ``fp32`` or ``bf16`` (the forward under CPU
autocast, as the trainer's ``cpu_precision: bf16`` runs it), optionally with ``-cl`` for
channels-last tensors, and with ``-loop`` for PyTorch's per-parameter optimiser loop instead
of the fused kernels the trainer uses (``--optimizer``: SGD, the paper's, or AdamW, the nano
recipes' and ``cpu_quick``'s). Every variant runs in its own fresh process, in turn, ``--repeats``
times; the ratio to ``fp32`` is the median of the ratios within each repeat, so drift of the
machine between repeats cancels. The CPU is named in the header: BF16 is only fast where the
CPU has native BF16 arithmetic (AMX or AVX-512-BF16).

    python benchmarks/train_step.py --models damoyolo_ns damoyolo_t --batch 8 --img-size 256
    python benchmarks/train_step.py --models damoyolo_ns --variants fp32 bf16 fp32-cl bf16-cl
    python benchmarks/train_step.py --models damoyolo_l --img-size 96 --optimizer adamw \
        --variants fp32-loop
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from damo_core.bench.precision import cpu_features
from damo_core.data.augment import AugmentConfig
from damo_core.data.coco import CocoDetection, load_dataset_yaml
from damo_core.data.loader import DetectionDataset, collate
from damo_core.data.synth import generate
from damo_core.models import build_model, list_models
from damo_core.train.amp import TrainPrecision
from damo_core.train.layout import FORMATS
from damo_core.train.optim import build_optimizer

PRECISIONS = ("fp32", "bf16")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loader_throughput(dataset: DetectionDataset, batch: int, steps: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True,
                                         num_workers=0, collate_fn=collate)
    start, seen = time.perf_counter(), 0
    for i, (images, _) in enumerate(loader):
        seen += images.shape[0]
        if i + 1 >= steps:
            break
    return seen / (time.perf_counter() - start)


def parse_variant(variant: str) -> tuple[str, bool, bool]:
    """``"bf16-cl-loop"`` -> (``"bf16"``, channels-last, fused optimiser)."""
    precision, *flags = variant.split("-")
    if precision not in PRECISIONS or any(f not in ("cl", "loop") for f in flags) \
            or len(set(flags)) < len(flags):
        raise argparse.ArgumentTypeError(f"variant {variant!r}: expected one of {PRECISIONS}, "
                                         "optionally followed by -cl and/or -loop")
    return precision, "cl" in flags, "loop" not in flags


def measure_in_child(name: str, variant: str, optimizer: str, batches: list,
                     num_classes: int) -> tuple[float, float]:
    """Images/s and the peak RSS of a fresh process that trained only ``name``: in one process
    the peak would be the largest model measured so far, not this one's."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_child, (name, variant, optimizer, batches, num_classes))


def _child(name: str, variant: str, optimizer: str, batches: list,
           num_classes: int) -> tuple[float, float]:
    return step_throughput(name, variant, optimizer, batches, num_classes), peak_rss_mb()


def step_throughput(name: str, variant: str, optimizer: str, batches: list, num_classes: int,
                    warmup: int = 1) -> float:
    precision, channels_last, fused = parse_variant(variant)
    autocast = TrainPrecision(precision, "cpu").autocast
    layout = FORMATS["channels_last" if channels_last else "contiguous"]
    model = build_model(name, num_classes=num_classes).train().to(memory_format=layout)
    opt = build_optimizer(model, lr=1e-3, momentum=0.9, weight_decay=5e-4, name=optimizer,
                          fused=fused)
    times = []
    for i, (images, targets) in enumerate(batches):
        images = images.contiguous(memory_format=layout)
        start = time.perf_counter()
        with autocast():  # the forward only, as the trainer does
            outputs = model(images)
        loss = model.head.loss([o.float() for o in outputs], targets)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return batches[0][0].shape[0] * len(times) / sum(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list_models())
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--variants", nargs="+", default=["fp32"],
                        help="fp32, bf16, each optionally -cl (channels-last) and -loop "
                             "(per-parameter optimiser loop); fp32 is always measured as the "
                             "baseline")
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument("--repeats", type=int, default=1,
                        help="times every variant is measured, in turn")
    args = parser.parse_args()
    for variant in args.variants:
        parse_variant(variant)
    variants = ["fp32", *(v for v in args.variants if v != "fp32")]
    with tempfile.TemporaryDirectory() as tmp:
        yaml_path = generate(Path(tmp) / "synth", num_images=96, image_size=args.img_size)
        source = CocoDetection.from_spec(load_dataset_yaml(yaml_path), "train")
        dataset = DetectionDataset(source, train=True, image_size=args.img_size,
                                   augment=AugmentConfig(), seed=0)
        data_ips = loader_throughput(dataset, args.batch, args.steps)
        batches = [collate([dataset[(s * args.batch + j) % len(dataset)]
                            for j in range(args.batch)]) for s in range(args.steps + 1)]
    cpu = cpu_features()
    print(f"{cpu.model} ({cpu.summary()['isa']}, native BF16: {cpu.bf16}); torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.img_size}px, {args.optimizer}; baselines: data loader (mosaic+mixup, 0 workers) "
          f"{data_ips:.1f} img/s, and each model's fp32")
    print(f"{'model':<12} {'variant':<12} {'train img/s':>12} {'peak RSS MB':>12} "
          f"{'model/loader':>13} {'vs fp32 (min-max)':>20}")
    for name in args.models:
        runs: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        for _ in range(args.repeats):
            for v in variants:
                runs[v].append(measure_in_child(name, v, args.optimizer, batches,
                                                source.num_classes))
        for v in variants:
            ips = statistics.median(r[0] for r in runs[v])
            rss = max(r[1] for r in runs[v])
            ratios = [r[0] / b[0] for r, b in zip(runs[v], runs["fp32"], strict=True)]
            spread = f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
            print(f"{name:<12} {v:<12} {ips:>12.2f} {rss:>12.0f} {ips / data_ips:>13.2f} "
                  f"{spread:>20}")


if __name__ == "__main__":
    main()
