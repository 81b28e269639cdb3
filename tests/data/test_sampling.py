"""Source smoothing, repeat factors and the weighted epoch sampler."""

from __future__ import annotations

import numpy as np
import pytest

from damo_core.data.sampling import (
    WeightedEpochSampler,
    class_image_fraction,
    plan_sampling,
    repeat_factors,
    source_shares,
)

SIZES = (20_000, 2_000, 200)  # three sources, 100x apart
NUM_CLASSES = 50
RARE = NUM_CLASSES - 1


class _Data:
    """The sampler only needs len() and the epoch attribute the trainer sets."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def __len__(self) -> int:
        return self.n


def _long_tailed(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source ids, CSR offsets, classes): 1-3 boxes per image, Zipf-like class frequency."""
    rng = np.random.default_rng(seed)
    source_ids = np.repeat(np.arange(len(SIZES)), SIZES)
    counts = rng.integers(1, 4, len(source_ids))
    probs = 1.0 / np.arange(1, NUM_CLASSES + 1) ** 2
    classes = rng.choice(NUM_CLASSES, counts.sum(), p=probs / probs.sum())
    return source_ids, np.r_[0, np.cumsum(counts)], classes


def test_source_shares_polynomial_smoothing() -> None:
    shares = source_shares({"a": 10_000, "b": 100, "c": 0}, alpha=0.5)
    assert shares["a"] == pytest.approx(100 / 110) and shares["b"] == pytest.approx(10 / 110)
    assert shares["c"] == 0.0
    assert source_shares({"a": 10, "b": 1000}, 0.0) == {"a": 0.5, "b": 0.5}
    with pytest.raises(ValueError, match="alpha"):
        source_shares({"a": 1}, 1.5)


def test_repeat_factors_follow_lvis_rule() -> None:
    offsets = np.array([0, 1, 2, 3, 5, 5])
    classes = np.array([0, 0, 0, 0, 1])  # class 0 in 4/5 images, class 1 in 1/5, one empty
    np.testing.assert_allclose(class_image_fraction(offsets, classes, 2), [0.8, 0.2])
    factors = repeat_factors(offsets, classes, 2, threshold=0.8)
    np.testing.assert_allclose(factors, [1, 1, 1, 2, 1])  # sqrt(0.8 / 0.2) = 2; empty -> 1


def test_sampled_shares_match_target_and_rare_classes_are_boosted() -> None:
    source_ids, offsets, classes = _long_tailed()
    plan = plan_sampling(["big", "mid", "small"], source_ids, offsets, classes, NUM_CLASSES,
                         alpha=0.5, threshold=0.05)
    target = np.sqrt(SIZES) / np.sqrt(SIZES).sum()
    np.testing.assert_allclose(plan.shares, target)
    sampler = WeightedEpochSampler(_Data(len(source_ids)), plan.weights, seed=3,
                                   num_samples=200_000)
    drawn = np.fromiter(iter(sampler), np.int64)
    shares = np.bincount(source_ids[drawn], minlength=3) / len(drawn)
    # Tolerance: 0.01 absolute is > 4 binomial standard deviations at 200k draws.
    np.testing.assert_allclose(shares, target, atol=0.01)
    owner = np.repeat(np.arange(len(source_ids)), np.diff(offsets))
    has_rare = np.zeros(len(source_ids), bool)
    has_rare[owner[classes == RARE]] = True
    uniform_rate = has_rare.mean()
    sampled_rate = has_rare[drawn].mean()
    assert uniform_rate < 0.01  # it is rare
    # Stated multiple: images with the rarest class are drawn at least 3x as often.
    assert sampled_rate >= 3 * uniform_rate


def test_deterministic_by_seed_and_epoch() -> None:
    data = _Data(100)
    weights = np.linspace(1, 2, 100)
    a = WeightedEpochSampler(data, weights, seed=1)
    first = list(a)
    assert list(WeightedEpochSampler(data, weights, seed=1)) == first
    assert list(WeightedEpochSampler(data, weights, seed=2)) != first
    data.epoch = 1
    assert list(a) != first
    data.epoch = 0
    assert list(a) == first


def test_ranks_split_one_order() -> None:
    data = _Data(50)
    weights = np.ones(50)
    full = WeightedEpochSampler(data, weights, seed=0, num_samples=51, world_size=2)
    order = full.epoch_order()
    parts = [list(WeightedEpochSampler(data, weights, seed=0, num_samples=51, rank=r,
                                       world_size=2)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 26 == len(full)
    assert parts[0] == order[0::2].tolist() and parts[1] == order[1::2].tolist()


@pytest.mark.parametrize("weights, kwargs, match", [
    (np.ones(3), {}, "one entry per image"),
    (np.r_[np.ones(9), -1.0], {}, ">= 0"),
    (np.zeros(10), {}, "not all zero"),
    (np.ones(10), {"rank": 2, "world_size": 2}, "rank 2"),
    (np.ones(10), {"num_samples": 0}, "num_samples"),
])
def test_sampler_rejects_bad_input(weights: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WeightedEpochSampler(_Data(10), weights, seed=0, **kwargs)


def test_takes_epoch_samplers_place_in_a_dataloader(tmp_path) -> None:
    from torch.utils.data import DataLoader

    from damo_core.data.coco import CocoDetection
    from damo_core.data.loader import DetectionDataset, collate
    from damo_core.data.synth import generate

    generate(tmp_path, num_classes=2, num_images=8, image_size=64, seed=0)
    coco = CocoDetection(tmp_path / "annotations/instances_train.json",
                         tmp_path / "images/train")
    dataset = DetectionDataset(coco, train=False, image_size=64)
    weights = np.zeros(len(dataset))
    weights[[1, 3]] = 1.0  # only two images may be drawn
    sampler = WeightedEpochSampler(dataset, weights, seed=0)
    loader = DataLoader(dataset, batch_size=2, sampler=sampler, collate_fn=collate)
    allowed = {coco.image_ids[1], coco.image_ids[3]}
    seen = [t["image_id"] for _, targets in loader for t in targets]
    assert len(seen) == len(dataset) and set(seen) <= allowed
    first = list(sampler)
    dataset.set_epoch(1)
    assert list(sampler) != first
