"""Two torchrun processes (gloo, CPU, 127.0.0.1) train like one process with the same global batch.

The real entry point a PyTorchJob runs (``torchrun ... damo train``) is launched here with two
ranks. Data order, augmentation draws and initial weights are functions of (seed, epoch, index),
so both runs see the same images; what differs is that BatchNorm sees 4 images per rank instead
of 8 (no SyncBN), which is why the comparison has a tolerance.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from damo_core.data.synth import generate
from tests.servers import free_port

ARGS = ["--model", "damoyolo_ns", "--epochs", "2", "--batch", "8", "--img-size", "64",
        "warmup_epochs=1", "no_aug_epochs=0", "workers=0", "precise_bn_batches=0",
        "eval_interval=2", "augment.mosaic_prob=0", "augment.mixup_prob=0"]
LOSS_RTOL = 0.05  # BN statistics of 4 vs 8 images per forward


def _losses(run) -> list[float]:
    return [float(row["loss"]) for row in csv.DictReader((run / "results.csv").open())]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 16 train images: 2 steps of 8 in one process, 2 steps of 4 on each of two ranks
    return generate(tmp_path_factory.mktemp("ddp") / "synth", num_classes=2, num_images=22,
                    image_size=64, seed=3)


@pytest.mark.timeout(900)
def test_two_gloo_ranks_match_one_process(data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, double = tmp_path / "single", tmp_path / "ddp"
    common = ["train", "--data", str(data), *ARGS]
    one = subprocess.run([sys.executable, "-m", "damo_core.cli", *common, "--out", str(single)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
         "-m", "damo_core.cli", *common, "--out", str(double)],
        env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    loss_one, loss_two = _losses(single), _losses(double)
    assert len(loss_one) == len(loss_two) == 2
    assert loss_two == pytest.approx(loss_one, rel=LOSS_RTOL)
    w_one = torch.load(single / "last.pt", weights_only=True)["model"]
    w_two = torch.load(double / "last.pt", weights_only=True)["model"]
    assert w_one.keys() == w_two.keys()
    # same start, same data, same steps: the learnt weights end up close (BN running
    # statistics are per-rank estimates from 4 images, so they are left out)
    apart = [(w_one[k] - w_two[k]).abs().max().item() for k in w_one
             if w_one[k].is_floating_point() and "running_" not in k]
    assert max(apart) < 0.05
