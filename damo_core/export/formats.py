"""The export-format table and the one entry point that checks a request against it.

Each format lives in its own module with the same ``export(model, out_dir, *, image_size,
...) -> Path`` shape; this table says what each one writes, whether it needs a GPU and which
options it accepts. Every call is checked against the table before any work starts, so an
unsupported combination fails in milliseconds with a message naming the alternatives
instead of half-way through a trace, and no format silently ignores or rewrites a flag.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from damo_core.errors import UserInputError
from damo_core.export import onnx, openvino, tensorrt
from damo_core.export.common import (
    BackendUnavailableError,
    score_threshold_or_none,
    set_default_threshold,
)
from damo_core.models import Detector, build_model
from damo_core.models.checkpoint import CheckpointError, load_state
from damo_core.train.checkpoint_io import model_from_checkpoint, read_checkpoint


class ExportFormat(NamedTuple):
    fn: Callable[..., Path]
    suffix: str
    needs_gpu: bool


FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(onnx.export, ".onnx", False),
    "openvino": ExportFormat(openvino.export, ".xml", False),
    "tensorrt": ExportFormat(tensorrt.export, ".engine", True),
}

_COMMON = frozenset({"end2end", "dynamic_batch", "class_names", "max_detections"})
# Options each format accepts beyond model, out_dir and image_size.
OPTIONS: dict[str, frozenset[str]] = {
    "onnx": _COMMON | {"half", "opset", "simplify", "device", "score_threshold",
                       "iou_threshold"},
    "openvino": _COMMON | {"half", "int8", "bf16", "data", "calib_count", "calib_split"},
    "tensorrt": _COMMON | {"half", "int8", "data", "calib_count", "calib_split", "max_batch",
                           "workspace_gb"},
}
_HINTS = {
    "int8": "INT8 is available for openvino and tensorrt",
    "half": "FP16 is available for onnx (with device='cuda'), openvino and tensorrt",
    "bf16": "BF16 is an OpenVINO CPU precision: export openvino",
}


def check_request(fmt: str, opts: dict[str, Any]) -> ExportFormat:
    """Validate ``fmt`` and its options; returns the table entry. Raises ``ValueError`` for a
    bad request and :class:`BackendUnavailableError` when this machine cannot serve it."""
    if fmt not in FORMATS:
        close = difflib.get_close_matches(fmt, list(FORMATS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserInputError(f"unknown export format {fmt!r}{hint} supported: {sorted(FORMATS)}")
    for key in opts:
        if key not in OPTIONS[fmt]:
            extra = f" ({_HINTS[key]})" if key in _HINTS else ""
            raise UserInputError(f"format {fmt!r} does not support option {key!r}{extra}; "
                                 f"supported: {sorted(OPTIONS[fmt])}")
    if sum(bool(opts.get(k)) for k in ("half", "int8", "bf16")) > 1:
        raise UserInputError("half, int8 and bf16 are exclusive: pick one precision")
    if opts.get("int8") and not opts.get("data"):
        raise UserInputError(f"{fmt} INT8 needs calibration images: pass data=<dataset.yaml>")
    if fmt == "onnx" and opts.get("half") and not str(opts.get("device", "cpu")).startswith(
            "cuda"):
        raise UserInputError("half (FP16) ONNX needs device='cuda': ONNX Runtime's CPU provider "
                             "does not run FP16 convolutions; on CPU use openvino with half")
    if str(opts.get("device", "cpu")).startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device={opts['device']!r} needs an NVIDIA GPU with CUDA, and this machine has "
            f"none (torch {torch.__version__}); use device='cpu'")
    spec = FORMATS[fmt]
    if spec.needs_gpu and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"format {fmt!r} needs an NVIDIA GPU with CUDA, and this machine has none "
            f"(torch {torch.__version__}); export 'onnx' or 'openvino' here instead")
    return spec


def export_model(model: Detector, fmt: str, out_dir: str | Path, *,
                 image_size: int | None = None, **opts: Any) -> Path:
    """Export ``model`` as ``fmt`` into ``out_dir`` after checking the request.

    Options left at ``None`` or ``False`` count as not given, so callers (the CLI) can pass
    every flag they have; a flag that is *set* and that the format does not support raises.
    """
    given = {k: v for k, v in opts.items() if v is not None and v is not False}
    spec = check_request(fmt, given)
    size = image_size or (model.config.image_size if model.config else None)
    if size is None:
        raise UserInputError("model has no config.image_size; pass image_size")
    path = spec.fn(model, out_dir, image_size=size, **given)
    assert path.suffix == spec.suffix, (path, spec.suffix)
    return path


@dataclass(frozen=True)
class ExportSource:
    """A model to export plus what the artefact should record about it.

    ``default_score_threshold``: the best-F1 confidence training measured (``None`` when it
    measured none); the model carries it too, so the exporters embed it in the file."""

    model: Detector
    image_size: int
    class_names: list[str] | None
    origin: str
    default_score_threshold: float | None = None


def load_source(weights: str | Path | None = None, model_name: str | None = None,
                num_classes: int | None = None) -> ExportSource:
    """What to export: a trained checkpoint (``weights``); a zoo model with random init
    (``model_name``; only meaningful for latency, its detections are noise); or both, for
    weights that are not a damo training checkpoint (the reference's published ``.pth``, a
    bare state dict) — or a damo checkpoint that must hold ``model_name``.

    A weights file of another model fails here, naming the file and what differs, before
    any export work starts.
    """
    if weights is None and model_name is None:
        raise UserInputError("nothing to export: pass weights (a trained best.pt), a model name "
                             "(random init, for latency only), or both (reference weights for "
                             "that model)")
    if num_classes is not None and (isinstance(num_classes, bool) or num_classes < 1):
        raise UserInputError(f"--num-classes must be a positive number of classes, got "
                             f"{num_classes}")
    ckpt = read_checkpoint(weights) if weights is not None else None
    if isinstance(ckpt, dict) and "model_config" in ckpt:
        model, meta = model_from_checkpoint(ckpt, str(weights))
        if model_name is not None and model_name != model.name:
            raise CheckpointError(
                f"{weights} holds a {model.name} checkpoint (field model_name), not "
                f"{model_name}; drop --model or pass the weights of {model_name}")
        size = int(meta.get("image_size") or model.config.image_size)
        threshold = measured_threshold(meta)
        set_default_threshold(model, threshold)
        return ExportSource(model, size, meta.get("class_names"), str(weights), threshold)
    if model_name is None:
        raise CheckpointError(f"{weights} is not a damo training checkpoint (no "
                              "model_config); name its architecture with --model")
    model = build_model(model_name, num_classes=num_classes).eval()
    assert model.config is not None
    if weights is None:
        return ExportSource(model, model.config.image_size, None,
                            f"{model_name} (random init)")
    load_state(model, ckpt, weights)
    return ExportSource(model.eval(), model.config.image_size, None, str(weights))


def measured_threshold(meta: dict[str, Any]) -> float | None:
    """The best-F1 confidence a checkpoint's training measured on the val split
    (``metrics.best_f1_threshold``, the default of ``damo predict``), or ``None`` when it has
    none (or an invalid one). Unlike :func:`damo_core.eval.curves.checkpoint_threshold` there
    is no fallback 0.3 here: an export records only what was measured, and whoever uses it
    (``damo infer`` through the deployed config) falls back to 0.3 itself."""
    metrics = meta.get("metrics")
    return (score_threshold_or_none(metrics.get("best_f1_threshold"))
            if isinstance(metrics, dict) else None)
