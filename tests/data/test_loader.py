"""Tests for DetectionDataset / build_dataloader: output contract, determinism per
(seed, epoch, index), close_mosaic, eval placement and its inverse (``target["placement"]``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from damo_core.data import CocoDetection, load_dataset_yaml
from damo_core.data.augment import AugmentConfig
from damo_core.data.loader import (
    DetectionDataset,
    build_dataloader,
    collate,
    worker_context,
)
from damo_core.data.synth import generate
from damo_core.errors import UserInputError

SIZE = 128
RED = np.array([255, 0, 0], np.uint8)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> CocoDetection:
    yaml_path = generate(tmp_path_factory.mktemp("loader") / "ds", num_images=12, image_size=96)
    return CocoDetection.from_spec(load_dataset_yaml(yaml_path), "train")


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> CocoDetection:
    """Two non-square PNGs: image 1 (100x160) with one red rectangle, image 2 with no
    annotations at all."""
    root = tmp_path_factory.mktemp("odd")
    image = np.full((100, 160, 3), 40, np.uint8)
    image[20:60, 30:110] = RED  # bbox x=30, y=20, w=80, h=40
    Image.fromarray(image).save(root / "a.png")
    Image.fromarray(np.full((70, 50, 3), 90, np.uint8)).save(root / "b.png")
    coco = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 160, "height": 100},
            {"id": 2, "file_name": "b.png", "width": 50, "height": 70},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [30, 20, 80, 40], "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (root / "ann.json").write_text(json.dumps(coco))
    return CocoDetection(root / "ann.json", root)


def _same(a: tuple[torch.Tensor, dict], b: tuple[torch.Tensor, dict]) -> bool:
    return (
        torch.equal(a[0], b[0])
        and torch.equal(a[1]["boxes"], b[1]["boxes"])
        and torch.equal(a[1]["labels"], b[1]["labels"])
    )


def _check_item(item: tuple[torch.Tensor, dict], size: int, num_classes: int) -> None:
    image, target = item
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 255 and image.max() > 1  # raw pixels
    boxes, labels = target["boxes"], target["labels"]
    assert boxes.dtype == torch.float32 and boxes.shape == (len(labels), 4)
    assert labels.dtype == torch.int64
    if len(boxes):
        assert (boxes >= 0).all() and (boxes <= size).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert labels.min() >= 0 and labels.max() < num_classes
    assert isinstance(target["image_id"], int)
    assert {"orig_size", "scale", "pad"} <= target.keys()


def test_train_items_have_the_documented_shapes(synth: CocoDetection) -> None:
    cfg = AugmentConfig(mixup_prob=0.5, box_image_prob=1.0, color_prob=0.5)
    ds = DetectionDataset(synth, train=True, image_size=SIZE, augment=cfg, seed=3)
    for i in range(len(ds)):
        _check_item(ds[i], SIZE, synth.num_classes)
    images, targets = collate([ds[0], ds[1], ds[2]])
    assert images.shape == (3, 3, SIZE, SIZE) and len(targets) == 3


def test_same_seed_and_epoch_reproduce_exactly(synth: CocoDetection) -> None:
    cfg = AugmentConfig(mixup_prob=0.5, box_image_prob=1.0, color_prob=0.5)
    a = DetectionDataset(synth, train=True, image_size=SIZE, augment=cfg, seed=7)
    b = DetectionDataset(synth, train=True, image_size=SIZE, augment=cfg, seed=7)
    a.set_epoch(4)
    b.set_epoch(4)
    assert all(_same(a[i], b[i]) for i in range(4))
    b.set_epoch(5)
    assert not any(_same(a[i], b[i]) for i in range(4))
    c = DetectionDataset(synth, train=True, image_size=SIZE, augment=cfg, seed=8)
    c.set_epoch(4)
    assert not _same(a[0], c[0])


@pytest.mark.parametrize("start", ["auto", "fork"])
def test_worker_count_does_not_change_batches(synth: CocoDetection, start: str) -> None:
    ds = DetectionDataset(synth, train=True, image_size=64, seed=1)
    ds.set_epoch(2)
    serial = list(build_dataloader(ds, batch_size=4, shuffle=True, workers=0, seed=5))
    parallel = list(build_dataloader(ds, batch_size=4, shuffle=True, workers=2, seed=5,
                                     worker_start=start))
    assert len(serial) == len(parallel) == 3
    for (ia, ta), (ib, tb) in zip(serial, parallel, strict=True):
        assert torch.equal(ia, ib)
        assert [t["image_id"] for t in ta] == [t["image_id"] for t in tb]
    ds.set_epoch(3)
    order = [t["image_id"] for _, ts in build_dataloader(ds, 4, True, 0, 5) for t in ts]
    assert order != [t["image_id"] for _, ts in serial for t in ts]
    assert sorted(order) == sorted(synth.image_ids)


def test_workers_start_from_a_forkserver_by_default() -> None:
    """Forked workers share the trainer's pages copy-on-write (see worker_context)."""
    assert worker_context(0) is None
    assert worker_context(2).get_start_method() == "forkserver"
    assert worker_context(2, "fork").get_start_method() == "fork"
    with pytest.raises(UserInputError, match="worker start 'threads' is not one of auto, fork"):
        worker_context(2, "threads")


