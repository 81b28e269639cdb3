"""Precision–recall curves from a finished COCOeval, and a PNG plot of them.

COCOeval already interpolates precision at 101 fixed recall levels per IoU threshold,
class, area range and detection cap; the curve at IoU 0.5 over all areas with 100
detections per image is the one people read (its mean over recall is AP50). Extracting it
here keeps the plot consistent with the reported numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pycocotools.cocoeval import COCOeval

from damo_core.atomic import atomic_path
from damo_core.errors import UserInputError

__all__ = ["PRCurve", "plot_pr_curve", "precision_recall_curve"]

# Indices into COCOeval.eval["precision"] of shape [iou, recall, class, area, max_dets]:
# area range "all" and the largest detection cap (100 by default).
_AREA_ALL, _MAX_DETS_LAST = 0, -1


@dataclass
class PRCurve:
    """Interpolated precision at each recall level, per class and averaged over classes.

    Only classes with ground truth in the evaluated images appear (for the others precision
    is undefined); ``mean`` averages over those, so ``mean(mean) == AP at iou``.
    """

    iou: float
    recall: list[float]
    precision: dict[str, list[float]] = field(default_factory=dict)
    mean: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PRCurve:
        return cls(
            iou=float(data["iou"]),
            recall=[float(v) for v in data["recall"]],
            precision={k: [float(v) for v in vs] for k, vs in data["precision"].items()},
            mean=[float(v) for v in data["mean"]],
        )


def precision_recall_curve(coco_eval: COCOeval, *, iou: float = 0.5) -> PRCurve:
    """Read the PR curves at IoU ``iou`` out of an accumulated ``COCOeval``."""
    if not coco_eval.eval:
        raise ValueError("COCOeval has no results; call evaluate() and accumulate() first")
    params = coco_eval.params
    matches = np.flatnonzero(np.isclose(params.iouThrs, iou))
    if matches.size == 0:
        raise ValueError(f"IoU {iou} is not one of the evaluated thresholds {params.iouThrs}")
    table = coco_eval.eval["precision"][matches[0], :, :, _AREA_ALL, _MAX_DETS_LAST]  # [R, K]
    curves: dict[str, list[float]] = {}
    for k, cat_id in enumerate(params.catIds):
        column = table[:, k]
        if (column > -1).all():  # -1 marks "no ground truth for this class"
            curves[coco_eval.cocoGt.cats[cat_id]["name"]] = column.tolist()
    mean = np.mean(list(curves.values()), axis=0).tolist() if curves else []
    return PRCurve(iou=float(iou), recall=params.recThrs.tolist(), precision=curves, mean=mean)


class _HasCurve(Protocol):
    pr_curve: PRCurve | None


def plot_pr_curve(
    result_or_data: PRCurve | _HasCurve, out_png: str | Path, *, title: str | None = None
) -> Path:
    """Plot each class's curve (thin) and the class mean (thick) to a PNG, atomically.

    Accepts a :class:`PRCurve` or anything carrying one as ``.pr_curve`` (an ``EvalResult``).
    Uses the Agg canvas directly, so it works headless and never changes the global
    matplotlib backend of the calling process.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curve = result_or_data if isinstance(result_or_data, PRCurve) else result_or_data.pr_curve
    if curve is None:
        raise UserInputError("no precision-recall data to plot (evaluation produced none)")
    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, precision in curve.precision.items():
        ax.plot(curve.recall, precision, linewidth=1, alpha=0.7, label=name)
    if curve.mean:
        ap = float(np.mean(curve.mean))
        ax.plot(
            curve.recall,
            curve.mean,
            linewidth=3,
            color="black",
            label=f"mean (AP{round(curve.iou * 100)} {ap:.3f})",
        )
    ax.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=title or f"Precision-recall at IoU {curve.iou:g}",
    )
    ax.grid(alpha=0.3)
    if curve.precision:
        ax.legend(loc="lower left", fontsize="small", ncol=1 + len(curve.precision) // 12)
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
