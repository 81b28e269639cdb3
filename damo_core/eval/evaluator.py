"""COCO mAP of a detector on one split of a dataset.

Two separable stages:

* :func:`evaluate` runs the model over the split (batched, fitted to the input the way the
  model was trained, through the same
  :func:`~damo_core.eval.predict.detect_prepared` path that :func:`predict` uses) and collects
  detections in original-image pixels, keyed by COCO image id;
* :func:`score_detections` scores any such mapping against the ground truth with pycocotools.

Keeping scoring separate lets it be checked on its own (ground truth fed back as predictions
must score AP 1.0) and lets other producers of detections (exported ONNX models, a serving
endpoint) be scored by identical code.

Scoring also matches detections to objects (:mod:`damo_core.eval.confusion`) for what AP does
not show: F1 against confidence and the threshold maximising it (:mod:`damo_core.eval.curves`),
and the confusion matrix at that threshold. :meth:`EvalResult.write_plots` draws them.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from tqdm import tqdm

from damo_core.atomic import atomic_write_text
from damo_core.data.coco import CocoDetection, DatasetSpec
from damo_core.data.fit import FitMode, model_fit
from damo_core.data.manifest_dataset import ManifestDetection
from damo_core.errors import UserInputError
from damo_core.eval.confusion import (
    ConfusionMatrix,
    confusion_matrix,
    match_detections,
    plot_confusion_matrix,
)
from damo_core.eval.curves import ConfidenceCurves, confidence_curves, plot_f1_curve
from damo_core.eval.postprocess import Detections
from damo_core.eval.pr_curve import PRCurve, plot_pr_curve, precision_recall_curve
from damo_core.eval.predict import (
    detect_prepared,
    inference_mode,
    resolve_image_size,
    resolve_thresholds,
    thread_pool,
)
from damo_core.eval.preprocess import PreparedImage, prepare_image
from damo_core.models.layers.box_ops import xyxy_to_xywh

__all__ = [
    "PLOT_FILES",
    "EvalResult",
    "detections_to_coco_results",
    "evaluate",
    "plot_pr_curve",
    "precision_recall_curve",
    "score_detections",
]

# Order of COCOeval.stats for bbox evaluation.
_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_AP_ALL_AREAS, _MAX_DETS_LAST = 0, -1
_IOU_50 = 0  # index of IoU 0.5 in COCOeval's thresholds
# What EvalResult.write_plots writes, by key: file name.
PLOT_FILES = {"confusion_json": "confusion_matrix.json", "confusion": "confusion_matrix.png",
              "confusion_normalised": "confusion_matrix_normalised.png",
              "pr_curve": "pr_curve.png", "f1_curve": "f1_curve.png"}


@dataclass
class EvalResult:
    """COCO box metrics in ``[0, 1]``.

    Following pycocotools, a metric is ``-1.0`` when it is undefined because the split has
    no ground truth in that bucket (e.g. ``APs`` with no small objects). ``per_class_ap``
    lists the classes with ground truth in the split; ``stats`` holds all 12 COCOeval numbers
    (the six APs, then AR@1, AR@10, AR@100 and ARs/m/l).

    ``per_class_ap50`` is AP at IoU 0.5 for the same classes; ``per_class_images`` and
    ``per_class_instances`` count, for every class, the images holding it and its objects
    (crowd regions excluded). ``curves`` are precision, recall and F1 against confidence,
    and ``confusion`` the confusion matrix at the best-F1 confidence ``curves.best_threshold``.
    Results read from JSON written before these fields existed have them empty or ``None``.
    """

    AP: float
    AP50: float
    AP75: float
    APs: float
    APm: float
    APl: float
    per_class_ap: dict[str, float]
    num_images: int
    num_detections: int
    stats: list[float] = field(default_factory=list)
    pr_curve: PRCurve | None = None
    per_class_ap50: dict[str, float] = field(default_factory=dict)
    per_class_images: dict[str, int] = field(default_factory=dict)
    per_class_instances: dict[str, int] = field(default_factory=dict)
    curves: ConfidenceCurves | None = None
    confusion: ConfusionMatrix | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _STAT_NAMES}
        data.update(
            per_class_ap=dict(self.per_class_ap),
            num_images=self.num_images,
            num_detections=self.num_detections,
            stats=list(self.stats),
            pr_curve=self.pr_curve.to_dict() if self.pr_curve else None,
            per_class_ap50=dict(self.per_class_ap50),
            per_class_images=dict(self.per_class_images),
            per_class_instances=dict(self.per_class_instances),
            curves=self.curves.to_dict() if self.curves else None,
            confusion=self.confusion.to_dict() if self.confusion else None,
        )
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        curve, curves, confusion = data.get("pr_curve"), data.get("curves"), data.get("confusion")
        return cls(
            **{name: float(data[name]) for name in _STAT_NAMES},
            per_class_ap={k: float(v) for k, v in data["per_class_ap"].items()},
            num_images=int(data["num_images"]),
            num_detections=int(data["num_detections"]),
            stats=[float(v) for v in data.get("stats", [])],
            pr_curve=PRCurve.from_dict(curve) if curve else None,
            per_class_ap50={k: float(v) for k, v in data.get("per_class_ap50", {}).items()},
            per_class_images={k: int(v) for k, v in data.get("per_class_images", {}).items()},
            per_class_instances={k: int(v)
                                 for k, v in data.get("per_class_instances", {}).items()},
            curves=ConfidenceCurves.from_dict(curves) if curves else None,
            confusion=ConfusionMatrix.from_dict(confusion) if confusion else None,
        )

    def to_json(self, path: str | Path) -> Path:
        """Write the metrics as JSON, atomically (readers never see a partial file)."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        return atomic_write_text(path, text + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> EvalResult:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def summary(self) -> str:
        """One line for logs, e.g. ``AP 0.412 | AP50 0.601 | ...``."""
        parts = [f"{name} {getattr(self, name):.3f}" for name in _STAT_NAMES]
        return " | ".join(parts) + f" | {self.num_detections} dets on {self.num_images} images"

    def per_class_table(self) -> str:
        """Markdown table, one row per class: images and objects of the class in the split,
        its AP and AP50 (``-`` for a class without objects, whose AP is undefined)."""
        names = list(self.per_class_instances) or list(self.per_class_ap)
        lines = ["| class | images | instances | AP | AP50 |", "|---|---:|---:|---:|---:|"]
        for name in names:
            cells = [name.replace("|", "\\|"), self.per_class_images.get(name, "-"),
                     self.per_class_instances.get(name, "-"),
                     _fmt(self.per_class_ap.get(name)), _fmt(self.per_class_ap50.get(name))]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        return "\n".join(lines)

    def write_plots(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the files of :data:`PLOT_FILES` into ``out_dir`` (each atomically): the
        confusion matrix as JSON (counts and both normalisations) and as PNG heatmaps of the
        counts and the column-normalised matrix, and the precision-recall (IoU 0.5) and
        F1-confidence curves. Returns the paths by key."""
        if self.confusion is None or self.curves is None or self.pr_curve is None:
            raise UserInputError("this result has no matched detections to plot (written "
                                 "before they existed?); evaluate again")
        out = Path(out_dir)
        paths = {key: out / name for key, name in PLOT_FILES.items()}
        self.confusion.to_json(paths["confusion_json"])
        plot_confusion_matrix(self.confusion, paths["confusion"], normalise="none")
        plot_confusion_matrix(self.confusion, paths["confusion_normalised"], normalise="column")
        plot_pr_curve(self.pr_curve, paths["pr_curve"])
        plot_f1_curve(self.curves, paths["f1_curve"])
        return paths


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# ----------------------------------------------------------------------------- scoring


def detections_to_coco_results(
    detections: Mapping[int, Detections], cat_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """COCO "results" records (``image_id``, ``category_id``, ``bbox`` xywh, ``score``).

    ``cat_ids[label]`` is the COCO category id of contiguous label ``label``.
    """
    records: list[dict[str, Any]] = []
    for image_id, det in detections.items():
        labels = det.labels.tolist()
        bad = [lab for lab in labels if not 0 <= lab < len(cat_ids)]
        if bad:
            raise UserInputError(
                f"image id {image_id}: label {bad[0]} out of range for {len(cat_ids)} classes; "
                "does the model's num_classes match the dataset?"
            )
        boxes = xyxy_to_xywh(det.boxes.detach().double().cpu()).tolist()
        for box, score, label in zip(boxes, det.scores.tolist(), labels, strict=True):
            records.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(cat_ids[label]),
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
    return records


def _results_index(coco_gt: COCO, records: Sequence[Mapping[str, Any]]) -> COCO:
    """A pycocotools index over detection records.

    Does what ``COCO.loadRes`` does for boxes (area, id, iscrowd), but also accepts an empty
    list, on which ``loadRes`` crashes; an empty prediction set must score 0, not fail.
    """
    anns = []
    for i, rec in enumerate(records, start=1):
        _, _, w, h = rec["bbox"]
        anns.append({**rec, "area": w * h, "id": i, "iscrowd": 0})
    coco_dt = COCO()
    coco_dt.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": anns,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt.createIndex()
    return coco_dt


def _finite(value: float) -> float:
    """COCOeval yields -1 for undefined buckets; anything non-finite would break the JSON."""
    return float(value) if math.isfinite(value) else -1.0


def _per_class_ap(coco_eval: COCOeval, iou_index: int | slice = slice(None)
                  ) -> dict[str, float]:
    """Class name → AP over all areas, for classes with ground truth: AP@[.5:.95] by default,
    or at the one IoU threshold ``iou_index`` indexes."""
    precision = coco_eval.eval["precision"][iou_index, :, :, _AP_ALL_AREAS, _MAX_DETS_LAST]
    result = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        values = precision[..., k]
        if (values > -1).any():
            result[coco_eval.cocoGt.cats[cat_id]["name"]] = _finite(values[values > -1].mean())
    return result


def score_detections(
    coco_gt: COCO, detections: Mapping[int, Detections], *, cat_ids: Sequence[int]
) -> EvalResult:
    """Score ``detections`` (COCO image id → detections in original pixels) with COCOeval.

    Every ground-truth image counts; images missing from ``detections`` had none. pycocotools'
    progress prints are swallowed, its numbers kept. At most 100 detections per image are
    scored (the COCO protocol), highest scores first. The matching behind ``curves`` and
    ``confusion`` takes every detection given.
    """
    unknown = sorted(set(detections) - set(coco_gt.getImgIds()))
    if unknown:
        raise UserInputError(f"detections for image ids not in the ground truth: {unknown[:10]}")
    records = detections_to_coco_results(detections, cat_ids)
    coco_eval = COCOeval(coco_gt, _results_index(coco_gt, records), iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stats = [_finite(v) for v in coco_eval.stats]
    matches = match_detections(coco_gt, detections, cat_ids=cat_ids)
    curves = confidence_curves(matches)
    return EvalResult(
        **dict(zip(_STAT_NAMES, stats, strict=False)),
        per_class_ap=_per_class_ap(coco_eval),
        num_images=len(coco_gt.getImgIds()),
        num_detections=len(records),
        stats=stats,
        pr_curve=precision_recall_curve(coco_eval, iou=0.5),
        per_class_ap50=_per_class_ap(coco_eval, _IOU_50),
        per_class_images=dict(zip(matches.class_names, matches.images_with().tolist(),
                                  strict=True)),
        per_class_instances=dict(zip(matches.class_names, matches.instances().tolist(),
                                     strict=True)),
        curves=curves,
        confusion=confusion_matrix(matches, conf=curves.best_threshold),
    )


# ----------------------------------------------------------------------------- inference


EvalData = ManifestDetection | CocoDetection


def _open_split(data: EvalData | DatasetSpec | str | Path, split: str) -> EvalData:
    if isinstance(data, CocoDetection):
        return data
    from damo_core.data.resolve import open_split

    return open_split(data, split)


def _load_prepared(
    dataset: EvalData, index: int, size: int, fit: FitMode
) -> tuple[int, PreparedImage]:
    sample = dataset[index]
    return sample.image_id, prepare_image(sample.image, size, fit)


def _check_num_classes(model: nn.Module, dataset: EvalData) -> None:
    """Fail before a long run rather than with an index error while writing results."""
    head_classes = getattr(getattr(model, "head", None), "num_classes",
                           getattr(model, "num_classes", None))  # an ExportedDetector: no head
    if head_classes is not None and head_classes != dataset.num_classes:
        raise UserInputError(
            f"model predicts {head_classes} classes but {dataset.ann_file} has "
            f"{dataset.num_classes} ({', '.join(dataset.class_names)}); build the model with "
            f"num_classes={dataset.num_classes}"
        )


def evaluate(
    model: nn.Module,
    data: EvalData | DatasetSpec | str | Path,
    *,
    split: str = "val",
    image_size: int | None = None,
    batch_size: int = 8,
    score_threshold: float | None = None,
    iou_threshold: float | None = None,
    max_detections: int = 100,
    pre_nms_topk: int = 1000,
    device: torch.device | str = "cpu",
    workers: int = 4,
    progress: bool = True,
    results_json: str | Path | None = None,
    fit: FitMode | None = None,
) -> EvalResult:
    """COCO-evaluate ``model`` on ``split`` of ``data``: a manifest directory, a COCO
    ``dataset.yaml`` or ultralytics ``data.yaml`` (read through the manifest they convert
    to), or an opened dataset (a split of a manifest, or a COCO JSON reader as-is).

    ``image_size`` defaults to the model config's; unset thresholds default to the values the
    reference evaluates this model family with (0.05 / 0.7, nano 0.03 / 0.65). The model is
    moved to ``device`` and left there, in the train/eval mode it came in. ``results_json``
    optionally receives the raw COCO results records (written atomically). ``fit`` (letterbox
    or stretch) defaults to the mode recorded on the model by its checkpoint
    (:func:`damo_core.data.fit.model_fit`), so the AP describes the model as trained.
    """
    if batch_size <= 0:
        raise UserInputError(f"batch_size must be positive, got {batch_size}")
    dataset = _open_split(data, split)
    _check_num_classes(model, dataset)
    size = resolve_image_size(model, image_size)
    score_thr, iou_thr = resolve_thresholds(model, score_threshold, iou_threshold)
    detections: dict[int, Detections] = {}
    load = partial(_load_prepared, dataset, size=size, fit=model_fit(model, fit))
    bar = tqdm(total=len(dataset), desc=f"eval {split}", unit="img", disable=not progress)
    with bar, inference_mode(model, device), thread_pool(workers) as pool:
        for start in range(0, len(dataset), batch_size):
            loaded = list(pool.map(load, range(start, min(start + batch_size, len(dataset)))))
            found = detect_prepared(
                model,
                [p for _, p in loaded],
                score_threshold=score_thr,
                iou_threshold=iou_thr,
                max_detections=max_detections,
                pre_nms_topk=pre_nms_topk,
                device=device,
            )
            detections.update(zip((iid for iid, _ in loaded), found, strict=True))
            bar.update(len(loaded))
    if results_json is not None:
        records = detections_to_coco_results(detections, dataset.cat_ids)
        atomic_write_text(results_json, json.dumps(records))
    return score_detections(dataset.coco, detections, cat_ids=dataset.cat_ids)
