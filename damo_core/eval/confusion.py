"""Who matched whom: detections paired with ground-truth objects, and the confusion matrix.

AP says how good a detector is; it does not say *how* it fails. The confusion matrix does:
for each true class, how many objects were found with the right class, found but called
something else, or missed; for each predicted class, how many of its detections hit nothing.

Layout (``counts[row][column]``, ``C`` classes, index ``C`` is *background*):

* rows are the **predicted** class, then background (row ``C``: objects no detection found,
  i.e. misses);
* columns are the **true** class, then background (column ``C``: detections that match no
  object, i.e. false positives);
* the background/background cell is always 0.

So a column of a real class sums to that class's objects and its diagonal cell divided by the
sum is the class's recall; a row of a real class sums to that class's detections above the
threshold and its diagonal cell divided by the sum is the class's precision.

Matching, per image, at IoU ``iou`` (COCO's box IoU, from pycocotools, so the numbers here
agree with AP50):

1. **Same class first**, as COCOeval matches at one IoU threshold: detections in descending
   score order each take the unmatched object of their own class with the highest IoU
   ``>= iou`` (of equal IoUs, the object annotated last, as COCOeval does). A detection that
   finds none but lies on a *crowd* region of its class (intersection over the detection's
   area ``>= iou``) is ignored: neither a hit nor a false positive. Crowd regions are never
   objects to find.
2. **Then across classes**, among what stage 1 left over: leftover detections, again by
   descending score, each take the leftover (non-crowd) object of any class with the highest
   IoU ``>= iou`` (ties as in stage 1); that pair is a class confusion.
3. Detections still unmatched are false positives; objects still unmatched are misses.

Doing the same-class pass first means a confusion never hides a correct detection, so the
diagonal equals the true positives that precision, recall and F1 are computed from
(:mod:`damo_core.eval.curves`). Stage 1 is computed once over all detections: processing in
score order makes its result for the detections above any threshold the same as matching only
those, so a threshold just selects detections from it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from damo_core.atomic import atomic_path, atomic_write_text
from damo_core.errors import UserInputError
from damo_core.eval.postprocess import Detections
from damo_core.models.layers.box_ops import xyxy_to_xywh

__all__ = [
    "BACKGROUND",
    "ConfusionMatrix",
    "ImageMatch",
    "SplitMatches",
    "confusion_matrix",
    "match_detections",
    "plot_confusion_matrix",
]

BACKGROUND = "background"
MATCH_IOU = 0.5
# Above this many rows/columns the cell numbers and then the tick names become unreadable.
_ANNOTATE_MAX, _TICKS_MAX = 30, 60

Normalise = Literal["none", "column", "row"]


@dataclass(frozen=True)
class ImageMatch:
    """One image's detections and objects, with the same-class (stage 1) match of each
    detection. Arrays over detections: ``scores``, ``labels``, ``truth`` (index of the
    matched object, ``-1`` for none), ``ignored`` (on a crowd region only). Arrays over
    objects: ``truth_labels``, ``crowd``. ``iou[d, g]`` is COCO's IoU (for a crowd object,
    intersection over the detection's area)."""

    scores: np.ndarray
    labels: np.ndarray
    truth: np.ndarray
    ignored: np.ndarray
    truth_labels: np.ndarray
    crowd: np.ndarray
    iou: np.ndarray


@dataclass(frozen=True)
class SplitMatches:
    """Every image of a split matched at IoU ``iou``; what the confusion matrix and the
    confidence curves are both computed from, so they agree."""

    class_names: list[str]
    iou: float
    images: list[ImageMatch]

    def instances(self) -> np.ndarray:
        """Objects (crowd regions excluded) per class, ``[C]``."""
        counts = np.zeros(len(self.class_names), dtype=np.int64)
        for image in self.images:
            np.add.at(counts, image.truth_labels[~image.crowd], 1)
        return counts

    def images_with(self) -> np.ndarray:
        """Images holding at least one object of each class, ``[C]``."""
        counts = np.zeros(len(self.class_names), dtype=np.int64)
        for image in self.images:
            counts[np.unique(image.truth_labels[~image.crowd])] += 1
        return counts


