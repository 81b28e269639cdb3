"""ONNX export of the fused deploy graph, and an ONNX Runtime runner for it.

Uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter needs
``onnxscript`` and does not honour ``autograd.Function.symbolic``, which is how the end2end
graph emits the standard ``NonMaxSuppression`` op. The file is checked with
``onnx.checker``, simplified with ``onnxslim`` when it is installed (constant folding and
shape cleanup make the graph smaller and ORT/OpenVINO load it faster), and carries its own
description in ``metadata_props`` so a runtime needs no side file: model name, image size,
input fit (``letterbox`` or ``stretch``: how images must be fitted to the input, as in
training), class names, opset, precision and NMS settings, and the default score threshold
when the model carries one (``default_score_threshold``: the best-F1 confidence its training
measured, see :func:`damo_core.export.common.set_default_threshold`; OpenVINO and TensorRT
exports copy this metadata, so they record it too).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damo_core.atomic import atomic_write_bytes
from damo_core.data.fit import PAD_VALUE, model_fit
from damo_core.errors import UserInputError
from damo_core.export.common import (
    DEFAULT_THRESHOLD_KEY,
    INPUT_NAME,
    check_image_size,
    model_default_threshold,
    output_stem,
    require,
)
from damo_core.export.wrapper import ExportModel
from damo_core.models import Detector

MIN_OPSET, MAX_OPSET = 11, 20  # NonMaxSuppression-11; the TorchScript exporter stops at 20


def export(
    model: Detector,
    out_dir: str | Path,
    *,
    image_size: int,
    half: bool = False,
    dynamic_batch: bool = False,
    opset: int = 17,
    end2end: bool = False,
    simplify: bool = True,
    device: str = "cpu",
    class_names: list[str] | None = None,
    max_detections: int = 100,
    score_threshold: float | None = None,
    iou_threshold: float | None = None,
) -> Path:
    """Write ``<out_dir>/<model>_<size>_<fp32|fp16>[_e2e].onnx`` and return its path.

    Input ``images [B, 3, S, S]`` float32 raw 0..255 (RGB fitted by the model's input fit,
    recorded as ``fit``; the model normalises internally). Outputs are those of
    :class:`ExportModel`. ``half`` traces the network in float16 and therefore needs a CUDA
    ``device`` (CPU float16 kernels are missing or slow, and ONNX Runtime's CPU provider does
    not run float16 convolutions).
    """
    check_image_size(image_size)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserInputError(f"opset must be in [{MIN_OPSET}, {MAX_OPSET}], got {opset}")
    if half and not str(device).startswith("cuda"):
        raise UserInputError("half-precision ONNX export needs device='cuda'; on CPU export "
                             "float32 (or use OpenVINO with half=True for an FP16 IR)")
    onnx = require("onnx", "onnx", "ONNX export")
    wrapper = ExportModel(model, end2end=end2end, half=half, max_detections=max_detections,
                          score_threshold=score_threshold, iou_threshold=iou_threshold)
    wrapper = wrapper.to(device).eval()
    with tempfile.TemporaryDirectory(prefix="damo-onnx-") as tmp:
        raw = Path(tmp) / "model.onnx"
        _trace(wrapper, raw, image_size, opset, dynamic_batch, device)
        proto = onnx.load(str(raw))
    onnx.checker.check_model(proto)
    if simplify:
        proto = _simplify(proto)
    meta = _metadata(wrapper, image_size, opset, class_names, dynamic_batch)
    onnx.helper.set_model_props(proto, meta)
    stem = output_stem(model, image_size, end2end=end2end, precision="fp16" if half else "fp32")
    path = Path(out_dir) / f"{stem}.onnx"
    return atomic_write_bytes(path, proto.SerializeToString())


def _trace(wrapper: ExportModel, path: Path, image_size: int, opset: int,
           dynamic_batch: bool, device: str) -> None:
    # Batch 2 when dynamic, so the tracer cannot bake in a size-1 broadcast.
    dummy = torch.rand(2 if dynamic_batch else 1, 3, image_size, image_size,
                       device=device) * 255
    names = list(wrapper.output_names)
    axes = ({name: {0: "batch"} for name in [INPUT_NAME, *names]} if dynamic_batch else None)
    with warnings.catch_warnings(), torch.no_grad():
        # Shape checks in Detector.forward become constants; that is what we want here. The
        # legacy exporter is chosen on purpose (see the module docstring), so its
        # deprecation notices are noise.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(wrapper, (dummy,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names, dynamic_axes=axes,
                          do_constant_folding=True)


def _simplify(proto: Any) -> Any:
    """Run onnxslim when installed; an unsimplified graph is still a correct graph."""
    try:
        import onnxslim
    except ImportError:
        warnings.warn("onnxslim is not installed; writing the unsimplified graph", stacklevel=3)
        return proto
    slim = onnxslim.slim(proto)
    require("onnx", "onnx", "ONNX export").checker.check_model(slim)
    return slim


def _metadata(wrapper: ExportModel, image_size: int, opset: int,
              class_names: list[str] | None, dynamic_batch: bool) -> dict[str, str]:
    model = wrapper.model
    names = list(class_names) if class_names else [str(i) for i in
                                                   range(model.head.num_classes)]
    if len(names) != model.head.num_classes:
        raise UserInputError(f"{len(names)} class names for a model with "
                             f"{model.head.num_classes} classes")
    fit = model_fit(model)
    meta = {"model_name": model.name, "image_size": str(image_size), "fit": fit,
            "class_names": json.dumps(names), "opset": str(opset),
            "precision": "fp16" if wrapper.half else "fp32", "end2end": str(wrapper.end2end),
            "dynamic_batch": str(dynamic_batch), "strides": json.dumps(model.head.strides),
            "input": f"{INPUT_NAME}: float32 [B,3,{image_size},{image_size}] RGB 0..255, "
                     f"fitted by {fit} (damo_core.data.fit, pad {PAD_VALUE})",
            "producer": "damo_core.export.onnx"}
    threshold = model_default_threshold(model)
    if threshold is not None:  # absent, not a made-up 0.3, when training measured none
        meta[DEFAULT_THRESHOLD_KEY] = str(threshold)
    if wrapper.end2end:
        meta.update(score_threshold=str(wrapper.score_threshold),
                    iou_threshold=str(wrapper.iou_threshold),
                    max_detections=str(wrapper.max_detections))
    return meta


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an exported file, as a plain dict."""
    onnx = require("onnx", "onnx", "reading ONNX metadata")
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


class OnnxRuntimeRunner:
    """Run an exported file with ONNX Runtime's CPU provider: ``runner(images) -> outputs``.

    ``threads`` pins intra-op threads so side-by-side numbers compare equal core counts.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        ort = require("onnxruntime", "onnxruntime", "ONNX Runtime inference")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(path), opts,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(images)})


def load_runner(path: str | Path, *, threads: int | None = None) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(path, threads=threads)
