"""COCO evaluation: the scoring step against known answers, then the full inference loop.

The scoring checks feed ground truth back as predictions (must give AP 1), a known shift
(must give a known AP), nothing (AP 0), and random noise (must agree with pycocotools' own
``loadRes`` path). The end-to-end checks use an oracle model that outputs the ground truth in
letterboxed coordinates, so a bug in batching, id bookkeeping, label→category mapping or the
inverse letterbox shows up as AP < 1.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import deque
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn

from damo_core.atomic import atomic_path
from damo_core.data.coco import CocoDetection, load_dataset_yaml
from damo_core.data.synth import generate
from damo_core.eval.evaluator import (
    EvalResult,
    detections_to_coco_results,
    evaluate,
    score_detections,
)
from damo_core.eval.postprocess import Detections
from damo_core.eval.pr_curve import plot_pr_curve
from damo_core.models.detector import build_model

IMAGE_SIZE = 128


@pytest.fixture(scope="module")
def synth_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "ds", num_images=32, image_size=128)


@pytest.fixture(scope="module")
def synth_val(synth_yaml: Path) -> CocoDetection:
    return CocoDetection.from_spec(load_dataset_yaml(synth_yaml), "val")


# Non-square images and non-contiguous category ids: what the synthetic set does not cover.
_ODD_IMAGES = [  # (width, height, [(x, y, w, h, category_id), ...])
    (200, 120, [(10, 20, 60, 40, 7), (120, 30, 70, 80, 3)]),
    (96, 160, [(5, 100, 50, 50, 11), (40, 10, 30, 30, 7)]),
    (150, 150, [(50, 50, 40, 60, 3)]),
]


@pytest.fixture(scope="module")
def odd_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("odd")
    (root / "images").mkdir()
    images, anns = [], []
    for i, (w, h, boxes) in enumerate(_ODD_IMAGES, start=1):
        Image.new("RGB", (w, h), (30, 60, 90)).save(root / "images" / f"{i}.png")
        images.append({"id": i * 10, "file_name": f"{i}.png", "width": w, "height": h})
        for x, y, bw, bh, cid in boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i * 10,
                    "category_id": cid,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    cats = [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}, {"id": 11, "name": "c"}]
    (root / "ann.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )
    (root / "dataset.yaml").write_text(
        "train: ann.json\nval: ann.json\ntrain_images: images\nval_images: images\n"
        "names: [a, b, c]\n"
    )
    return root / "dataset.yaml"


def _ground_truth(dataset: CocoDetection, shift: float = 0.0) -> dict[int, Detections]:
    """Each image's GT as detections (score 1), optionally shifted right by ``shift`` × width."""
    out = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        boxes = torch.from_numpy(sample.boxes).double()
        width = boxes[:, 2] - boxes[:, 0]
        boxes[:, [0, 2]] += shift * width[:, None]
        scores = torch.ones(len(boxes), dtype=torch.float64)
        out[sample.image_id] = Detections(boxes, scores, torch.from_numpy(sample.labels))
    return out


# ----------------------------------------------------------------------------- scoring


def test_ground_truth_as_predictions_scores_one(synth_val: CocoDetection) -> None:
    result = score_detections(synth_val.coco, _ground_truth(synth_val), cat_ids=synth_val.cat_ids)
    assert result.AP == pytest.approx(1.0) and result.AP50 == pytest.approx(1.0)
    assert result.AP75 == pytest.approx(1.0)
    assert result.per_class_ap == pytest.approx(dict.fromkeys(synth_val.class_names, 1.0))
    assert result.num_images == len(synth_val)
    assert result.num_detections == sum(len(synth_val[i].boxes) for i in range(len(synth_val)))
    assert result.pr_curve is not None and set(result.pr_curve.mean) == {1.0}


