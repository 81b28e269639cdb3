"""The evaluate step: COCO AP, AP50, AP75, APs/m/l of a trained model on a dataset split, and
what a person needs to read them: per-class AP, the confusion matrix, precision-recall and
F1-confidence curves, and the confidence threshold with the best mean F1."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from damo_core.eval import EvalResult

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# The plots the KFP page embeds, by EvalResult.write_plots key, with their captions.
_PAGE_PLOTS = (("confusion", "Confusion matrix (counts)"),
               ("confusion_normalised", "Confusion matrix, each true class summing to 1"),
               ("pr_curve", "Precision-recall at IoU 0.5"),
               ("f1_curve", "F1 against confidence"))


def run(weights: str | Path, data: str | Path, *, split: str = "val",
        img_size: int | None = None, out_json: str | Path | None = None,
        out_dir: str | Path | None = None, report_md: str | Path | None = None,
        run_id: str | None = None, progress: bool = False,
        precision: str | None = None) -> dict[str, Any]:
    """Evaluate ``weights`` (a ``best.pt`` or the directory holding one, run fused; or an
    export) at ``precision`` (:func:`damo_core.eval.engine.open_inference_model`) on ``split`` of
    ``data`` (a manifest directory, a dataset.yaml or data.yaml, or a directory holding one)
    at ``img_size`` (default: the checkpoint's). ``out_json`` gets the full result (per-class
    AP, curves and confusion matrix too); ``out_dir`` the confusion matrix (JSON and PNGs) and
    the precision-recall and F1-confidence plots; ``report_md`` a Markdown page (the KFP UI's)
    with the per-class table and, when ``out_dir`` is given, those plots embedded. The metrics
    are pushed under the run ``run_id`` (default ``$DAMO_RUN_ID``); returns them with the
    model's name, the best-F1 confidence threshold and the per-class table (Markdown)."""
    from damo_core.eval import best_f1_threshold, evaluate
    from damo_core.eval.engine import open_inference_model
    from damo_core.steps._common import dataset_ref, push

    ref = dataset_ref(data)
    with open_inference_model(weights, precision=precision, data=ref) as (model, meta):
        result = evaluate(model, ref, split=split, image_size=img_size or meta["image_size"],
                          progress=progress, workers=0)
        fmt = getattr(getattr(model, "export", None), "fmt", "pytorch")
    if out_json is not None:
        result.to_json(out_json)
    plots = result.write_plots(out_dir) if out_dir is not None else {}
    if report_md is not None:
        from damo_core.atomic import atomic_write_text

        atomic_write_text(report_md, _page(result, meta["model_name"], split, plots))
    metrics = {k: float(getattr(result, k)) for k in METRICS}
    push("eval", metrics, meta["model_name"], fmt, "gpu" if fmt == "tensorrt" else "cpu", run_id)
    return {**metrics, "model_name": meta["model_name"], "split": split, "format": fmt,
            "precision": meta["precision"],
            "best_f1_threshold": best_f1_threshold(result),
            "per_class_table": result.per_class_table()}


def _page(result: EvalResult, model_name: str, split: str, plots: dict[str, Path]) -> str:
    """The KFP UI's page: headline metrics, the best-F1 threshold, the per-class table and the
    plots as data URIs (the Markdown viewer needs nothing but the artifact itself)."""
    assert result.curves is not None  # score_detections always computes them
    best = result.curves.at_best()
    lines = [f"# {model_name} on {split}: AP {result.AP:.3f}, AP50 {result.AP50:.3f}", "",
             result.summary(), "",
             f"Best mean F1 {best['f1']:.3f} at confidence > {result.curves.best_threshold:g} "
             f"(mean precision {best['precision']:.3f}, recall {best['recall']:.3f}); the "
             "confusion matrix is drawn at that threshold.", "",
             "## Per class", "", result.per_class_table(), ""]
    for key, caption in _PAGE_PLOTS:
        if key in plots:
            data = base64.b64encode(Path(plots[key]).read_bytes()).decode()
            lines += [f"![{caption}](data:image/png;base64,{data})", ""]
    return "\n".join(lines)
