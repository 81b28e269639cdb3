"""benchmarks/train_step.py's variants: what each name means and that every one trains.
No speed is asserted: the benchmark judges the machine, tests do not."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from damo_core.data.augment import AugmentConfig
from damo_core.data.coco import CocoDetection, load_dataset_yaml
from damo_core.data.loader import DetectionDataset, collate
from damo_core.data.synth import generate
from tests.bench.scripts import load_script

SIZE = 64


def test_variant_names() -> None:
    parse = load_script("train_step").parse_variant
    # (precision, channels-last, fused optimiser step)
    assert parse("fp32") == ("fp32", False, True)
    assert parse("bf16-cl") == ("bf16", True, True)
    assert parse("fp32-loop") == ("fp32", False, False)
    assert parse("bf16-cl-loop") == parse("bf16-loop-cl") == ("bf16", True, False)
    for bad in ("fp16", "bf16-nhwc", "int8-cl", "fp32-cl-cl", "fp32-loop-loop"):
        with pytest.raises(argparse.ArgumentTypeError, match=bad):
            parse(bad)


@pytest.mark.parametrize(("variant", "optimizer"), [("fp32", "adamw"), ("bf16-cl-loop", "sgd")])
def test_every_variant_runs_training_steps(tmp_path, variant: str, optimizer: str) -> None:
    yaml_path = generate(tmp_path / "synth", num_images=8, image_size=SIZE, seed=0)
    source = CocoDetection.from_spec(load_dataset_yaml(yaml_path), "train")
    dataset = DetectionDataset(source, train=True, image_size=SIZE, augment=AugmentConfig(),
                               seed=0)
    batches = [collate([dataset[i], dataset[i + 1]]) for i in (0, 2)]
    torch.manual_seed(0)
    ips = load_script("train_step").step_throughput("damoyolo_ns", variant, optimizer,
                                                    batches, source.num_classes)
    assert math.isfinite(ips) and ips > 0
