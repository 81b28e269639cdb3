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
        mlflow_experiment: str = DEFAULT_EXPERIMENT,
        precision: str | None = None) -> dict[str, Any]:
    """Export ``weights`` (a ``best.pt``, the directory holding one, or with ``model`` the
    reference's ``.pth``; ``model`` alone is random init, for latency only) as ``fmt`` into
    ``out``. ``data`` (any dataset training accepts) calibrates INT8. ``dynamic_batch`` exports
    a graph that takes any batch, so Triton's native variant can batch concurrent requests (a static
    batch-1 graph gets ``max_batch_size`` 1). Returns the export's metadata (file, format,
    classes, image size, precision), which the benchmark and deploy steps read.

    ``precision`` (instead of ``half``/``int8``): ``fp32``, ``int8``, ``bf16`` (OpenVINO: FP32
    weights run with the BF16 hint) or ``auto`` (OpenVINO: every precision this CPU runs is
    exported, timed and evaluated on the val split of ``data``; the fastest within the
    accuracy limits is kept, :mod:`damo_core.export.precision_choice`). With ``data``, a
    trained model's BF16 or INT8 export has its val AP and AP50 measured and recorded beside
    the FP32 model's, so the metadata says what the precision cost (a random-init zoo model,
    exported for latency only, is not scored).

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
    precision = _precision(precision, half=half, int8=int8, fmt=fmt)
    extra: dict[str, Any] = {}
    if precision == "auto":
        from damo_core.export.precision_choice import choose_precision

        path, extra = choose_precision(source.model, out, image_size=size, data=data,
                                       class_names=source.class_names)
        precision = extra["precision"]
    else:
        path = export_model(source.model, fmt, out, image_size=size, end2end=end2end,
                            half=precision == "fp16", int8=precision == "int8",
                            bf16=precision == "bf16",
                            data=data if precision == "int8" else None,
                            dynamic_batch=dynamic_batch,
                            class_names=source.class_names,
                            device=None if device == "cpu" else device, opset=opset)
        if data is not None and precision in ("bf16", "int8") and source.class_names:
            extra = _accuracy(path, precision, source.model, data, size)
    names = list(source.class_names) if source.class_names else None
    meta = {"model_name": source.model.name, "format": fmt, "file": path.name,
            "path": str(path), "image_size": size,
            "num_classes": len(names) if names else None, "class_names": names,
            "precision": precision, "dynamic_batch": bool(dynamic_batch),
            "end2end": bool(end2end), "origin": source.origin, **extra}
    if tracking is not None:
        from damo_core.metrics import run_id as env_run_id

        meta.update(log_export(tracking, run_id=run_id or env_run_id(),
                               model=source.model.name, path=path, fmt=fmt,
                               since=started))
    return meta


def _precision(precision: str | None, *, half: bool, int8: bool, fmt: str) -> str:
    """One precision from the new option or the old flags (never both)."""
    from damo_core.bench.precision import check_precision
    from damo_core.errors import UserInputError

    if precision is None:
        if half and int8:
            raise UserInputError("half and int8 are exclusive: pick FP16 or INT8")
        return "int8" if int8 else "fp16" if half else "fp32"
    if half or int8:
        raise UserInputError("give the precision once: --precision, or --half / --int8")
    precision = check_precision(precision)
    if precision in ("bf16", "auto") and fmt != "openvino":
        raise UserInputError(f"precision {precision} is an OpenVINO CPU choice; format {fmt!r} "
                             "takes fp32 or int8 (--half for FP16)")
    return precision


def _accuracy(path: Path, precision: str, model: Any, data: str | Path,
              size: int) -> dict[str, Any]:
    """Val AP/AP50 of the export and of the fused FP32 model (``data`` needs a val split),
    when this CPU can run the export (a BF16 one needs native BF16)."""
    from damo_core.bench.precision import cpu_features
    from damo_core.eval.evaluator import evaluate
    from damo_core.export.precision_choice import export_accuracy
    from damo_core.steps._common import dataset_ref

    features = cpu_features()
    if precision == "bf16" and not features.bf16:
        return {"accuracy_note": f"not measured: {features.model} has no native BF16"}
    measured = export_accuracy(path, data)
    fp32 = evaluate(model.fuse(), dataset_ref(data), split="val", image_size=size, workers=0,
                    progress=False)
    return {"val_AP": measured["AP"], "val_AP50": measured["AP50"],
            "fp32_val_AP": float(fp32.AP), "fp32_val_AP50": float(fp32.AP50),
            "val_AP50_loss": float(fp32.AP50) - measured["AP50"]}
