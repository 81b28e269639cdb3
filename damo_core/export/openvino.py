"""OpenVINO IR export (FP32, FP16, INT8) and a latency-hint runner; the paper's CPU engine.

The paper times the nano models on an x86 CPU with OpenVINO, so this is the path that can be
compared with its numbers. The IR is converted from our own ONNX export (one traced graph
for every format, so a parity test of the ONNX file covers the IR's source too). FP16
compresses weights only (``compress_to_fp16``); the CPU plugin still computes in FP32
unless told otherwise. INT8 is NNCF post-training quantisation calibrated on fitted
images from a ``dataset.yaml``; the box decode (softmax, expectation, stride scaling) is kept
out of quantisation because an 8-bit grid there would cost whole pixels.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from damo_core.data.fit import model_fit
from damo_core.data.scratch import scratch_dir
from damo_core.errors import UserInputError
from damo_core.export import onnx as onnx_export
from damo_core.export import signal_stack
from damo_core.export.common import (
    calibration_images,
    check_image_size,
    output_stem,
    require,
)
from damo_core.models import Detector

# Decode and head ops left in float: quantising them shifts boxes by whole pixels.
DECODE_OP_TYPES = ["Multiply", "Subtract", "Sigmoid", "SoftMax", "Softmax", "ReduceSum"]
RT_INFO_SECTION = "model_info"
SCRATCH_PREFIX = ".damo-ov-"


def export(
    model: Detector,
    out_dir: str | Path,
    *,
    image_size: int,
    half: bool = False,
    int8: bool = False,
    bf16: bool = False,
    data: str | Path | None = None,
    calib_count: int = 300,
    calib_split: str = "train",
    dynamic_batch: bool = False,
    end2end: bool = False,
    class_names: list[str] | None = None,
    max_detections: int = 100,
) -> Path:
    """Write ``<out_dir>/<model>_<size>_<fp32|fp16|bf16|int8>[_e2e].xml`` (+ ``.bin``).

    ``bf16`` writes FP32 weights and records ``precision: bf16`` in the IR, so every runner
    of this file (benchmark, predict, evaluate, Triton) asks the CPU plugin for BF16 math.

    The pair is published so that a reader opening ``<stem>.xml`` never sees the new weights
    under an old graph, even if the export is killed between steps: see :func:`publish_pair`.
    Work happens in a ``.damo-ov-<host>-<pid>-*`` scratch directory inside ``out_dir``, removed
    on return or error; one left by a killed export is removed by the next export there.
    ``int8`` needs ``data`` (any dataset training accepts) and the ``nncf`` package.
    """
    check_image_size(image_size)
    if half + int8 + bf16 > 1:
        raise UserInputError("choose one of half (FP16 IR), int8 (INT8 IR) or bf16 (FP32 IR "
                             "run in BF16), not several")
    if int8 and data is None:
        raise UserInputError("OpenVINO INT8 needs calibration images: pass data=<dataset.yaml>")
    ov = require("openvino", "openvino", "OpenVINO export")
    nncf = require("nncf", "nncf", "OpenVINO INT8 quantisation") if int8 else None
    precision = "int8" if int8 else "fp16" if half else "bf16" if bf16 else "fp32"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with scratch_dir(out_dir, SCRATCH_PREFIX) as tmp:
        onnx_path = onnx_export.export(
            model, tmp, image_size=image_size, dynamic_batch=dynamic_batch, end2end=end2end,
            simplify=False, class_names=class_names, max_detections=max_detections)
        ov_model = ov.convert_model(str(onnx_path))
        meta = {**onnx_export.read_metadata(onnx_path), "precision": precision,
                "producer": "damo_core.export.openvino"}
        for key, value in meta.items():
            ov_model.set_rt_info(value, [RT_INFO_SECTION, key])
        if nncf is not None:
            assert data is not None
            images = calibration_images(data, image_size, fit=model_fit(model), count=calib_count,
                                        split=calib_split)
            ov_model = quantize(nncf, ov_model, images)
        stem = output_stem(model, image_size, end2end=end2end, precision=precision)
        xml = Path(tmp) / f"{stem}.xml"
        ov.save_model(ov_model, str(xml), compress_to_fp16=half)
        final = publish_pair(xml, out_dir)
    return final


def publish_pair(xml: Path, out_dir: Path) -> Path:
    """Move a staged ``.xml``/``.bin`` pair into ``out_dir`` under the same names.

    Two renames cannot be one atomic step, so the order makes every intermediate state safe
    for a reader that opens ``<stem>.xml`` (OpenVINO then loads ``<stem>.bin`` beside it):

    1. the old ``.xml`` is removed: readers now see no model, never the old graph;
    2. the new ``.bin`` replaces the old one (invisible: no ``.xml`` refers to it);
    3. the new ``.xml`` is renamed in: readers see the new graph with its new weights.

    A kill after step 1 or 2 leaves a ``.bin`` without ``.xml``, which no reader loads and
    the next export replaces. The staged files must be on ``out_dir``'s filesystem.
    """
    final = out_dir / xml.name
    with contextlib.suppress(FileNotFoundError):
        os.unlink(final)
    os.replace(xml.with_suffix(".bin"), final.with_suffix(".bin"))
    os.replace(xml, final)
    return final


def quantize(nncf: Any, ov_model: Any, images: list[np.ndarray]) -> Any:
    """NNCF post-training quantisation over every calibration image given.

    ``MIXED`` preset (symmetric weights, asymmetric activations) instead of the CNN default
    ``PERFORMANCE`` (all symmetric): SiLU/ReLU outputs are nearly one-signed, so a symmetric
    range would leave half of the 256 levels unused.
    """
    quantized = nncf.quantize(
        ov_model, nncf.Dataset(images), subset_size=len(images),
        preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(types=DECODE_OP_TYPES, validate=False),
    )
    signal_stack.pin()  # NNCF compiled on its own CPU plugins: see signal_stack
    return quantized


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``model_info`` rt_info an exported IR carries (same keys as the ONNX metadata)."""
    ov = require("openvino", "openvino", "reading OpenVINO metadata")
    return _rt_info(ov.Core().read_model(str(path)))


