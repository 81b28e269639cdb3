"""Evaluation and inference: post-processing, COCO mAP, the confusion matrix and
precision/recall/F1 against confidence, prediction on files or a dataset split, drawing.

Prediction on folders, patterns and videos is :mod:`damo_core.eval.media` (with
:mod:`damo_core.eval.video`); it is not imported here, so importing this package does not load
PyAV. What it is given is expanded by :mod:`damo_core.eval.sources`, exported here.

Everything here stands alone from the training data pipeline except the input fit
(:mod:`damo_core.data.fit`), which is shared on purpose: a model must be evaluated, predicted
with and served on inputs fitted exactly as it was trained.
"""

from damo_core.eval.confusion import (
    ConfusionMatrix,
    SplitMatches,
    confusion_matrix,
    match_detections,
    plot_confusion_matrix,
)
from damo_core.eval.curves import (
    ConfidenceCurves,
    best_f1_threshold,
    confidence_curves,
    plot_f1_curve,
)
from damo_core.eval.draw import class_colour, draw_boxes, draw_detections
from damo_core.eval.evaluator import (
    PLOT_FILES,
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
    predict,
    predict_batches,
    predict_dataset,
    row_stem,
)
from damo_core.eval.preprocess import PreparedImage, load_image, prepare_image
from damo_core.eval.sources import (
    MediaFile,
    OutputPlan,
    annotated_paths,
    expand_sources,
    plan_outputs,
)

__all__ = [
    "PLOT_FILES",
    "ConfidenceCurves",
    "ConfusionMatrix",
    "Detections",
    "EvalResult",
    "MediaFile",
    "OutputPlan",
    "PreparedImage",
    "PRCurve",
    "RowDetections",
    "SplitMatches",
    "annotate_dataset",
    "annotated_paths",
    "best_f1_threshold",
    "class_colour",
    "confidence_curves",
    "confusion_matrix",
    "detections_to_coco_results",
    "draw_boxes",
    "draw_detections",
    "evaluate",
    "expand_sources",
    "load_image",
    "match_detections",
    "nms_defaults",
    "plan_outputs",
    "plot_confusion_matrix",
    "plot_f1_curve",
    "plot_pr_curve",
    "postprocess",
    "precision_recall_curve",
    "predict",
    "predict_batches",
    "predict_dataset",
    "prepare_image",
    "row_stem",
    "score_detections",
]
