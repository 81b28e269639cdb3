"""Source balancing and class-aware sampling for a unified dataset (paper section 2.5).

Two weights multiply into one per-image sampling probability:

* **Source shares** -- polynomial smoothing of the dataset sizes: source ``s`` with ``n_s``
  images gets a share ``p_s = n_s^alpha / sum_t n_t^alpha``. ``alpha = 1`` samples in
  proportion to size (Objects365/OpenImages swamp COCO), ``alpha = 0`` gives every source an
  equal share; values in between damp the imbalance without ignoring size.
* **Repeat factors** -- per class ``c``, ``f_c`` is the fraction of images holding it and
  ``r_c = max(1, sqrt(t / f_c))``; an image gets the largest ``r_c`` of its classes (1 for
  an image without boxes). Images with rare classes are drawn more often; ``t`` is the
  frequency below which a class counts as rare.

Within a source, images are drawn in proportion to their repeat factor, and the source as a
whole keeps exactly its smoothed share ``p_s``: the class-aware part redistributes draws
inside a source and never changes the source balance.

:class:`WeightedEpochSampler` draws with replacement from ``(seed, epoch)``, so it is
deterministic, needs no state, and -- like :class:`~damo_core.data.loader.EpochSampler`,
whose place it takes -- every rank computes the same order and takes its own slice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa
from torch.utils.data import Sampler

from damo_core.data.errors import DatasetError
from damo_core.errors import UserInputError
from damo_core.settings import Settings

__all__ = ["SamplingPlan", "SamplingSettings", "WeightedEpochSampler", "class_image_fraction",
           "draw_summary", "image_weights", "manifest_csr", "plan_sampling", "repeat_factors",
           "source_shares"]


@dataclass(frozen=True)
class SamplingSettings(Settings):
    """How unification splits the images and how training will draw them (the unify step's
    ``sampling`` parameter, ``damo unify``'s options)."""

    noun = "sampling setting"

    enabled: bool = True  # train by the weights; off: every train image once per epoch
    alpha: float = 0.5  # source smoothing: a source's share ~ size^alpha
    class_aware: bool = True  # repeat factors for images of rare classes
    rfs_threshold: float = 0.001  # class frequency below which a class counts as rare
    val_fraction: float = 0.05  # share of images without a split of their own put in val

    def check(self) -> None:
        self.require(0.0 <= self.alpha <= 1.0, "alpha", "must be in [0, 1]")
        self.require(0.0 <= self.rfs_threshold <= 1.0, "rfs_threshold", "must be in [0, 1]")
        self.require(0.0 <= self.val_fraction < 1.0, "val_fraction", "must be in [0, 1)")

    @property
    def threshold(self) -> float:
        """The repeat-factor threshold in force (0 turns the class-aware part off)."""
        return self.rfs_threshold if self.class_aware else 0.0


def source_shares(sizes: Mapping[str, int], alpha: float) -> dict[str, float]:
    """``p_s`` proportional to ``n_s ** alpha`` (empty sources get 0)."""
    if not 0.0 <= alpha <= 1.0:
        raise UserInputError(f"alpha must be in [0, 1], got {alpha}")
    if any(n < 0 for n in sizes.values()) or not any(sizes.values()):
        raise UserInputError(f"source sizes must be >= 0 with at least one > 0, got {dict(sizes)}")
    raw = {s: (float(n) ** alpha if n > 0 else 0.0) for s, n in sizes.items()}
    total = sum(raw.values())
    return {s: v / total for s, v in raw.items()}


def class_image_fraction(offsets: np.ndarray, classes: np.ndarray,
                         num_classes: int) -> np.ndarray:
    """``f_c``: the fraction of images holding class ``c`` (CSR: image ``i`` holds
    ``classes[offsets[i]:offsets[i+1]]``, duplicates allowed)."""
    n = len(offsets) - 1
    owner = np.repeat(np.arange(n), np.diff(offsets))
    pairs = np.unique(owner.astype(np.int64) * num_classes + classes)
    return np.bincount(pairs % num_classes, minlength=num_classes) / max(n, 1)


def repeat_factors(offsets: np.ndarray, classes: np.ndarray, num_classes: int,
                   threshold: float) -> np.ndarray:
    """Per-image repeat factor ``max(1, max_c sqrt(threshold / f_c))`` (1 without boxes)."""
    if threshold <= 0:
        raise UserInputError(f"repeat-factor threshold must be > 0, got {threshold}")
    freq = class_image_fraction(offsets, classes, num_classes)
    per_class = np.maximum(1.0, np.sqrt(threshold / np.maximum(freq, 1e-12)))
    n = len(offsets) - 1
    factors = np.ones(n)
    counts = np.diff(offsets)
    if len(classes):
        starts = offsets[:-1][counts > 0]
        factors[counts > 0] = np.maximum.reduceat(per_class[classes], starts)
    return factors


def image_weights(source_ids: np.ndarray, shares: Sequence[float],
                  factors: np.ndarray) -> np.ndarray:
    """Per-image probability: ``p_s * r_i / sum_{j in s} r_j`` (sums to 1)."""
    totals = np.bincount(source_ids, weights=factors, minlength=len(shares))
    share = np.asarray(shares, dtype=np.float64)
    if np.any((share > 0) & (totals == 0)):
        raise ValueError("a source with a positive share has no images")
    return share[source_ids] * factors / np.where(totals > 0, totals, 1.0)[source_ids]


@dataclass(frozen=True)
class SamplingPlan:
    """Everything the sampler and the plots need, computed once from a manifest."""

    sources: tuple[str, ...]
    source_ids: np.ndarray  # int [N] index into sources
    shares: tuple[float, ...]  # smoothed target share per source
    factors: np.ndarray  # repeat factor per image
    weights: np.ndarray  # sampling probability per image (sums to 1)


def plan_sampling(sources: Sequence[str], source_ids: np.ndarray, offsets: np.ndarray,
                  classes: np.ndarray, num_classes: int, *, alpha: float = 0.5,
                  threshold: float = 0.001) -> SamplingPlan:
    """Combine smoothed source shares and repeat factors into per-image weights."""
    sizes = np.bincount(source_ids, minlength=len(sources))
    shares = source_shares(dict(zip(sources, sizes.tolist(), strict=True)), alpha)
    factors = repeat_factors(offsets, classes, num_classes, threshold)
    share_list = tuple(shares[s] for s in sources)
    weights = image_weights(source_ids, share_list, factors)
    return SamplingPlan(tuple(sources), source_ids, share_list, factors, weights)


def manifest_csr(batches: Iterable[pa.RecordBatch]
                 ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray]:
    """(source names, per-image source index, CSR offsets, class ids) from manifest batches
    holding the ``source`` and ``classes`` columns, in manifest order."""
    names: dict[str, int] = {}
    source_ids: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    for batch in batches:
        encoded = batch.column("source").dictionary_encode()
        local = [names.setdefault(v, len(names)) for v in encoded.dictionary.to_pylist()]
        source_ids.append(np.asarray(local, np.int64)[encoded.indices.to_numpy()])
        lists = batch.column("classes")
        counts.append(np.diff(lists.offsets.to_numpy()))
        classes.append(lists.flatten().to_numpy())
    if not source_ids:
        raise DatasetError("manifest has no images")
    offsets = np.r_[0, np.cumsum(np.concatenate(counts))].astype(np.int64)
    return (tuple(names), np.concatenate(source_ids), offsets,
            np.concatenate(classes).astype(np.int64))


class _HasEpoch(Protocol):
    epoch: int

    def __len__(self) -> int: ...


class WeightedEpochSampler(Sampler[int]):
    """Indices drawn with replacement by ``weights``, from ``(seed, dataset.epoch)``.

    A drop-in for :class:`~damo_core.data.loader.EpochSampler`: it reads the epoch from the
    dataset (``set_epoch``). ``num_samples`` defaults to the dataset length. Under DDP pass
    ``rank`` / ``world_size`` (or wrap it in the trainer's ``ShardSampler``): every rank draws
    the same order and takes every ``world_size``-th index, padded so ranks get equal counts.
    """

    def __init__(self, dataset: _HasEpoch, weights: np.ndarray, seed: int, *,
                 num_samples: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or len(w) != len(dataset):
            raise UserInputError(f"weights must be 1-D with one entry per image ({len(dataset)}), "
                                 f"got shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise UserInputError("weights must be finite, >= 0 and not all zero")
        if not 0 <= rank < world_size:
            raise UserInputError(f"rank {rank} is not in 0..{world_size - 1}")
        self.dataset = dataset
        self.probs = w / w.sum()
        self.seed = seed
        self.num_samples = len(w) if num_samples is None else num_samples
        if self.num_samples <= 0:
            raise UserInputError(f"num_samples must be positive, got {self.num_samples}")
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size)

    def epoch_order(self) -> np.ndarray:
        """All ranks' draws for the current epoch (same on every rank)."""
        rng = np.random.default_rng([self.seed, self.dataset.epoch, 2])
        return rng.choice(len(self.probs), size=len(self) * self.world_size, p=self.probs)

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order()[self.rank::self.world_size].tolist())


def draw_summary(order: np.ndarray, source_ids: np.ndarray, sources: Sequence[str],
                 offsets: np.ndarray, classes: np.ndarray, class_names: Sequence[str]
                 ) -> dict[str, object]:
    """What one epoch's draws amount to, against taking every image once: each source's share
    of the draws, and how many times more often the rarest class's images are drawn (the
    class-aware multiple). For the run's log, where a wrong weight shows at a glance."""
    n, drawn = len(source_ids), np.asarray(order, np.int64)
    if n == 0 or len(drawn) == 0:
        raise DatasetError("no images to draw from")
    per_source = np.bincount(source_ids[drawn], minlength=len(sources)) / len(drawn)
    base = np.bincount(source_ids, minlength=len(sources)) / n
    owner = np.repeat(np.arange(n), np.diff(offsets))
    has = np.zeros((n, len(class_names)), bool)
    has[owner, classes] = True
    images_with = has.sum(axis=0)
    present = np.flatnonzero(images_with)
    summary: dict[str, object] = {
        "draws": int(len(drawn)),
        "source_share": {s: round(float(v), 4) for s, v in zip(sources, per_source, strict=True)},
        "source_share_once_each": {s: round(float(v), 4)
                                   for s, v in zip(sources, base, strict=True)},
    }
    if len(present):
        rare = int(present[np.argmin(images_with[present])])
        drawn_share = has[drawn, rare].mean()
        summary.update(rare_class=class_names[rare], rare_class_images=int(images_with[rare]),
                       rare_class_multiple=round(float(drawn_share / (images_with[rare] / n)), 3))
    return summary