def test_shifted_boxes_score_exactly_the_thresholds_they_pass(synth_val: CocoDetection) -> None:
    # A shift of 0.3 box widths gives IoU 0.7 / 1.3 ≈ 0.54: a hit at IoU 0.50 only, which is
    # one of COCO's ten thresholds, so AP = 0.1 while AP50 stays perfect.
    result = score_detections(
        synth_val.coco, _ground_truth(synth_val, shift=0.3), cat_ids=synth_val.cat_ids
    )
    assert result.AP50 == pytest.approx(1.0)
    assert result.AP75 == 0.0
    assert result.AP == pytest.approx(0.1)


def test_no_detections_scores_zero(synth_val: CocoDetection) -> None:
    result = score_detections(synth_val.coco, {}, cat_ids=synth_val.cat_ids)
    assert (result.AP, result.AP50, result.AP75) == (0.0, 0.0, 0.0)
    assert result.per_class_ap == dict.fromkeys(synth_val.class_names, 0.0)
    assert result.num_detections == 0 and result.num_images == len(synth_val)
    empty = {iid: Detections.empty() for iid in synth_val.image_ids}
    assert score_detections(synth_val.coco, empty, cat_ids=synth_val.cat_ids).AP == 0.0


def test_wrong_class_scores_near_zero(synth_val: CocoDetection) -> None:
    swapped = {
        iid: Detections(d.boxes, d.scores, (d.labels + 1) % synth_val.num_classes)
        for iid, d in _ground_truth(synth_val).items()
    }
    # Not exactly 0: synthetic shapes overlap, so a relabelled box now and then lands on
    # another object that really has the new class.
    assert score_detections(synth_val.coco, swapped, cat_ids=synth_val.cat_ids).AP < 0.02