def _image_truth(coco_gt: COCO, image_id: int, label_of: Mapping[int, int]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xywh boxes, contiguous labels, crowd flags) of one image's annotations."""
    anns = coco_gt.imgToAnns.get(image_id, [])
    unknown = sorted({a["category_id"] for a in anns} - set(label_of))
    if unknown:
        raise UserInputError(f"image id {image_id}: category ids {unknown} are not among the "
                             f"evaluated classes {sorted(label_of)}")
    boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    labels = np.array([label_of[a["category_id"]] for a in anns], dtype=np.int64)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    return boxes, labels, crowd


def _coco_iou(det_xywh: np.ndarray, gt_xywh: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' box IoU ``[D, G]``; it returns a bare list when either side is empty."""
    if len(det_xywh) == 0 or len(gt_xywh) == 0:
        return np.zeros((len(det_xywh), len(gt_xywh)), dtype=np.float64)
    return np.asarray(mask_utils.iou(det_xywh, gt_xywh, crowd.astype(np.uint8).tolist()),
                      dtype=np.float64)


def _best(candidates: np.ndarray) -> int:
    """Index of the highest value, the last one among equals (COCOeval's tie rule)."""
    return len(candidates) - 1 - int(np.argmax(candidates[::-1]))


def _match_image(det: Detections, truth: tuple[np.ndarray, np.ndarray, np.ndarray],
                 iou_threshold: float) -> ImageMatch:
    """Stage 1 (same class, by score) for one image; see the module docstring."""
    gt_boxes, gt_labels, crowd = truth
    boxes = xyxy_to_xywh(det.boxes.detach().double().cpu()).numpy().reshape(-1, 4)
    scores = det.scores.detach().double().cpu().numpy().reshape(-1)
    labels = det.labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
    ious = _coco_iou(boxes, gt_boxes, crowd)
    matched = np.full(len(scores), -1, dtype=np.int64)
    ignored = np.zeros(len(scores), dtype=bool)
    taken = np.zeros(len(gt_labels), dtype=bool)
    if len(gt_labels):
        for d in np.argsort(-scores, kind="stable"):
            same = gt_labels == labels[d]
            candidates = np.where(same & ~crowd & ~taken, ious[d], -1.0)
            best = _best(candidates)
            if candidates[best] >= iou_threshold:
                matched[d], taken[best] = best, True
            elif np.any(same & crowd & (ious[d] >= iou_threshold)):
                ignored[d] = True
    return ImageMatch(scores=scores, labels=labels, truth=matched, ignored=ignored,
                      truth_labels=gt_labels, crowd=crowd, iou=ious)


def match_detections(coco_gt: COCO, detections: Mapping[int, Detections], *,
                     cat_ids: Sequence[int], iou: float = MATCH_IOU) -> SplitMatches:
    """Match ``detections`` (COCO image id → detections in original pixels, labels
    contiguous: ``cat_ids[label]`` is the category id) with every ground-truth image of
    ``coco_gt``; an image missing from ``detections`` had none. Every detection given is
    matched (no per-image cap)."""
    label_of = {int(cat_id): k for k, cat_id in enumerate(cat_ids)}
    names = [str(coco_gt.cats[c]["name"]) if c in coco_gt.cats else str(c) for c in cat_ids]
    images = []
    for image_id in coco_gt.getImgIds():
        det = detections.get(image_id, Detections.empty())
        bad = [lab for lab in det.labels.tolist() if not 0 <= lab < len(cat_ids)]
        if bad:
            raise UserInputError(f"image id {image_id}: label {bad[0]} out of range for "
                                 f"{len(cat_ids)} classes")
        images.append(_match_image(det, _image_truth(coco_gt, image_id, label_of), iou))
    return SplitMatches(class_names=names, iou=float(iou), images=images)


# ----------------------------------------------------------------------------- the matrix


@dataclass
class ConfusionMatrix:
    """Counts at confidence threshold ``conf`` (a detection counts when its score is strictly
    above it, as :func:`~damo_core.eval.postprocess.postprocess` keeps them) and IoU ``iou``;
    layout in the module docstring."""

    class_names: list[str]
    conf: float
    iou: float
    counts: list[list[int]] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """Row and column names: the classes, then ``background``."""
        return [*self.class_names, BACKGROUND]

    def array(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=np.int64).reshape(len(self.labels), -1)

    def normalised(self, axis: Literal["column", "row"]) -> np.ndarray:
        """Each column (recall view) or row (precision view) divided by its sum; an empty
        column or row stays 0 rather than becoming NaN."""
        counts = self.array().astype(np.float64)
        totals = counts.sum(axis=0 if axis == "column" else 1, keepdims=True)
        return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)

    def to_dict(self) -> dict[str, Any]:
        """Counts plus both normalisations, so a reader needs no arithmetic."""
        return {"class_names": list(self.class_names), "labels": self.labels,
                "rows": "predicted", "columns": "true", "conf": self.conf, "iou": self.iou,
                "counts": self.array().tolist(),
                "column_normalised": self.normalised("column").tolist(),
                "row_normalised": self.normalised("row").tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfusionMatrix:
        return cls(class_names=[str(n) for n in data["class_names"]],
                   conf=float(data["conf"]), iou=float(data["iou"]),
                   counts=[[int(v) for v in row] for row in data["counts"]])

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON, atomically (readers never see a partial file)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")


def confusion_matrix(matches: SplitMatches, *, conf: float) -> ConfusionMatrix:
    """The matrix of detections scoring above ``conf`` (stages 2 and 3 of the module
    docstring on top of the stored stage 1)."""
    size = len(matches.class_names)
    counts = np.zeros((size + 1, size + 1), dtype=np.int64)
    for image in matches.images:
        kept = image.scores > conf
        taken = np.zeros(len(image.truth_labels), dtype=bool)
        hits = kept & (image.truth >= 0)
        np.add.at(counts, (image.labels[hits], image.labels[hits]), 1)
        taken[image.truth[hits]] = True
        left = np.flatnonzero(kept & (image.truth < 0) & ~image.ignored)
        for d in left[np.argsort(-image.scores[left], kind="stable")]:
            candidates = np.where(~image.crowd & ~taken, image.iou[d], -1.0)
            best = _best(candidates) if len(candidates) else -1
            if best >= 0 and candidates[best] >= matches.iou:
                counts[image.labels[d], image.truth_labels[best]] += 1
                taken[best] = True
            else:
                counts[image.labels[d], size] += 1
        np.add.at(counts, (size, image.truth_labels[~taken & ~image.crowd]), 1)
    return ConfusionMatrix(class_names=list(matches.class_names), conf=float(conf),
                           iou=matches.iou, counts=counts.tolist())


def plot_confusion_matrix(matrix: ConfusionMatrix, out_png: str | Path, *,
                          normalise: Normalise = "column") -> Path:
    """A heatmap PNG (written atomically) with the class names on the axes, coloured by the
    counts (``none``) or by the counts divided by their column (``column``: each true class
    sums to 1, so the diagonal reads as recall) or row (``row``: the diagonal reads as
    precision); while the matrix is small enough to read, each non-empty cell shows the value
    it is coloured by.

    Uses the Agg canvas directly, so it works headless and leaves the process's matplotlib
    backend alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = matrix.array()
    shown = counts.astype(np.float64) if normalise == "none" else matrix.normalised(normalise)
    n = len(matrix.labels)
    side = float(np.clip(2.5 + 0.45 * n, 5.0, 24.0))
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    vmax = 1.0 if normalise != "none" else max(1.0, float(shown.max()))
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= _TICKS_MAX:
        ax.set_xticks(range(n), matrix.labels, rotation=45, ha="right", fontsize="small")
        ax.set_yticks(range(n), matrix.labels, fontsize="small")
    if n <= _ANNOTATE_MAX:
        for row in range(n):
            for col in range(n):
                if counts[row, col]:
                    text = (str(counts[row, col]) if normalise == "none"
                            else f"{shown[row, col]:.2f}")
                    ax.text(col, row, text, ha="center", va="center",
                            fontsize="small",
                            color="white" if shown[row, col] > 0.6 * vmax else "black")
    view = {"column": "\n(each true class sums to 1)",
            "row": "\n(each predicted class sums to 1)", "none": ""}[normalise]
    ax.set(xlabel="true class", ylabel="predicted class",
           title=f"Confusion at confidence > {matrix.conf:g}, IoU {matrix.iou:g}{view}")
    fig.tight_layout()
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
