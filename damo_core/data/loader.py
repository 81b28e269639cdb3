"""Torch dataset and DataLoader over a detection source, with the training augmentations.

The source is a :class:`~damo_core.data.manifest_dataset.ManifestDetection` (what training
reads) or anything with its protocol (:class:`DetectionSource`), such as the COCO reader.

Determinism: every sample draws from its own generator seeded by ``(seed, epoch, index)``,
and the shuffle order from ``(seed, epoch)``. So a sample does not depend on which worker
builds it or on how many workers there are, and resuming at epoch ``k`` reproduces epoch
``k`` exactly. ``set_epoch`` and ``close_mosaic`` are read when an epoch's iterator starts;
:func:`build_dataloader` therefore uses non-persistent workers, which copy the dataset afresh
each epoch. Workers start from a forkserver by default, not as forks of the training
process (:func:`worker_context` says why).

Train pipeline (reference order): mosaic of 4 images + random affine (probability
``mosaic_prob``; otherwise the input fit, stretch or letterbox by ``keep_ratio``), mixup
(``mixup_prob``), horizontal flip, colour jitter, SADA box-level augmentation. Eval pipeline:
the input fit only,
recording the placement so predictions can be mapped back with ``target["placement"]``
(:meth:`damo_core.data.fit.Placement.to_original`, the inverse evaluation and serving use).
Images stay raw 0..255 (mean 0, std 1), as DAMO-YOLO consumes them.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from multiprocessing.context import BaseContext
from typing import Any, Literal, Protocol, get_args

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from damo_core.data.augment import (
    Annotated,
    AugmentConfig,
    Placement,
    box_level_augment,
    color_jitter,
    drop_small,
    fit_sample,
    mixup,
    mosaic,
    random_hflip,
)
from damo_core.data.coco import Sample
from damo_core.data.fit import FitMode, fit_from_keep_ratio
from damo_core.errors import UserInputError

__all__ = ["WORKER_STARTS", "DetectionDataset", "DetectionSource", "EpochSampler",
           "WorkerStart", "build_dataloader", "collate", "worker_context"]

# How loader workers may start ("auto": forkserver where the platform has it); the training
# setting ``worker_start`` is declared with this type.
WorkerStart = Literal["auto", "fork", "forkserver", "spawn"]
WORKER_STARTS: tuple[str, ...] = get_args(WorkerStart)
# What a forkserver imports once, so that the workers it forks start with it loaded.
_FORKSERVER_PRELOAD = ["damo_core.data.loader", "damo_core.data.manifest_dataset"]

Target = dict[str, Any]


class DetectionSource(Protocol):
    """Random access to decoded images and their pixel boxes."""

    image_ids: list[int]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...

    def has_targets(self, index: int) -> bool: ...


class DetectionDataset(Dataset):
    """Network-ready ``(image [3,S,S] float32 0..255, target)`` pairs from a COCO dataset.

    ``target`` holds ``boxes`` (float32 ``[N, 4]`` xyxy in input pixels), ``labels`` (int64
    ``[N]``), ``image_id``, ``orig_size`` ``(h, w)``, ``scale`` ``(sx, sy)`` and ``pad``
    ``(left, top)`` with ``x_in = x_orig * sx + left``, and ``placement``, the
    :class:`~damo_core.data.fit.Placement` they come from (its ``to_original`` maps back).
    A mosaic has no single original, so for it ``orig_size`` is ``(S, S)``, scale ``(1, 1)``
    and pad ``(0, 0)`` (identity); in train mode the placement describes the resize only, not
    a later flip.
    """

    def __init__(
        self,
        source: DetectionSource,
        *,
        train: bool,
        image_size: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        if image_size <= 0:
            raise UserInputError(f"image_size must be positive, got {image_size}")
        if seed < 0:
            raise UserInputError(f"seed must be >= 0, got {seed}")
        self.source = source
        self.train = train
        self.image_size = image_size
        self.augment = augment if augment is not None else AugmentConfig()
        self.seed = seed
        self.epoch = 0
        self.mosaic_closed = False
        self._image_ids = source.image_ids  # the property rebuilds its list on every call
        # Mixup needs a partner with boxes; crowd-only images count as empty.
        self._with_boxes = np.array(
            [i for i in range(len(source)) if source.has_targets(i)], dtype=np.int64
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws (and shuffle order) to reproduce."""
        if epoch < 0:
            raise UserInputError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def close_mosaic(self) -> None:
        """Switch to the final-epochs recipe: no mosaic, mixup or box-level augmentation."""
        self.mosaic_closed = True

    @property
    def fit(self) -> FitMode:
        """How images are fitted to the input (``augment.keep_ratio``); the trainer records it
        in the checkpoint so evaluation and serving fit the same way."""
        return fit_from_keep_ratio(self.augment.keep_ratio)

    @property
    def active_augment(self) -> AugmentConfig:
        """The recipe in force now (``augment``, or its no-mosaic variant once closed)."""
        return self.augment.without_mosaic() if self.mosaic_closed else self.augment

    def rng(self, index: int) -> np.random.Generator:
        """The generator for sample ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of size {len(self)}")
        index %= len(self)
        if self.train:
            sample, placement = self._train_sample(index, self.rng(index))
        else:
            sample, placement = fit_sample(
                self._load(index), self.image_size, self.fit, self.augment.pad_value
            )
        chw = np.ascontiguousarray(sample.image.transpose(2, 0, 1), dtype=np.float32)
        target: Target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(sample.boxes, dtype=np.float32)),
            "labels": torch.from_numpy(np.ascontiguousarray(sample.labels, dtype=np.int64)),
            "image_id": int(self._image_ids[index]),
            "orig_size": placement.orig_size,
            "scale": placement.scale,
            "pad": placement.pad,
            "placement": placement,
        }
        return torch.from_numpy(chw), target

    def _load(self, index: int) -> Annotated:
        s = self.source[int(index)]
        return Annotated(s.image, s.boxes, s.labels)

    def _train_sample(self, index: int, rng: np.random.Generator) -> tuple[Annotated, Placement]:
        """The training pipeline for one index (see the module docstring for the order)."""
        cfg, size = self.active_augment, self.image_size
        if rng.random() < cfg.mosaic_prob:
            others = rng.integers(0, len(self), size=3)
            tiles = [self._load(i) for i in (index, *others)]
            sample = mosaic(tiles, size, rng, cfg)
            placement = Placement.identity(size)
        else:
            sample, placement = fit_sample(self._load(index), size, self.fit, cfg.pad_value)
        if len(sample.boxes) and len(self._with_boxes) and rng.random() < cfg.mixup_prob:
            partner = self._load(self._with_boxes[rng.integers(len(self._with_boxes))])
            sample = mixup(
                sample,
                partner,
                rng,
                scale_range=cfg.mixup_scale,
                pad_value=cfg.pad_value,
                min_box_size=cfg.min_box_size,
            )
        sample = random_hflip(sample, rng, cfg.flip_prob)
        image = color_jitter(
            sample.image,
            rng,
            prob=cfg.color_prob,
            hsv_gains=cfg.hsv_gains,
            brightness=cfg.brightness,
            contrast=cfg.contrast,
        )
        image = box_level_augment(image, sample.boxes, rng, cfg, self._box_level_strength())
        return drop_small(Annotated(image, sample.boxes, sample.labels)), placement

    def _box_level_strength(self) -> float:
        """Linear ramp of the box-level probability over ``box_ramp_epochs`` (0: no ramp);
        the reference likewise grows it with training progress."""
        ramp = self.augment.box_ramp_epochs
        return 1.0 if ramp == 0 else min(1.0, (self.epoch + 1) / ramp)


def collate(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    """Stack images into ``[B, 3, S, S]``; targets stay a list (box counts differ)."""
    images = torch.stack([image for image, _ in batch])
    return images, [target for _, target in batch]


class EpochSampler(Sampler[int]):
    """Index order for one epoch, shuffled from ``(seed, dataset.epoch)`` when ``shuffle``.

    It lives in the main process, so it sees ``set_epoch`` directly and a resumed run gets
    the same order as an uninterrupted one (a torch generator would depend on history).
    """

    def __init__(self, dataset: DetectionDataset, shuffle: bool, seed: int) -> None:
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if not self.shuffle:
            return iter(range(n))
        order = np.random.default_rng([self.seed, self.dataset.epoch, 1]).permutation(n)
        return iter(order.tolist())


def worker_context(workers: int, start: str = "auto") -> BaseContext | None:
    """The multiprocessing context loader workers start in (``None`` without workers).

    ``auto`` is forkserver where the platform has one (Linux, macOS), else the platform's
    default. A worker forked from the training process shares its memory copy-on-write, so
    every page the training writes afterwards is copied in a page fault, and non-persistent
    workers repeat that every epoch: on a 2-core AMD EPYC (AVX-512) L's epoch at 96 px took
    22-46 s with forked workers (30-70 s of system time) against 5-6 s with forkserver ones
    (``benchmarks/worker_start.py``).
    Forkserver workers come from a small server process that has imported this module once.
    Like spawn, it imports the main module in each worker, so a script that trains through the
    library needs ``if __name__ == "__main__":`` (or ``start="fork"``).
    """
    if start not in WORKER_STARTS:
        raise UserInputError(f"worker start {start!r} is not one of {', '.join(WORKER_STARTS)}")
    if workers == 0:
        return None
    methods = multiprocessing.get_all_start_methods()
    if start == "auto":
        start = "forkserver" if "forkserver" in methods else methods[0]
    elif start not in methods:
        raise UserInputError(f"worker start {start!r} is not available on this platform "
                             f"(it has {', '.join(methods)})")
    context = multiprocessing.get_context(start)
    if start == "forkserver":
        # read when the server starts (once per process); later calls change nothing
        context.set_forkserver_preload(_FORKSERVER_PRELOAD)
    return context


def build_dataloader(
    dataset: DetectionDataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    seed: int,
    *,
    drop_last: bool = False,
    worker_start: str = "auto",
) -> DataLoader:
    """A DataLoader yielding ``(images, targets)`` batches via :func:`collate`.

    Workers are not persistent so each epoch's iterator picks up ``set_epoch`` and
    ``close_mosaic``; call ``dataset.set_epoch(e)`` before iterating epoch ``e``. They start
    as :func:`worker_context` says for ``worker_start``.
    """
    if batch_size <= 0:
        raise UserInputError(f"batch_size must be positive, got {batch_size}")
    if workers < 0:
        raise UserInputError(f"workers must be >= 0, got {workers}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSampler(dataset, shuffle, seed),
        num_workers=workers,
        collate_fn=collate,
        drop_last=drop_last,
        persistent_workers=False,
        multiprocessing_context=worker_context(workers, worker_start),
    )

