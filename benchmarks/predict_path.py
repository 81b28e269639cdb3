"""What ``damo predict`` costs per image against the model's raw inference (the performance
issue's goal: ``predict`` <= 1.5x raw), for the fused PyTorch graph and an OpenVINO export.

Baseline, per engine: "raw", the model on an already fitted ``[1, 3, S, S]`` tensor with the
box decode, no NMS: what ``damo benchmark`` times. Contenders: "predict", the whole path of
``damo predict`` for one image file (JPEG decode, letterbox, inference, NMS, boxes back to
the image's pixels) through :func:`damo_core.eval.predict.predict`, and for PyTorch also
"predict, unfused", the training graph that ``damo predict`` ran before it fused (RepConv
branches and BatchNorms unfolded).

The path only costs what the model produces: with no box above the threshold, NMS is free.
So the model must produce candidates: ``--weights`` a trained checkpoint, or by default an
untrained model whose class logits are spread and shifted so that ``--candidates`` (2000, as
the issue measured) anchor-class pairs score above the evaluation threshold (the count is
printed), the regime where NMS matters.

Every contender runs in interleaved rounds (:mod:`damo_core.bench.compare`); each ratio is the
median of per-round ratios with a distribution-free 95 % interval (:mod:`damo_core.bench.verdict`).

    python benchmarks/predict_path.py                              # Ns, 640x480 JPEG, 416 px
    python benchmarks/predict_path.py --weights runs/ns/best.pt --rounds 9
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from damo_core.bench.compare import Contender, Timing, interleaved
from damo_core.bench.latency import host_info
from damo_core.bench.verdict import Goal, judge
from damo_core.data.fit import model_fit
from damo_core.environ import torch_threads
from damo_core.eval.engine import ExportedDetector, dense_outputs
from damo_core.eval.predict import predict
from damo_core.eval.preprocess import load_image, prepare_image
from damo_core.export import openvino
from damo_core.models import Detector, build_model
from damo_core.train.checkpoint_io import load_fused, load_trained

GOAL = Goal(1.5)  # predict / raw, per image
SCORE = 0.05  # the evaluation threshold: every plausible box goes through NMS


def test_image(path: Path, width: int, height: int) -> Path:
    """A JPEG with smooth structure (JPEG decode time of pure noise is not typical)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // width), (y * 255 // height), ((x + y) % 256)], axis=-1)
    noise = np.random.default_rng(0).integers(0, 40, rgb.shape)
    Image.fromarray(np.clip(rgb + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def models(args: argparse.Namespace, image: Path) -> tuple[Detector, Detector]:
    """(fused, unfused) copies of the model under test. An untrained model's class logits are
    spread (weights scaled to a logit spread of 1) and shifted so that ``args.candidates``
    anchor-class pairs score above the threshold on ``image``: an untrained head's logits sit
    within 0.001 of its prior, so all or none would pass."""
    if args.weights is not None:
        return load_fused(args.weights)[0], load_trained(args.weights)[0]
    torch.manual_seed(0)
    unfused = build_model(args.model, num_classes=args.classes).eval()
    fitted = prepare_image(load_image(image), args.img_size, model_fit(unfused)).tensor[None]
    with torch.no_grad():
        heads = list(unfused.head.cls_proj)
        logits = torch.logit(dense_outputs(unfused, fitted)[0].double().clamp(1e-12, 1 - 1e-12))
        for conv in heads:
            conv.weight /= float(logits.std())
        logits = torch.logit(dense_outputs(unfused, fitted)[0].double().clamp(1e-12, 1 - 1e-12))
        keep = min(max(args.candidates, 1), logits.numel())
        cut = float(logits.flatten().kthvalue(logits.numel() - keep + 1).values)
        shift = float(torch.logit(torch.tensor(SCORE, dtype=torch.float64))) - cut + 1e-6
        for conv in heads:
            conv.bias += shift
    fused = build_model(args.model, num_classes=args.classes)
    fused.load_state_dict(unfused.state_dict())
    return fused.fuse(), unfused


def candidates(model: Detector, image: Path, size: int) -> int:
    """How many anchor-class pairs score above the threshold on the test image."""
    tensor = prepare_image(load_image(image), size, model_fit(model)).tensor[None]
    with torch.no_grad():
        scores, _ = dense_outputs(model, tensor)
    return int((scores > SCORE).sum())


def contenders(fused: Detector, unfused: Detector, ir: Path, image: Path, size: int,
               threads: int) -> list[Contender]:
    fitted = prepare_image(load_image(image), size, model_fit(fused)).tensor[None]
    exported = ExportedDetector(ir, threads=threads)

    def raw(model: Any) -> Any:
        def run(x: torch.Tensor) -> Any:
            with torch.inference_mode():
                return dense_outputs(model, x)
        return run

    def path_of(model: Any) -> Any:
        return lambda files: predict(model, files, image_size=size, score_threshold=SCORE,
                                     batch_size=1, workers=0)

    def one_torch_thread(run: Any) -> Any:
        """As ``damo predict`` runs an export: torch down to one thread (engine's
        ``_runtime_owns_cpu``), so its pool does not spin on OpenVINO's cores."""
        def call(x: Any) -> Any:
            with torch_threads(1):
                return run(x)
        return call

    return [Contender("torch raw", raw(fused), fitted),
            Contender("torch predict", path_of(fused), [image]),
            Contender("torch predict, unfused", path_of(unfused), [image]),
            Contender("openvino raw", one_torch_thread(raw(exported)), fitted),
            Contender("openvino predict", one_torch_thread(path_of(exported)), [image])]


def report(timings: dict[str, Timing], found: int) -> None:
    host = host_info()
    print(f"host: {host['cpu']} ({host['isa']}), {torch.get_num_threads()} torch threads; "
          f"{found} candidates above {SCORE}")
    print(f"{'contender':<24} {'p50 ms':>8}  ratio to its engine's raw [95% CI]   goal "
          f"{GOAL}")
    for name, timing in timings.items():
        engine = name.split()[0]
        base = timings[f"{engine} raw"]
        if timing is base:
            print(f"{name:<24} {timing.p50_ms:8.2f}  1 (baseline)")
            continue
        verdict = judge(timing.ratios_to(base), GOAL)
        ci = verdict.interval
        judged = verdict.describe() if "unfused" not in name else "(the old path)"
        print(f"{name:<24} {timing.p50_ms:8.2f}  {ci.median:.2f} [{ci.low:.2f}, {ci.high:.2f}]"
              f"   {judged}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="damoyolo_ns")
    parser.add_argument("--weights", type=Path, default=None, help="a trained best.pt")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--candidates", type=int, default=2000,
                        help="anchor-class pairs above the threshold (untrained model)")
    parser.add_argument("--img-size", type=int, default=416)
    parser.add_argument("--image", default="640x480", help="WIDTHxHEIGHT of the test JPEG")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.image.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="damo-predict-bench-") as tmp:
        image = test_image(Path(tmp) / "test.jpg", width, height)
        fused, unfused = models(args, image)
        ir = openvino.export(fused, Path(tmp) / "ir", image_size=args.img_size)
        found = candidates(fused, image, args.img_size)
        timings = interleaved(contenders(fused, unfused, ir, image, args.img_size,
                                         args.threads),
                              rounds=args.rounds, runs=args.runs, warmup=args.warmup,
                              on_round=lambda i, _: print(f"round {i + 1}/{args.rounds}",
                                                          flush=True))
    report(timings, found)


if __name__ == "__main__":
    main()
