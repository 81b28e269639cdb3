"""The evaluate step: COCO AP, AP50, AP75, APs/m/l of a trained model on a dataset split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def run(weights: str | Path, data: str | Path, *, split: str = "val",
        img_size: int | None = None, out_json: str | Path | None = None,
        run_id: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Evaluate ``weights`` (a ``best.pt`` or the directory holding one) on ``split`` of
    ``data`` (a manifest directory, a dataset.yaml or data.yaml, or a directory holding one)
    at ``img_size`` (default: the checkpoint's). ``out_json`` gets the full result (per-class
    AP too). The metrics are pushed under the run ``run_id`` (default ``$DAMO_RUN_ID``);
    returns them with the model's name."""
    from damo_core.eval import evaluate
    from damo_core.steps._common import dataset_ref, push, weights_file
    from damo_core.train import load_trained

    model, meta = load_trained(weights_file(weights))
    result = evaluate(model, dataset_ref(data), split=split,
                      image_size=img_size or meta["image_size"], progress=progress, workers=0)
    if out_json is not None:
        result.to_json(out_json)
    metrics = {k: float(getattr(result, k)) for k in METRICS}
    push("eval", metrics, meta["model_name"], "pytorch", "cpu", run_id)
    return {**metrics, "model_name": meta["model_name"], "split": split}
