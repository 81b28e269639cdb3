"""TensorRT engine export and runner: the paper's GPU numbers are TensorRT FP16 on a T4.

Needs an NVIDIA GPU, CUDA-enabled torch and the ``tensorrt`` package (10.x or later); on any
other machine every entry point raises :class:`BackendUnavailableError` (a ``RuntimeError``)
saying which of those is missing.

Precision is carried by the ONNX graph itself and the network is built *strongly typed*:
TensorRT 11 removed the FP16/INT8 builder flags, and strong typing works on 10.x as well.

- FP16: the ONNX is traced in float16 on the GPU (inputs/outputs and box decode stay
  float32, see :class:`~damo_core.export.wrapper.ExportModel`).
- INT8: explicit quantisation. NNCF's ONNX backend inserts QuantizeLinear/DequantizeLinear
  pairs calibrated on fitted images from a ``dataset.yaml``; TensorRT fuses them into
  INT8 kernels. (Implicit calibrators were deprecated in 10.1 and removed in 11.)

A JSON file beside the engine carries the ONNX metadata (engines have no metadata slot).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damo_core.atomic import atomic_write_bytes, atomic_write_text
from damo_core.data.fit import model_fit
from damo_core.errors import UserInputError
from damo_core.export import onnx as onnx_export
from damo_core.export.common import (
    INPUT_NAME,
    BackendUnavailableError,
    calibration_images,
    check_image_size,
    output_stem,
    require,
)
from damo_core.models import Detector

ONNX_DECODE_OP_TYPES = ["Mul", "Sub", "Sigmoid", "Softmax", "ReduceSum"]
MIN_TENSORRT_MAJOR = 10


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or a clear error naming what this machine lacks."""
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "TensorRT needs an NVIDIA GPU with CUDA, and this machine has none "
            f"(torch {torch.__version__}: torch.cuda.is_available() is False); export ONNX or "
            "OpenVINO here, or run this on a GPU machine with CUDA torch and tensorrt installed"
        )
    trt = require("tensorrt", "tensorrt", "TensorRT export")
    major = int(str(trt.__version__).split(".")[0])
    if major < MIN_TENSORRT_MAJOR:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} is too old: the tensor-address runtime API and "
            f"strongly typed networks need >= {MIN_TENSORRT_MAJOR}; pip install -U tensorrt")
    return trt


def export(
    model: Detector,
    out_dir: str | Path,
    *,
    image_size: int,
    half: bool = False,
    int8: bool = False,
    data: str | Path | None = None,
    calib_count: int = 300,
    calib_split: str = "train",
    dynamic_batch: bool = False,
    max_batch: int = 16,
    end2end: bool = False,
    workspace_gb: float = 4.0,
    class_names: list[str] | None = None,
    max_detections: int = 100,
) -> Path:
    """Build ``<out_dir>/<model>_<size>_<fp32|fp16|int8>[_e2e].engine`` for this GPU."""
    check_image_size(image_size)
    if half and int8:
        raise UserInputError("choose one of half (FP16) or int8 (INT8) for TensorRT, not both")
    if int8 and data is None:
        raise UserInputError("TensorRT INT8 needs calibration images: pass data=<dataset.yaml>")
    trt = require_tensorrt()
    precision = "int8" if int8 else "fp16" if half else "fp32"
    stem = output_stem(model, image_size, end2end=end2end, precision=precision)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="damo-trt-") as tmp:
        onnx_path = onnx_export.export(
            model, tmp, image_size=image_size, half=half, dynamic_batch=dynamic_batch,
            end2end=end2end, device="cuda" if half else "cpu", class_names=class_names,
            max_detections=max_detections)
        meta = onnx_export.read_metadata(onnx_path)
        if int8:
            assert data is not None
            images = calibration_images(data, image_size, fit=model_fit(model), count=calib_count,
                                        split=calib_split)
            onnx_path = quantize_onnx(onnx_path, images, Path(tmp) / f"{stem}_qdq.onnx")
        engine = build_engine(trt, onnx_path, image_size=image_size,
                              max_batch=max_batch if dynamic_batch else None,
                              workspace_gb=workspace_gb)
    path = atomic_write_bytes(out_dir / f"{stem}.engine", engine)
    meta.update(precision=precision, producer="damo_core.export.tensorrt",
                tensorrt=str(trt.__version__), gpu=torch.cuda.get_device_name())
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2))
    return path


def quantize_onnx(onnx_path: Path, images: list[np.ndarray], out_path: Path) -> Path:
    """Explicit INT8: insert calibrated Q/DQ pairs with NNCF's ONNX backend.

    Runs on CPU (statistics come from ONNX Runtime), so it can be checked without a GPU.
    """
    onnx = require("onnx", "onnx", "INT8 quantisation")
    nncf = require("nncf", "nncf", "INT8 quantisation")
    dataset = nncf.Dataset(images, lambda image: {INPUT_NAME: image})
    quantized = nncf.quantize(
        onnx.load(str(onnx_path)), dataset, subset_size=len(images),
        preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(types=ONNX_DECODE_OP_TYPES, validate=False),
    )
    onnx.save(quantized, str(out_path))
    return out_path


def build_engine(trt: Any, onnx_path: Path, *, image_size: int, max_batch: int | None,
                 workspace_gb: float) -> bytes:
    """Parse the ONNX into a strongly typed network and serialise an engine for this GPU."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if max_batch is not None:
        chw = (3, image_size, image_size)
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT_NAME, (1, *chw), (max(1, max_batch // 2), *chw),
                          (max_batch, *chw))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path.name}; "
                           "see the TensorRT log above")
    return bytes(serialized)


class TensorRTRunner:
    """Run an engine on the GPU: ``runner(images) -> list of CUDA tensors``.

    Inputs already on the GPU are used in place, so a benchmark that passes a CUDA tensor
    times the engine, not the PCIe copy (what ``trtexec`` GPU latency reports). Outputs are
    allocated once per input shape and reused, so the returned tensors are overwritten by
    the next call.
    """

    def __init__(self, path: str | Path) -> None:
        self.trt = trt = require_tensorrt()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{path}: TensorRT could not load this engine (built for another "
                               "GPU or TensorRT version?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names
                               if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_names = [n for n in names if n != self.input_name]
        self.stream = torch.cuda.Stream()
        self._shape: tuple[int, ...] | None = None
        self._outputs: list[torch.Tensor] = []

    def _allocate(self, shape: tuple[int, ...]) -> None:
        self.context.set_input_shape(self.input_name, shape)
        self._outputs = []
        for name in self.output_names:
            dtype = torch.from_numpy(np.empty(0, self.trt.nptype(
                self.engine.get_tensor_dtype(name)))).dtype
            out = torch.empty(tuple(self.context.get_tensor_shape(name)), dtype=dtype,
                              device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            self._outputs.append(out)
        self._shape = shape

    def __call__(self, images: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        # Whatever produced a CUDA input ran on the current stream; ours must wait for it.
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            x = torch.as_tensor(images).to("cuda", torch.float32, non_blocking=True)
            x = x.contiguous()
            if tuple(x.shape) != self._shape:
                self._allocate(tuple(x.shape))
            self.context.set_tensor_address(self.input_name, x.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed; see the TensorRT log")
        self.stream.synchronize()
        return self._outputs


def load_runner(path: str | Path) -> TensorRTRunner:
    return TensorRTRunner(path)