def _rt_info(model: Any) -> dict[str, str]:
    if not model.has_rt_info([RT_INFO_SECTION]):
        return {}
    section = model.get_rt_info([RT_INFO_SECTION])
    return {key: value.astype(str) for key, value in section.astype(dict).items()}


class OpenVINORunner:
    """Synchronous OpenVINO inference with the ``LATENCY`` hint, as the paper measures.

    ``precision`` is the arithmetic asked of the CPU plugin (:mod:`damo_core.bench.precision`),
    by default the one the export recorded in the file (so Triton's Python backend, which only
    gets the file, runs a BF16 export in BF16). ``fp32`` pins ``INFERENCE_PRECISION_HINT`` to
    f32, which stops the plugin from silently running bf16 on CPUs that have it, so an "FP32"
    row means FP32 arithmetic; ``bf16`` asks for bf16 and is refused on a CPU without native
    BF16; ``int8`` is for quantised IRs, whose remaining float layers then run in f32. A
    dynamic-batch IR is reshaped to ``batch`` before compiling because static shapes compile
    to faster kernels.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None, batch: int | None = None,
                 device: str = "CPU", precision: str | None = None) -> None:
        from damo_core.bench.precision import OV_HINT, RUNS_AS, require_supported

        ov = require("openvino", "openvino", "OpenVINO inference")
        core = ov.Core()
        model = core.read_model(str(path))
        if precision is None:  # the file's own: what its export recorded
            precision = RUNS_AS.get(_rt_info(model).get("precision", "fp32"), "fp32")
        if device == "CPU":
            precision = require_supported(precision)
        self.precision = precision
        if batch is not None and model.input(0).get_partial_shape().is_dynamic:
            shape = model.input(0).get_partial_shape()
            model.reshape({0: [batch, *(d.get_length() for d in list(shape)[1:])]})
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if device == "CPU":
            config["INFERENCE_PRECISION_HINT"] = OV_HINT[precision]
        self.compiled = core.compile_model(model, device, config)
        signal_stack.pin()  # this Core's CPU plugin mapped a signal stack: see signal_stack
        if device == "CPU" and precision == "bf16":
            _check_compiled_bf16(self.compiled, path)
        self.request = self.compiled.create_infer_request()

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: np.ascontiguousarray(images)}, share_inputs=True)
        return [np.asarray(result[out]) for out in self.compiled.outputs]


def _check_compiled_bf16(compiled: Any, path: str | Path) -> None:
    """The plugin's own word on the precision it compiled: a CPU without BF16 units gets f32
    under a bf16 hint, silently, and that must not be reported as a BF16 result."""
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    got = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint).lower()
    if got != "bf16":
        raise UserInputError(f"{path}: asked OpenVINO for bf16 and it compiled {got} (this "
                             "CPU has no BF16 units); run fp32 or int8")


def load_runner(path: str | Path, *, threads: int | None = None,
                batch: int | None = None, precision: str | None = None) -> OpenVINORunner:
    return OpenVINORunner(path, threads=threads, batch=batch, precision=precision)
