"""The export step: the reparameterised (RepConv and BatchNorm fused) detector as a deploy
file: ONNX, OpenVINO IR or a TensorRT engine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from damo_core.metrics.mlflow_tracking import DEFAULT_EXPERIMENT


def run(weights: str | Path | None, out: str | Path, *, fmt: str = "onnx",
        model: str | None = None, num_classes: int | None = None, img_size: int | None = None,
        half: bool = False, int8: bool = False, data: str | Path | None = None,
        dynamic_batch: bool = False, end2end: bool = False, device: str = "cpu",
        opset: int | None = None, run_id: str | None = None, mlflow_uri: str = "",
        mlflow_experiment: str = DEFAULT_EXPERIMENT) -> dict[str, Any]:
    """Export ``weights`` (a ``best.pt``, the directory holding one, or with ``model`` the
    reference's ``.pth``; ``model`` alone is random init, for latency only) as ``fmt`` into
    ``out``. ``data`` (any dataset training accepts) calibrates INT8. ``dynamic_batch`` exports
    a graph that takes any batch, so Triton's native variant can batch concurrent requests (a static
    batch-1 graph gets ``max_batch_size`` 1). Returns the export's metadata (file, format,
    classes, image size, precision), which the benchmark and deploy steps read.

    ``mlflow_uri``: add the exported files to the MLflow run of this model in pipeline run
    ``run_id`` [default: $DAMO_RUN_ID, else local] (the training's, found by its tags; a new
    one when there is none); the server is checked before the export starts."""
    from damo_core.export.formats import export_model, load_source
    from damo_core.metrics.mlflow_tracking import connect, log_export
    from damo_core.steps._common import weights_file

    tracking = connect(mlflow_uri, mlflow_experiment) if mlflow_uri else None
    started = time.time()
    source = load_source(weights_file(weights) if weights is not None else None, model,
                         num_classes)
    size = img_size or source.image_size
    path = export_model(source.model, fmt, out, image_size=size, end2end=end2end, half=half,
                        int8=int8, data=data, dynamic_batch=dynamic_batch,
                        class_names=source.class_names,
                        device=None if device == "cpu" else device, opset=opset)
    names = list(source.class_names) if source.class_names else None
    precision = "int8" if int8 else "fp16" if half else "fp32"
    meta = {"model_name": source.model.name, "format": fmt, "file": path.name,
            "path": str(path), "image_size": size,
            "num_classes": len(names) if names else None, "class_names": names,
            "precision": precision, "dynamic_batch": bool(dynamic_batch),
            "end2end": bool(end2end), "origin": source.origin}
    if tracking is not None:
        from damo_core.metrics import run_id as env_run_id

        meta.update(log_export(tracking, run_id=run_id or env_run_id(),
                               model=source.model.name, path=path, fmt=fmt,
                               since=started))
    return meta
