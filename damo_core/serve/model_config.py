"""``config.pbtxt`` for the four models of a deployment: preprocess → detector → postprocess,
tied together by an ensemble that takes an encoded image and returns boxes.

Configs are built as ``ModelConfig`` protobuf messages (Triton's own schema, shipped in
``tritonclient``) and printed in protobuf text format, so a misspelt field or a wrong enum
fails here, at write time, instead of when the server in the cluster tries to load it.

Tensor contract (``B`` = batch, ``S`` = image side, ``N`` = anchors, ``C`` = classes,
``K`` = max detections):

* ensemble / preprocess in: ``IMAGE`` UINT8 ``[B, L]``, the encoded file's bytes. Triton
  batches only equal shapes, so a client sending several images pads them with zeros to the
  longest (PNG, JPEG, BMP and WebP decoders stop at their end marker and ignore the tail).
* preprocess out / detector in: ``images`` FP32 ``[B, 3, S, S]`` RGB 0..255 fitted to the
  input by the export's ``fit`` (letterbox or stretch, :mod:`damo_core.data.fit`; a parameter
  of the preprocess model), and ``placement`` FP32 ``[B, 6]`` = original height, width,
  resized content height, width, pad left, pad top: integers, exact in FP32, from which the
  postprocess derives the per-axis scales exactly as ``damo predict`` does
  (:class:`~damo_core.data.fit.Placement`).
* detector out: ``scores`` FP32 ``[B, N, C]``, ``boxes`` FP32 ``[B, N, 4]`` (the export's raw
  outputs, canvas pixels).
* postprocess / ensemble out: ``num_dets`` INT32 ``[B, 1]``, ``det_boxes`` FP32 ``[B, K, 4]``
  (original-image pixels), ``det_scores`` FP32 ``[B, K]``, ``det_classes`` INT32 ``[B, K]``,
  padded with zeros / -1 past ``num_dets`` (the end2end export's output names).

Two score thresholds are involved. The postprocess model prunes with ``score_threshold`` (a
low one, see :class:`ServingOptions`) and returns what is left; the client then keeps the
boxes strictly above its own threshold. The postprocess config's ``default_score_threshold``
parameter, present when the export recorded one (the best-F1 confidence training measured,
``damo predict``'s default), is that client threshold's default
(:attr:`damo_core.serve.client.TritonDetector.default_score_threshold`); the server itself
does not apply it, so clients of one deployment can still choose any threshold above the
pruning one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from damo_core.data.fit import PLACEMENT_WIDTH
from damo_core.errors import UserInputError
from damo_core.export.common import DEFAULT_THRESHOLD_KEY, require, score_threshold_or_none
from damo_core.export.wrapper import END2END_OUTPUTS
from damo_core.serve.exported import ExportedModel

IMAGE_INPUT = "IMAGE"
PLACEMENT = "placement"
DETECTOR_INPUT = "images"
RAW_SCORES, RAW_BOXES = "scores", "boxes"
NUM_DETS, DET_BOXES, DET_SCORES, DET_CLASSES = END2END_OUTPUTS

# detector format -> (config key, value, file name Triton's native backend looks for)
NATIVE_PLATFORMS: dict[str, tuple[str, str, str]] = {
    "onnx": ("platform", "onnxruntime_onnx", "model.onnx"),
    "openvino": ("backend", "openvino", "model.xml"),
    "tensorrt": ("platform", "tensorrt_plan", "model.plan"),
}
VARIANTS = ("native", "python")


@dataclass(frozen=True)
class ServingOptions:
    """Scheduling and post-processing settings of a deployment.

    ``score_threshold``/``iou_threshold`` default (``None``) to the thresholds the model is
    evaluated with (:func:`damo_core.eval.postprocess.nms_defaults`: score 0.05, 0.03 for the
    nano models): the server returns every plausible box and each client filters by its own
    confidence (by default the deployment's ``default_score_threshold``, else 0.3), so one
    deployment serves both display and evaluation. A client threshold below the server's
    ``score_threshold`` cannot bring back what the server pruned.
    """

    max_batch_size: int = 8
    preferred_batch_sizes: tuple[int, ...] = (4, 8)
    queue_delay_us: int = 2000
    instances: int = 1
    gpu: bool = False
    threads: int = 0  # intra-op threads of the Python-variant detector; 0 = runtime default
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int = 100

    def __post_init__(self) -> None:
        for field in ("max_batch_size", "instances", "max_detections"):
            if getattr(self, field) <= 0:
                raise UserInputError(f"serving option {field} must be positive, "
                                     f"got {getattr(self, field)}")
        if self.queue_delay_us < 0 or self.threads < 0:
            raise UserInputError("serving options queue_delay_us and threads must be >= 0")
        bad = [b for b in self.preferred_batch_sizes if not 0 < b <= self.max_batch_size]
        if bad:
            raise UserInputError(f"preferred_batch_sizes {list(bad)} must lie in "
                                 f"[1, max_batch_size={self.max_batch_size}]")


@dataclass(frozen=True)
class ModelNames:
    """The four model names of one deployment; the ensemble carries the model's own name, so
    clients call ``damoyolo_s`` and never see the parts."""

    ensemble: str

    @property
    def preprocess(self) -> str:
        return f"{self.ensemble}_preprocess"

    @property
    def detector(self) -> str:
        return f"{self.ensemble}_detector"

    @property
    def postprocess(self) -> str:
        return f"{self.ensemble}_postprocess"

    @property
    def all(self) -> tuple[str, str, str, str]:
        """Load order: parts first, the ensemble (which needs them) last."""
        return self.detector, self.preprocess, self.postprocess, self.ensemble


def _tensor(name: str, dtype: str, dims: Sequence[int]) -> dict[str, Any]:
    return {"name": name, "data_type": f"TYPE_{dtype}", "dims": list(dims)}


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: {"string_value": str(value)} for key, value in values.items()}


def _instances(count: int, gpu: bool) -> list[dict[str, Any]]:
    return [{"kind": "KIND_GPU" if gpu else "KIND_CPU", "count": count}]


def _detection_outputs(k: int) -> list[dict[str, Any]]:
    return [_tensor(NUM_DETS, "INT32", [1]), _tensor(DET_BOXES, "FP32", [k, 4]),
            _tensor(DET_SCORES, "FP32", [k]), _tensor(DET_CLASSES, "INT32", [k])]


def batch_capacity(model: ExportedModel, options: ServingOptions, variant: str) -> int:
    """A static-batch export (batch 1) served natively can only take batches of one; the
    Python variant runs such a model once per image, so it keeps the configured size."""
    if variant == "native" and not model.dynamic_batch:
        return 1
    return options.max_batch_size


def _batching(options: ServingOptions, max_batch: int) -> dict[str, Any]:
    preferred = [b for b in options.preferred_batch_sizes if b <= max_batch]
    return {"preferred_batch_size": preferred if max_batch > 1 else [],
            "max_queue_delay_microseconds": options.queue_delay_us}


def detector_config(model: ExportedModel, names: ModelNames, options: ServingOptions,
                    variant: str, python_params: Mapping[str, Any]) -> dict[str, Any]:
    max_batch = batch_capacity(model, options, variant)
    size, n, c = model.image_size, model.num_anchors, model.num_classes
    config: dict[str, Any] = {
        "name": names.detector, "max_batch_size": max_batch,
        "input": [_tensor(DETECTOR_INPUT, "FP32", [3, size, size])],
        "output": [_tensor(RAW_SCORES, "FP32", [n, c]), _tensor(RAW_BOXES, "FP32", [n, 4])],
        "dynamic_batching": _batching(options, max_batch),
        "version_policy": {"latest": {"num_versions": 1}},
    }
    if variant == "native":
        key, value, filename = NATIVE_PLATFORMS[model.fmt]
        config.update({key: value, "default_model_filename": filename,
                       "instance_group": _instances(options.instances,
                                                    options.gpu or model.fmt == "tensorrt")})
        if model.fmt == "openvino" and model.precision == "bf16":
            # Triton's OpenVINO backend reads this key; the Python variant needs nothing, its
            # runner takes the precision recorded in the IR itself
            config["parameters"] = _params({"HINT_BF16": "YES"})
    else:
        if model.fmt == "tensorrt":
            raise UserInputError(f"{model.path}: a TensorRT engine needs the native variant (the "
                                 "Python variant runs ONNX Runtime or OpenVINO on the CPU)")
        config.update({"backend": "python", "instance_group": _instances(options.instances, False),
                       "parameters": _params({**python_params, "role": "detector",
                                              "model_file": NATIVE_PLATFORMS[model.fmt][2],
                                              "threads": options.threads,
                                              "static_batch": int(not model.dynamic_batch)})})
    return config


def preprocess_config(model: ExportedModel, names: ModelNames, max_batch: int,
                      python_params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": names.preprocess, "backend": "python", "max_batch_size": max_batch,
        "input": [_tensor(IMAGE_INPUT, "UINT8", [-1])],
        "output": [_tensor(DETECTOR_INPUT, "FP32", [3, model.image_size, model.image_size]),
                   _tensor(PLACEMENT, "FP32", [PLACEMENT_WIDTH])],
        "instance_group": _instances(1, False),
        "parameters": _params({**python_params, "role": "preprocess",
                               "image_size": model.image_size, "fit": model.fit}),
    }


def postprocess_config(model: ExportedModel, names: ModelNames, options: ServingOptions,
                       max_batch: int, python_params: Mapping[str, Any], *,
                       default_score_threshold: float | None = None) -> dict[str, Any]:
    """The postprocess model's config. ``default_score_threshold`` (the export's recorded
    default, see the module docstring) becomes a parameter for clients to read; ``None``
    leaves it out, and clients fall back to 0.3 as ``damo predict`` does."""
    from damo_core.eval.postprocess import nms_defaults

    default_score, default_iou = nms_defaults(model.model_name)
    n, c = model.num_anchors, model.num_classes
    client_default: dict[str, float] = {}
    if default_score_threshold is not None:
        if score_threshold_or_none(default_score_threshold) is None:
            raise UserInputError(f"default_score_threshold must be a score threshold in "
                                 f"[0, 1], got {default_score_threshold}")
        client_default[DEFAULT_THRESHOLD_KEY] = float(default_score_threshold)
    return {
        "name": names.postprocess, "backend": "python", "max_batch_size": max_batch,
        "input": [_tensor(RAW_SCORES, "FP32", [n, c]), _tensor(RAW_BOXES, "FP32", [n, 4]),
                  _tensor(PLACEMENT, "FP32", [PLACEMENT_WIDTH])],
        "output": _detection_outputs(options.max_detections),
        "instance_group": _instances(1, False),
        "parameters": _params({
            **python_params, "role": "postprocess",
            "score_threshold": default_score if options.score_threshold is None
            else options.score_threshold,
            "iou_threshold": default_iou if options.iou_threshold is None
            else options.iou_threshold,
            "max_detections": options.max_detections,
            "class_names": ",".join(model.class_names), **client_default}),
    }


def ensemble_config(names: ModelNames, options: ServingOptions,
                    max_batch: int) -> dict[str, Any]:
    def step(model: str, inputs: Sequence[str], outputs: Sequence[str]) -> dict[str, Any]:
        return {"model_name": model, "model_version": -1,
                "input_map": {t: t for t in inputs}, "output_map": {t: t for t in outputs}}

    return {
        "name": names.ensemble, "platform": "ensemble", "max_batch_size": max_batch,
        "input": [_tensor(IMAGE_INPUT, "UINT8", [-1])],
        "output": _detection_outputs(options.max_detections),
        "ensemble_scheduling": {"step": [
            step(names.preprocess, [IMAGE_INPUT], [DETECTOR_INPUT, PLACEMENT]),
            step(names.detector, [DETECTOR_INPUT], [RAW_SCORES, RAW_BOXES]),
            step(names.postprocess, [RAW_SCORES, RAW_BOXES, PLACEMENT],
                 [NUM_DETS, DET_BOXES, DET_SCORES, DET_CLASSES]),
        ]},
    }


def to_pbtxt(config: Mapping[str, Any]) -> str:
    """Validate ``config`` against Triton's ``ModelConfig`` schema and print it as pbtxt."""
    pb = parse_config_dict(config)
    text_format = require("google.protobuf.text_format", "protobuf", "writing config.pbtxt")
    return text_format.MessageToString(pb)


def parse_config_dict(config: Mapping[str, Any]) -> Any:
    json_format = require("google.protobuf.json_format", "protobuf", "writing config.pbtxt")
    schema = require("tritonclient.grpc.model_config_pb2", "tritonclient[grpc]",
                     "writing Triton model configs")
    try:
        return json_format.ParseDict(dict(config), schema.ModelConfig())
    except json_format.ParseError as err:
        raise UserInputError(f"model config {config.get('name')!r} does not fit Triton's "
                             f"ModelConfig schema: {err}") from None


def parse_pbtxt(text: str) -> Any:
    """A ``config.pbtxt`` back as a ``ModelConfig`` message (tests, deploy's snapshot)."""
    text_format = require("google.protobuf.text_format", "protobuf", "reading config.pbtxt")
    schema = require("tritonclient.grpc.model_config_pb2", "tritonclient[grpc]",
                     "reading Triton model configs")
    return text_format.Parse(text, schema.ModelConfig())
