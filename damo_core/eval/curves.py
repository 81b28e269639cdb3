"""Precision, recall and F1 against the confidence threshold, and the threshold to deploy.

AP summarises a detector over every threshold; whoever runs it must still pick one. The
F1-confidence curve shows the trade-off per class, and the threshold maximising the mean F1
over classes is a sound default for ``damo predict --conf`` and the served model.

The detections and their true-positive flags come from the same-class matching of
:func:`damo_core.eval.confusion.match_detections` (COCOeval's rule at IoU 0.5), so these
curves, the confusion matrix's diagonal and AP50 all count the same hits. At threshold ``c`` a
detection counts when its score is strictly above ``c``, as the post-processor keeps them, so
the best threshold can be passed on unchanged. Thresholds are evaluated on a grid of 0.01
steps from 0 to 1; below the score threshold the evaluation ran with, nothing more is kept,
so the curves are flat there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from damo_core.atomic import atomic_path
from damo_core.errors import UserInputError
from damo_core.eval.confusion import SplitMatches

__all__ = [
    "CONFIDENCES",
    "ConfidenceCurves",
    "best_f1_threshold",
    "confidence_curves",
    "plot_f1_curve",
]

CONFIDENCES: tuple[float, ...] = tuple(round(i / 100, 2) for i in range(101))


@dataclass
class ConfidenceCurves:
    """Per class (classes with objects in the split only: recall is undefined for the
    others) and averaged over those classes, at each ``confidence``.

    Precision is 0 where a class keeps no detection, so the mean never rewards saying
    nothing; F1 is 0 where precision and recall both are. ``best_threshold`` is the
    confidence with the highest mean F1; among equal maxima the highest confidence, since it
    keeps the same hits on this split with fewer low-scoring detections elsewhere. With no
    detection at all every F1 is 0 and it is therefore 1.0.
    """

    iou: float
    confidence: list[float]
    precision: dict[str, list[float]] = field(default_factory=dict)
    recall: dict[str, list[float]] = field(default_factory=dict)
    f1: dict[str, list[float]] = field(default_factory=dict)
    mean_precision: list[float] = field(default_factory=list)
    mean_recall: list[float] = field(default_factory=list)
    mean_f1: list[float] = field(default_factory=list)
    best_threshold: float = 0.0

    @property
    def best_index(self) -> int:
        return self.confidence.index(self.best_threshold)

    def at_best(self) -> dict[str, float]:
        """Mean precision, recall and F1 at :attr:`best_threshold`."""
        i = self.best_index
        return {"precision": self.mean_precision[i], "recall": self.mean_recall[i],
                "f1": self.mean_f1[i]}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConfidenceCurves:
        def per_class(key: str) -> dict[str, list[float]]:
            return {k: [float(v) for v in vs] for k, vs in data[key].items()}

        return cls(iou=float(data["iou"]), confidence=[float(v) for v in data["confidence"]],
                   precision=per_class("precision"), recall=per_class("recall"),
                   f1=per_class("f1"),
                   **{k: [float(v) for v in data[k]]
                      for k in ("mean_precision", "mean_recall", "mean_f1")},
                   best_threshold=float(data["best_threshold"]))


def _class_curves(scores: np.ndarray, hits: np.ndarray, objects: int,
                  grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 of one class at each grid confidence (strictly-above rule)."""
    order = np.argsort(-scores, kind="stable")
    cum_hits = np.concatenate([[0], np.cumsum(hits[order])])
    ascending = np.sort(scores)
    kept = len(scores) - np.searchsorted(ascending, grid, side="right")  # scores > grid
    tp = cum_hits[kept].astype(np.float64)
    precision = np.divide(tp, kept, out=np.zeros_like(tp), where=kept > 0)
    recall = tp / objects
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return precision, recall, f1


