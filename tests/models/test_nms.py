"""Blockwise NMS against a plain greedy loop: identical keep lists, bounded work and memory."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from damo_core.errors import UserInputError
from damo_core.models.layers import box_ops
from damo_core.models.layers.box_ops import batched_nms, nms, pairwise_iou

THRESHOLDS = [0.0, 0.5, 1.0, 0.3, 0.7]


def _reference(iou: Tensor, scores: Tensor, classes: Tensor | None, thr: float,
               max_detections: int | None = None) -> list[int]:
    """Textbook greedy NMS: walk boxes by decreasing score (ties by index), keep a box unless
    a kept box of its class overlaps it by ``iou`` > thr. ``iou`` is the boxes' pairwise IoU
    from the library's ``pairwise_iou``, so any difference is in the suppression logic."""
    over = (iou > thr).tolist()
    cls = classes.tolist() if classes is not None else [0] * len(over)
    score = scores.tolist()
    kept: list[int] = []
    for i in sorted(range(len(over)), key=lambda k: -score[k]):  # sorted() is stable
        if max_detections is not None and len(kept) == max_detections:
            break
        if not any(over[i][j] and cls[i] == cls[j] for j in kept):
            kept.append(i)
    return kept


def _random_case(seed: int) -> tuple[Tensor, Tensor, Tensor, float, int | None]:
    """Boxes, scores, classes, threshold and cap of one random case.

    Half the cases put boxes on a coarse integer grid, where exact IoU ties with the
    threshold, identical boxes and zero-area boxes are common; half use quantised scores,
    so many scores tie.
    """
    rnd = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    n = rnd.choice([1, 2, 3, 17, 127, 128, 129, 300])
    num_classes = rnd.choice([1, 1, 3, 80])
    if rnd.random() < 0.5:
        xy = torch.randint(0, 6, (n, 2), generator=g).float() * 4
        wh = torch.randint(0, 4, (n, 2), generator=g).float() * 4  # 0: zero-area box
    else:
        xy = torch.rand(n, 2, generator=g) * 100 - 20
        wh = torch.rand(n, 2, generator=g) * 40 * (torch.rand(n, 1, generator=g) > 0.1)
    boxes = torch.cat([xy, xy + wh], dim=1)
    copies = torch.randint(0, n, (n // 4,), generator=g)
    boxes[torch.randint(0, n, (n // 4,), generator=g)] = boxes[copies]  # identical boxes
    scores = torch.rand(n, generator=g)
    if rnd.random() < 0.5:
        scores = (scores * 4).floor() / 4
    classes = torch.randint(0, num_classes, (n,), generator=g)
    return boxes, scores, classes, rnd.choice(THRESHOLDS), rnd.choice([None, None, 1, 5, 100])


def _cases(count: int) -> Iterator[tuple[Tensor, Tensor, Tensor, float, int | None]]:
    return (_random_case(seed) for seed in range(count))


def test_matches_greedy_reference_on_random_cases() -> None:
    grid_ties = 0
    for boxes, scores, classes, thr, cap in _cases(80):
        iou = pairwise_iou(boxes, boxes)
        want = _reference(iou, scores, None, thr, cap)
        assert nms(boxes, scores, thr, max_detections=cap).tolist() == want
        want = _reference(iou, scores, classes, thr, cap)
        got = batched_nms(boxes, scores, classes, thr, max_detections=cap)
        assert got.dtype == torch.long and got.tolist() == want
        grid_ties += int((iou == thr).any())
    assert grid_ties > 10  # the cases do put IoUs exactly on the threshold


def test_many_small_blocks_and_kept_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny blocks and chunks make every case cross block and chunk boundaries."""
    monkeypatch.setattr(box_ops, "_NMS_BLOCK", 7)
    monkeypatch.setattr(box_ops, "_NMS_KEPT_CHUNK", 5)
    for boxes, scores, classes, thr, cap in _cases(40):
        if boxes.shape[0] > 129:  # 19 blocks are plenty; more only cost time
            continue
        want = _reference(pairwise_iou(boxes, boxes), scores, classes, thr, cap)
        assert batched_nms(boxes, scores, classes, thr, max_detections=cap).tolist() == want


def test_chain_needs_as_many_steps_as_the_block_and_is_still_exact() -> None:
    # Boxes 10 px wide, 1 px apart, scores falling: IoU 9/11 with the next box, 8/12 with the
    # one after, so greedy keeps every other box, and only because the one before was dropped.
    n = 300
    x = torch.arange(n, dtype=torch.float32)
    boxes = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], dim=1)
    scores = torch.linspace(1, 0, n)
    assert nms(boxes, scores, 0.7).tolist() == list(range(0, n, 2))


def test_ties_rank_by_index() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10.0]])
    scores = torch.full((3,), 0.5)
    # Box 2 is identical to box 0 and has the same score: the lower index wins.
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes.flip(0), scores, 0.5).tolist() == [0, 1]


def test_threshold_edges() -> None:
    touching = torch.tensor([[0, 0, 10, 10], [10, 0, 20, 10.0]])  # shared edge: IoU 0
    same = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10.0]])  # IoU exactly 1
    scores = torch.tensor([0.9, 0.8])
    assert nms(touching, scores, 0.0).tolist() == [0, 1]
    assert nms(same, scores, 0.0).tolist() == [0]
    assert nms(same, scores, 1.0).tolist() == [0, 1]  # suppression needs IoU strictly above
    half = torch.tensor([[0, 0, 2, 1], [0, 0, 1, 1.0]])  # IoU exactly 0.5
    assert nms(half, scores, 0.5).tolist() == [0, 1]
    assert nms(half, scores, 0.49).tolist() == [0]


@pytest.mark.parametrize("cap", [None, 3])
def test_empty_input(cap: int | None) -> None:
    empty = torch.zeros(0, 4)
    keep = batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5,
                       max_detections=cap)
    assert keep.shape == (0,) and keep.dtype == torch.long
    assert nms(empty, torch.zeros(0), 0.5, max_detections=cap).shape == (0,)


@pytest.mark.parametrize("cap", [0, -1])
def test_non_positive_cap_is_rejected(cap: int) -> None:
    with pytest.raises(UserInputError, match=f"max_detections must be positive or None, got {cap}"):
        nms(torch.zeros(1, 4), torch.ones(1), 0.5, max_detections=cap)


def _disjoint(n: int) -> tuple[Tensor, Tensor]:
    """``n`` unit boxes that never overlap, with random distinct scores: NMS keeps them all."""
    x = torch.arange(n, dtype=torch.float32) * 2
    boxes = torch.stack([x, torch.zeros(n), x + 1, torch.ones(n)], dim=1)
    return boxes, torch.randperm(n, generator=torch.Generator().manual_seed(0)).float()


def _record_iou_shapes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    shapes: list[tuple[int, int]] = []

    def recording(a: Tensor, b: Tensor) -> Tensor:
        shapes.append((a.shape[0], b.shape[0]))
        return pairwise_iou(a, b)

    monkeypatch.setattr(box_ops, "pairwise_iou", recording)
    return shapes


def test_iou_matrices_stay_bounded_when_everything_is_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(box_ops, "_NMS_BLOCK", 64)
    monkeypatch.setattr(box_ops, "_NMS_KEPT_CHUNK", 256)
    shapes = _record_iou_shapes(monkeypatch)
    boxes, scores = _disjoint(1500)
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == scores.argsort(descending=True).tolist()
    assert max(a * b for a, b in shapes) <= 64 * 256  # never the 1500 x 1500 matrix


def test_cap_stops_the_work_early(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = _record_iou_shapes(monkeypatch)
    boxes, scores = _disjoint(5000)
    keep = nms(boxes, scores, 0.5, max_detections=10)
    assert keep.tolist() == scores.argsort(descending=True)[:10].tolist()
    assert shapes == [(box_ops._NMS_BLOCK, box_ops._NMS_BLOCK)]  # the first block alone