def test_agrees_with_pycocotools_load_res(synth_val: CocoDetection) -> None:
    """Random noisy detections: our scoring equals the stock ``loadRes`` + COCOeval path."""
    gen = torch.Generator().manual_seed(0)
    noisy = {}
    for iid, det in _ground_truth(synth_val).items():
        extra = torch.rand(5, 4, generator=gen, dtype=torch.float64) * 100
        extra[:, 2:] += extra[:, :2] + 5
        boxes = torch.cat([det.boxes + torch.randn(det.boxes.shape, generator=gen) * 3, extra])
        scores = torch.rand(len(boxes), generator=gen, dtype=torch.float64)
        labels = torch.randint(0, synth_val.num_classes, (len(boxes),), generator=gen)
        labels[: len(det)] = det.labels
        noisy[iid] = Detections(boxes, scores, labels)
    ours = score_detections(synth_val.coco, noisy, cat_ids=synth_val.cat_ids)
    records = detections_to_coco_results(noisy, synth_val.cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        stock = COCOeval(synth_val.coco, synth_val.coco.loadRes(records), "bbox")
        stock.evaluate()
        stock.accumulate()
        stock.summarize()
    assert 0.1 < ours.AP < 0.9
    np.testing.assert_allclose(ours.stats, stock.stats)
    assert np.mean(list(ours.per_class_ap.values())) == pytest.approx(ours.AP)


def test_bad_inputs_are_reported(synth_val: CocoDetection) -> None:
    with pytest.raises(ValueError, match="not in the ground truth"):
        score_detections(synth_val.coco, {987654: Detections.empty()}, cat_ids=synth_val.cat_ids)
    bad = Detections(torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([0.9]), torch.tensor([9]))
    with pytest.raises(ValueError, match="label 9 out of range"):
        score_detections(synth_val.coco, {synth_val.image_ids[0]: bad}, cat_ids=(1, 2, 3, 4))


def test_result_json_round_trip_and_plot(synth_val: CocoDetection, tmp_path: Path) -> None:
    result = score_detections(
        synth_val.coco, _ground_truth(synth_val, shift=0.2), cat_ids=synth_val.cat_ids
    )
    path = result.to_json(tmp_path / "out" / "metrics.json")
    assert EvalResult.from_json(path) == result
    assert json.loads(path.read_text())["AP50"] == result.AP50
    png = plot_pr_curve(result, tmp_path / "out" / "pr.png")
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 100
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "pr.png"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# ----------------------------------------------------------------------------- end to end


class _PassThroughHead(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def decode(self, outputs: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return outputs


class OracleModel(nn.Module):
    """Returns, batch by batch, the ground truth of the dataset's images in dataset order,
    mapped into letterbox coordinates by the letterbox contract (longer side scaled to the
    input size, the other rounded, image centred; each axis scaled by its realised ratio
    new/old, so boxes sit on the resized pixels). The evaluator must map them back exactly."""

    def __init__(self, dataset: CocoDetection, image_size: int) -> None:
        super().__init__()
        self.config = SimpleNamespace(name="oracle", image_size=image_size)
        self.head = _PassThroughHead(dataset.num_classes)
        self.pending: deque[tuple[Tensor, Tensor]] = deque()
        for i in range(len(dataset)):
            sample = dataset[i]
            h, w = sample.image.shape[:2]
            ratio = image_size / max(h, w)
            new_w, new_h = round(w * ratio), round(h * ratio)
            pad_x, pad_y = (image_size - new_w) // 2, (image_size - new_h) // 2
            scale = torch.tensor([new_w / w, new_h / h, new_w / w, new_h / h])
            boxes = torch.from_numpy(sample.boxes) * scale + torch.tensor(
                [pad_x, pad_y, pad_x, pad_y], dtype=torch.float32
            )
            self.pending.append((boxes, torch.from_numpy(sample.labels)))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        assert images.shape[1:] == (3, self.config.image_size, self.config.image_size)
        batch = [self.pending.popleft() for _ in range(images.shape[0])]
        n = max(1, *(len(b) for b, _ in batch))
        scores = torch.zeros(len(batch), n, self.head.num_classes)
        boxes = torch.zeros(len(batch), n, 4)
        for i, (b, labels) in enumerate(batch):
            boxes[i, : len(b)] = b
            scores[i, torch.arange(len(b)), labels] = 0.9
        return scores, boxes


def test_oracle_model_through_evaluate_scores_one(odd_yaml: Path, tmp_path: Path) -> None:
    spec = load_dataset_yaml(odd_yaml)
    model = OracleModel(CocoDetection.from_spec(spec, "val"), IMAGE_SIZE)
    results_json = tmp_path / "dets.json"
    result = evaluate(model, spec, batch_size=2, progress=False, results_json=results_json)
    assert model.pending == deque()  # every image seen exactly once
    assert result.AP == pytest.approx(1.0)
    assert result.per_class_ap == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.0})
    assert result.num_images == 3 and result.num_detections == 5
    records = json.loads(results_json.read_text())
    assert {r["category_id"] for r in records} == {3, 7, 11}
    first = next(r for r in records if r["image_id"] == 10 and r["category_id"] == 7)
    assert first["bbox"] == pytest.approx([10, 20, 60, 40], abs=1e-3)


def test_untrained_model_end_to_end(synth_yaml: Path, synth_val: CocoDetection) -> None:
    torch.manual_seed(0)
    model = build_model("damoyolo_ns", num_classes=4)
    model.train()
    # A fresh head predicts ~0.01 everywhere (prior), so a very low threshold is needed to
    # get detections at all; this exercises NMS, the 100-per-image cap and COCO scoring.
    result = evaluate(
        model,
        str(synth_yaml),
        image_size=IMAGE_SIZE,
        score_threshold=0.005,
        progress=False,
        workers=0,
    )
    assert model.training  # mode restored
    assert result.num_images == len(synth_val)
    assert result.num_detections == 100 * len(synth_val)
    assert all(np.isfinite(result.stats)) and 0.0 <= result.AP <= 1.0
    # Nano defaults (score 0.03) keep nothing from an untrained head: a clean zero, no crash.
    quiet = evaluate(model, synth_yaml, image_size=IMAGE_SIZE, progress=False)
    assert quiet.num_detections == 0 and quiet.AP == 0.0


def test_class_count_mismatch_fails_fast(synth_yaml: Path) -> None:
    model = build_model("damoyolo_ns", num_classes=80)
    with pytest.raises(ValueError, match="num_classes=4"):
        evaluate(model, synth_yaml, image_size=IMAGE_SIZE, progress=False)
