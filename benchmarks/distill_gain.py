"""Does feature distillation help? Teacher once, then the same student with and without CWD.

On the bundled synthetic set: trains a teacher (damoyolo_t by default: on CPU it is cheaper per
step than the nano models yet has 6x the student's parameters), then for each seed trains the
student twice with identical settings, seed, data order and initial weights -- once plain, once
distilled (distillation for ``epochs - no_aug_epochs`` epochs, then the teacher-free no-mosaic
stage) -- and prints both final APs and the difference. Both runs clip gradients at the
distillation's norm so the distillation term is the only difference.

Defaults give the student about 140 optimiser steps (96 training images, batch 8, 12 epochs at
128 px) and the teacher twice as many: with fewer, neither model has learned to classify when
the comparison is made, and the comparison measures only how fast classification starts. Far
from the paper's 300 epochs all the same; the gain is noisy, so use ``--seeds`` and read the
mean with its spread (AMD EPYC, 3 seeds: +0.0001 AP at 12 epochs, stdev 0.005; +0.013 AP at
``--epochs 24``, stdev 0.029; +0.0136 AP at ``--epochs 36``, stdev 0.0114, every seed
positive). With ``--out``, runs already finished there (``metrics.json``) are reused, so an
interrupted comparison continues where it stopped.

    python benchmarks/distill_gain.py --seeds 3 --out runs/distill_gain
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from damo_core.data.synth import generate
from damo_core.train import (
    TrainConfig,
    TrainResult,
    load_train_config,
    load_trained,
    train,
)
from damo_core.train.distill import DistillConfig, distill


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="damoyolo_t")
    p.add_argument("--student", default="damoyolo_ns")
    p.add_argument("--teacher-epochs", type=int, default=24)
    p.add_argument("--teacher-weights", type=Path, default=None,
                   help="reuse a teacher best.pt trained on the same synthetic set")
    p.add_argument("--epochs", type=int, default=12, help="student epochs (both runs)")
    p.add_argument("--no-aug-epochs", type=int, default=2, help="final teacher-free epochs")
    p.add_argument("--seeds", type=int, default=1, help="student seeds 0..N-1")
    p.add_argument("--images", type=int, default=128, help="synthetic images (75%% train)")
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--img-size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--mosaic", type=float, default=0.0,
                   help="mosaic probability; 0 because short runs lose AP to mosaic")
    p.add_argument("--weight-start", type=float, default=0.1,
                   help=f"distillation weight at the first step (the reference's, for long "
                        f"schedules: {DistillConfig.weight_start}; see damo_core.train.distill)")
    p.add_argument("--weight-end", type=float, default=0.01,
                   help=f"... at the last distilled step (reference: {DistillConfig.weight_end})")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (0 = torch default); 1 is faster on a busy 2-core box")
    p.add_argument("--out", type=Path, default=None, help="keep runs here (default: temp dir)")
    return p.parse_args(argv)


def train_config(args: argparse.Namespace, *, seed: int, epochs: int, clip: float) -> TrainConfig:
    """AdamW short-run settings (the nano recipes' optimiser); evaluate only at the end."""
    return load_train_config(overrides={
        "epochs": epochs, "batch": args.batch, "img_size": args.img_size, "optimizer": "adamw",
        "lr_per_image": 0.00025, "weight_decay": 0.01, "warmup_epochs": 1,
        "no_aug_epochs": args.no_aug_epochs, "ema_tau": 200.0, "eval_interval": epochs,
        "precise_bn_batches": 4, "workers": 0, "seed": seed, "grad_clip": clip,
        "augment": {"mosaic_prob": args.mosaic},
    })


def final_ap(result: TrainResult) -> dict[str, float]:
    return {"AP": float(result.final.get("AP", float("nan"))),
            "AP50": float(result.final.get("AP50", float("nan")))}


def reuse_or_train(out_dir: Path, train: Callable[[], TrainResult]) -> dict[str, float]:
    """The final AP of the run in ``out_dir``: read from its ``metrics.json`` when a previous
    invocation finished it, else trained now (an unfinished run directory is started over)."""
    metrics = out_dir / "metrics.json"
    if metrics.is_file() and (out_dir / "best.pt").is_file():
        saved = json.loads(metrics.read_text())
        return {"AP": float(saved["AP"]), "AP50": float(saved["AP50"])}
    if out_dir.exists():
        shutil.rmtree(out_dir)
    return final_ap(train())


def teacher_run(args: argparse.Namespace, data: Path, out: Path,
                clip: float) -> tuple[Path, dict[str, float]]:
    """Train the teacher, or take ``--teacher-weights`` with the AP it recorded."""
    if args.teacher_weights is not None:
        _, meta = load_trained(args.teacher_weights)
        metrics = meta.get("metrics") or {}
        return args.teacher_weights, {"AP": float(metrics.get("AP", float("nan"))),
                                      "AP50": float(metrics.get("AP50", float("nan")))}
    cfg = train_config(args, seed=0, epochs=args.teacher_epochs, clip=clip)
    where = out / "teacher"
    ap = reuse_or_train(where, partial(train, args.teacher, data, where, cfg, progress=False))
    return where / "best.pt", ap


def run(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    dcfg = DistillConfig(weight_start=args.weight_start, weight_end=args.weight_end)
    data = generate(out / "synth", num_classes=args.classes, num_images=args.images,
                    image_size=args.img_size, seed=0, overwrite=True)
    started = time.perf_counter()
    teacher_pt, teacher_ap = teacher_run(args, data, out, dcfg.grad_clip)
    report: dict[str, Any] = {"teacher": {"model": args.teacher, **teacher_ap},
                              "student": args.student, "distill": dcfg.as_dict(), "seeds": []}
    print(f"teacher {args.teacher}: AP {teacher_ap['AP']:.4f} AP50 {teacher_ap['AP50']:.4f} "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    for seed in range(args.seeds):
        cfg = train_config(args, seed=seed, epochs=args.epochs, clip=dcfg.grad_clip)
        plain_dir, taught_dir = out / f"plain_{seed}", out / f"distill_{seed}"
        plain = reuse_or_train(plain_dir, partial(train, args.student, data, plain_dir, cfg,
                                                  progress=False))
        taught = reuse_or_train(taught_dir, partial(distill, args.student, teacher_pt, data,
                                                    taught_dir, cfg, dcfg, progress=False))
        row = {"seed": seed, "plain": plain, "distilled": taught}
        row["gain_AP"] = row["distilled"]["AP"] - row["plain"]["AP"]
        row["gain_AP50"] = row["distilled"]["AP50"] - row["plain"]["AP50"]
        report["seeds"].append(row)
        if teacher_ap["AP"] <= row["plain"]["AP"]:
            print(f"  note: the teacher (AP {teacher_ap['AP']:.4f}) is no better than the plain "
                  "student; distillation can only pull it down -- train the teacher longer")
        print(f"seed {seed}: plain AP {row['plain']['AP']:.4f} AP50 {row['plain']['AP50']:.4f}"
              f" | distilled AP {row['distilled']['AP']:.4f} AP50 "
              f"{row['distilled']['AP50']:.4f} | gain AP {row['gain_AP']:+.4f} AP50 "
              f"{row['gain_AP50']:+.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    gains = [r["gain_AP"] for r in report["seeds"]]
    report["mean_gain_AP"] = statistics.fmean(gains)
    report["stdev_gain_AP"] = statistics.stdev(gains) if len(gains) > 1 else 0.0
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.no_aug_epochs >= args.epochs:
        raise SystemExit("--no-aug-epochs must be below --epochs (there must be a distill stage)")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report = run(args, args.out)
    else:
        with tempfile.TemporaryDirectory(prefix="distill_gain-") as tmp:
            report = run(args, Path(tmp))
    print(f"mean AP gain over {args.seeds} seed(s): {report['mean_gain_AP']:+.4f} "
          f"(stdev {report['stdev_gain_AP']:.4f})")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
