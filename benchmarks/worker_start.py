"""Training epoch time by how the data-loader workers start: forked from the training process
(the baseline, what PyTorch's DataLoader does on Linux unless told otherwise), from a
forkserver (the trainer's default, ``worker_start=auto``), or no workers at all.

Why it matters: a forked worker shares the training process's memory copy-on-write, so each
page the training writes afterwards is copied in a page fault while the workers live, and
non-persistent workers (the trainer's, so that each epoch sees ``set_epoch`` and
``close_mosaic``) are forked again every epoch. How much that costs depends on the kernel's
page-fault price, so the script reports the training process's system CPU time beside the
epoch time. Each case trains in its own Python process (a forkserver is per process), for
``--epochs`` epochs of the same synthetic set with the same settings; rounds rotate the order
of the cases and the figures are medians over the epochs after the first of every round.

    python benchmarks/worker_start.py                          # ~3 min on 2 idle cores
    python benchmarks/worker_start.py --model damoyolo_t --rounds 1 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

CASES = ("fork", "forkserver", "no workers")
BASELINE = "fork"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="damoyolo_l")
    parser.add_argument("--images", type=int, default=160, help="synthetic images (80 %% train)")
    parser.add_argument("--img-size", type=int, default=96, help="network input side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per case and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def child(args: argparse.Namespace, case: str, data: Path, out: Path) -> None:
    """One case: train, print one JSON line per epoch (wall and system seconds)."""
    from damo_core.steps._common import preset_path
    from damo_core.train import Trainer, load_train_config

    workers = 0 if case == "no workers" else args.workers
    start = "auto" if case == "no workers" else case
    cfg = load_train_config(preset_path("cpu_quick"), overrides={
        "epochs": args.epochs, "batch": args.batch, "img_size": args.img_size,
        "workers": workers, "worker_start": start, "eval_interval": 10_000,
        "precise_bn_batches": 0})
    trainer = Trainer(args.model, data, out, cfg, progress=False)
    loader = trainer.loader()
    plan = trainer.schedule(len(loader))
    for epoch in range(args.epochs):
        trainer.dataset.set_epoch(epoch)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        started = time.perf_counter()
        trainer.train_epoch(loader, epoch, plan)
        print(json.dumps({"epoch": epoch, "seconds": time.perf_counter() - started,
                          "system_s": resource.getrusage(resource.RUSAGE_SELF).ru_stime - before}),
              flush=True)


def run_case(args: argparse.Namespace, case: str, data: Path, work: Path) -> list[dict]:
    """``case`` in a fresh interpreter; its per-epoch lines."""
    out = Path(tempfile.mkdtemp(dir=work))
    command = [sys.executable, __file__, "--child", case, str(data), str(out), *sys.argv[1:]]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"case {case!r} failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        case, data, out = sys.argv[2:5]
        child(parse_args(sys.argv[5:]), case, Path(data), Path(out))
        return
    args = parse_args()
    from damo_core.bench.precision import cpu_features
    from damo_core.data.synth import generate

    cpu = cpu_features()
    print(f"{cpu.model} ({cpu.summary()['isa']}); {args.model} at {args.img_size} px, batch "
          f"{args.batch}, {args.workers} workers, {args.epochs} epochs x {args.rounds} rounds")
    epochs: dict[str, list[dict]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = generate(work / "synth", num_classes=8, num_images=args.images,
                        image_size=256, val_fraction=0.2, object_scale="coarse")
        for round_index in range(args.rounds):
            shift = round_index % len(CASES)
            for case in CASES[shift:] + CASES[:shift]:
                # the first epoch of each process also pays one-off start-up: left out
                epochs[case] += run_case(args, case, data, work)[1:]
    rows = {case: {"epoch_s": statistics.median(e["seconds"] for e in found),
                   "system_s": statistics.median(e["system_s"] for e in found),
                   "epochs": len(found)} for case, found in epochs.items()}
    base = rows[BASELINE]["epoch_s"]
    print(f"{'case':<12} {'epoch s':>8} {'system s':>9} {'speed-up vs ' + BASELINE:>16}")
    for case, row in rows.items():
        print(f"{case:<12} {row['epoch_s']:>8.2f} {row['system_s']:>9.2f} "
              f"{base / row['epoch_s']:>15.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu.model, "args": vars(args) | {"json": None},
                                         "cases": rows}, indent=1))


if __name__ == "__main__":
    main()
