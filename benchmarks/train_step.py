"""Training throughput and peak memory per model, and data-loader vs model throughput.

Baseline: the data loader. For each model at a fixed batch it prints images/s of a full
training step (forward, AlignOTA + losses, backward, SGD step), peak resident memory, and the
loader's own images/s with the same augmentation, so the ratio shows which side bottlenecks.

    python benchmarks/train_step.py --models damoyolo_ns damoyolo_t --batch 8 --img-size 256
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import torch

from damo_core.data.augment import AugmentConfig
from damo_core.data.coco import CocoDetection, load_dataset_yaml
from damo_core.data.loader import DetectionDataset, collate
from damo_core.data.synth import generate
from damo_core.models import build_model, list_models
from damo_core.train.optim import build_optimizer


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


def measure_in_child(name: str, batches: list, num_classes: int) -> tuple[float, float]:
    """Images/s and the peak RSS of a fresh process that trained only ``name``: in one process
    the peak would be the largest model measured so far, not this one's."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_child, (name, batches, num_classes))


def _child(name: str, batches: list, num_classes: int) -> tuple[float, float]:
    return step_throughput(name, batches, num_classes), peak_rss_mb()


def step_throughput(name: str, batches: list, num_classes: int, warmup: int = 1) -> float:
    model = build_model(name, num_classes=num_classes).train()
    opt = build_optimizer(model, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    times = []
    for i, (images, targets) in enumerate(batches):
        start = time.perf_counter()
        loss = model.head.loss(model(images), targets)["loss"]
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        yaml_path = generate(Path(tmp) / "synth", num_images=96, image_size=args.img_size)
        source = CocoDetection.from_spec(load_dataset_yaml(yaml_path), "train")
        dataset = DetectionDataset(source, train=True, image_size=args.img_size,
                                   augment=AugmentConfig(), seed=0)
        data_ips = loader_throughput(dataset, args.batch, args.steps)
        batches = [collate([dataset[(s * args.batch + j) % len(dataset)]
                            for j in range(args.batch)]) for s in range(args.steps + 1)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.img_size}px; baseline = data loader (mosaic+mixup, 0 workers): "
          f"{data_ips:.1f} img/s")
    print(f"{'model':<12} {'train img/s':>12} {'peak RSS MB':>12} {'model/loader':>13}")
    for name in args.models:
        ips, rss = measure_in_child(name, batches, source.num_classes)
        print(f"{name:<12} {ips:>12.2f} {rss:>12.0f} {ips / data_ips:>13.2f}")


if __name__ == "__main__":
    main()