def confidence_curves(matches: SplitMatches, *,
                      confidences: tuple[float, ...] = CONFIDENCES) -> ConfidenceCurves:
    """The curves of a matched split (ignored detections, those on crowd regions, left out)."""
    grid = np.asarray(confidences, dtype=np.float64)
    scores = np.concatenate([m.scores[~m.ignored] for m in matches.images] or [np.zeros(0)])
    labels = np.concatenate([m.labels[~m.ignored] for m in matches.images]
                            or [np.zeros(0, np.int64)])
    hits = np.concatenate([m.truth[~m.ignored] >= 0 for m in matches.images]
                          or [np.zeros(0, bool)])
    curves = ConfidenceCurves(iou=matches.iou, confidence=[float(c) for c in grid])
    for k, (name, objects) in enumerate(zip(matches.class_names, matches.instances(),
                                            strict=True)):
        if objects == 0:
            continue
        mine = labels == k
        p, r, f = _class_curves(scores[mine], hits[mine], int(objects), grid)
        curves.precision[name], curves.recall[name], curves.f1[name] = (
            p.tolist(), r.tolist(), f.tolist())
    zeros = np.zeros(len(grid))
    for key in ("precision", "recall", "f1"):
        values = list(getattr(curves, key).values())
        mean = np.mean(values, axis=0) if values else zeros
        setattr(curves, f"mean_{key}", mean.tolist())
    mean_f1 = np.asarray(curves.mean_f1)
    curves.best_threshold = float(grid[np.flatnonzero(mean_f1 == mean_f1.max())[-1]])
    return curves


class _HasCurves(Protocol):
    curves: ConfidenceCurves | None


def _curves_of(result_or_curves: ConfidenceCurves | _HasCurves) -> ConfidenceCurves:
    curves = (result_or_curves if isinstance(result_or_curves, ConfidenceCurves)
              else result_or_curves.curves)
    if curves is None:
        raise UserInputError("no confidence curves in this result (written before they "
                             "existed?); evaluate again")
    return curves


def best_f1_threshold(result_or_curves: ConfidenceCurves | _HasCurves) -> float:
    """The confidence maximising mean F1 over classes, of :class:`ConfidenceCurves` or of
    anything carrying them as ``.curves`` (an ``EvalResult``)."""
    return _curves_of(result_or_curves).best_threshold


DEFAULT_CONFIDENCE = 0.3  # where a checkpoint carries no measured threshold


def threshold_record(result_or_curves: ConfidenceCurves | _HasCurves) -> dict[str, float]:
    """What a checkpoint keeps of the curves: the best-F1 confidence and its mean F1; nothing
    when no confidence scores a hit (the 1.0 of an all-zero curve would hide every box)."""
    curves = _curves_of(result_or_curves)
    f1 = curves.at_best()["f1"] if curves.mean_f1 else 0.0
    return {"best_f1_threshold": curves.best_threshold, "best_f1": f1} if f1 > 0 else {}


def checkpoint_threshold(meta: dict[str, Any]) -> float:
    """The score threshold a model is used at unless told otherwise: the best-F1 confidence
    its training measured on the val split (``metrics.best_f1_threshold``), else
    :data:`DEFAULT_CONFIDENCE`."""
    value = (meta.get("metrics") or {}).get("best_f1_threshold")
    return float(value) if isinstance(value, int | float) and 0 <= value <= 1 \
        else DEFAULT_CONFIDENCE


def plot_f1_curve(result_or_curves: ConfidenceCurves | _HasCurves, out_png: str | Path, *,
                  title: str | None = None) -> Path:
    """F1 against confidence: each class (thin), the class mean (thick) and the best
    threshold marked, to a PNG, atomically, on the Agg canvas (headless, global matplotlib
    backend untouched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = _curves_of(result_or_curves)
    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, f1 in curves.f1.items():
        ax.plot(curves.confidence, f1, linewidth=1, alpha=0.7, label=name)
    best = curves.at_best()["f1"]
    ax.plot(curves.confidence, curves.mean_f1, linewidth=3, color="black",
            label=f"mean (best {best:.3f} at {curves.best_threshold:g})")
    ax.axvline(curves.best_threshold, color="black", linestyle="--", linewidth=1)
    ax.set(xlabel="confidence threshold", ylabel="F1", xlim=(0, 1), ylim=(0, 1.02),
           title=title or f"F1 against confidence at IoU {curves.iou:g}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small", ncol=1 + len(curves.f1) // 12)
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
