"""Evaluation and inference: post-processing, COCO mAP, prediction on files or a dataset
split, drawing.

Everything here stands alone from the training data pipeline except the input fit
(:mod:`damo_core.data.fit`), which is shared on purpose: a model must be evaluated, predicted
with and served on inputs fitted exactly as it was trained.
"""

from damo_core.eval.evaluator import (
    EvalResult,
    detections_to_coco_results,
    evaluate,
    score_detections,
)
from damo_core.eval.postprocess import Detections, nms_defaults, postprocess
from damo_core.eval.pr_curve import PRCurve, plot_pr_curve, precision_recall_curve
from damo_core.eval.predict import (
    RowDetections,
    annotate_dataset,
    annotated_paths,
    class_colour,
    draw_detections,
    predict,
    predict_dataset,
    row_stem,
)
from damo_core.eval.preprocess import PreparedImage, load_image, prepare_image

__all__ = [
    "Detections",
    "EvalResult",
    "PreparedImage",
    "PRCurve",
    "RowDetections",
    "annotate_dataset",
    "annotated_paths",
    "class_colour",
    "detections_to_coco_results",
    "draw_detections",
    "evaluate",
    "load_image",
    "nms_defaults",
    "plot_pr_curve",
    "postprocess",
    "precision_recall_curve",
    "predict",
    "predict_dataset",
    "prepare_image",
    "row_stem",
    "score_detections",
]