def test_close_mosaic_turns_mosaic_off(synth: CocoDetection) -> None:
    cfg = AugmentConfig(flip_prob=0.0, mixup_prob=1.0, box_image_prob=1.0)
    train = DetectionDataset(synth, train=True, image_size=SIZE, augment=cfg)
    evaluation = DetectionDataset(synth, train=False, image_size=SIZE, augment=cfg)
    assert all(train[i][1]["orig_size"] == (SIZE, SIZE) for i in range(3))  # mosaics
    train.close_mosaic()
    assert train.active_augment.mosaic_prob == 0.0 and train.active_augment.mixup_prob == 0.0
    for i in range(len(train)):  # no mosaic, mixup, box-level or flip left: the eval sample
        assert _same(train[i], evaluation[i])
        assert train[i][1]["orig_size"] == (96, 96)


def test_eval_letterbox_aligns_and_maps_back(odd: CocoDetection) -> None:
    ds = DetectionDataset(odd, train=False, image_size=SIZE, augment=AugmentConfig(keep_ratio=True))
    image, target = ds[0]
    assert target["orig_size"] == (100, 160) and target["pad"] == (0, 24)
    assert target["scale"] == pytest.approx((0.8, 0.8))
    pixels = image.permute(1, 2, 0).numpy().astype(np.uint8)
    ys, xs = np.nonzero(np.abs(pixels.astype(int) - RED).max(-1) <= 60)
    extent = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    np.testing.assert_allclose(target["boxes"][0].numpy(), extent, atol=1.0)
    assert (pixels[:24] == 114).all() and (pixels[-24:] == 114).all()
    assert target["placement"].content_size == (80, 128)
    back = target["placement"].to_original(target["boxes"])
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), [[30, 20, 110, 60]], atol=1e-4)


def test_eval_plain_resize_maps_back(odd: CocoDetection) -> None:
    ds = DetectionDataset(odd, train=False, image_size=SIZE, augment=AugmentConfig())
    _, target = ds[0]
    assert target["pad"] == (0, 0) and target["scale"] == pytest.approx((0.8, 1.28))
    back = target["placement"].to_original(target["boxes"].numpy())
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_allclose(back, [[30, 20, 110, 60]], atol=1e-4)


@pytest.mark.parametrize("keep_ratio", [False, True])
def test_empty_annotation_images_load_in_every_mode(odd: CocoDetection, keep_ratio: bool) -> None:
    full = AugmentConfig(keep_ratio=keep_ratio, mixup_prob=1.0, box_image_prob=1.0, color_prob=1.0)
    for cfg in (full, AugmentConfig(keep_ratio=keep_ratio, mosaic_prob=0.0, mixup_prob=1.0)):
        for train in (True, False):
            ds = DetectionDataset(odd, train=train, image_size=64, augment=cfg)
            for epoch in range(3):
                ds.set_epoch(epoch)
                image, target = ds[1]
                assert image.shape == (3, 64, 64) and target["image_id"] == 2
                if not train:
                    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
            closed = DetectionDataset(odd, train=True, image_size=64, augment=cfg)
            closed.close_mosaic()
            assert closed[1][1]["boxes"].shape == (0, 4)


def test_mixup_partner_always_has_boxes(odd: CocoDetection) -> None:
    """The only image with boxes is image 1, so mixing into image 2 adds exactly its box."""
    cfg = AugmentConfig(mosaic_prob=0.0, mixup_prob=1.0, mixup_scale=(1.0, 1.0), flip_prob=0.0)
    ds = DetectionDataset(odd, train=True, image_size=64, augment=cfg)
    # Mixup only runs on a sample that already has boxes: image 2 alone stays empty.
    assert ds[1][1]["boxes"].shape == (0, 4)
    assert len(ds[0][1]["boxes"]) == 2


def test_invalid_arguments_are_rejected(synth: CocoDetection) -> None:
    with pytest.raises(ValueError, match="image_size"):
        DetectionDataset(synth, train=True, image_size=0)
    ds = DetectionDataset(synth, train=True, image_size=64)
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-1)
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(ValueError, match="batch_size"):
        build_dataloader(ds, 0, True, 0, 0)
