"""Evaluation and inference: post-processing, COCO mAP, prediction on files, drawing.

Everything here stands alone from the training data pipeline (own letterbox in
:mod:`damo_core.eval.preprocess`), so an evaluation measures the model, not the loader.
"""

from damo_core.eval.evaluator import (
    EvalResult,
    detections_to_coco_results,
    evaluate,
    score_detections,
)
from damo_core.eval.postprocess import Detections, nms_defaults, postprocess
from damo_core.eval.pr_curve import PRCurve, plot_pr_curve, precision_recall_curve
from damo_core.eval.predict import annotated_paths, class_colour, draw_detections, predict
from damo_core.eval.preprocess import LetterboxInfo, boxes_to_original, letterbox

__all__ = [
    "Detections",
    "EvalResult",
    "LetterboxInfo",
    "PRCurve",
    "annotated_paths",
    "boxes_to_original",
    "class_colour",
    "detections_to_coco_results",
    "draw_detections",
    "evaluate",
    "letterbox",
    "nms_defaults",
    "plot_pr_curve",
    "postprocess",
    "precision_recall_curve",
    "predict",
    "score_detections",
]
