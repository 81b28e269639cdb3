"""The three Python-backend models of a deployment: preprocess, detector, postprocess.

Triton loads a ``model.py`` from each model's version directory; ours (:data:`MODEL_PY`) is
a ten-line shim that puts the project's environment on ``sys.path`` (the backend stub does
not inherit ``PYTHONPATH``) and hands over to :func:`build` here. Keeping the logic in the
package means it is the same, tested code everywhere, and pre/postprocessing is the project's
own input fit and NMS (:func:`damo_core.eval.preprocess.prepare_image`, i.e.
:func:`damo_core.data.fit.fit_image` in the export's ``fit`` mode, and
:mod:`damo_core.eval.postprocess`), so served detections are ``damo predict``'s detections.

``triton_python_backend_utils`` exists only inside the backend stub; it is imported in
:func:`build`, so this module imports (and its helpers test) anywhere.

Tensors cross the stub boundary by DLPack, never by ``Tensor.as_numpy()`` / ``Tensor(name,
array)``: the wheel's stub was built against NumPy 1 and, under NumPy 2, reads every array's
item size as 0 (inputs arrive as the first byte repeated, outputs arrive empty). DLPack does
not go through NumPy's C structures, so it is right under both.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from damo_core.data.fit import LEGACY_FIT, PLACEMENT_WIDTH, FitMode, Placement, check_fit
from damo_core.errors import UserInputError
from damo_core.eval.postprocess import postprocess
from damo_core.eval.preprocess import prepare_image
from damo_core.serve import model_config as mc
from damo_core.serve.codec import decode_image

MODEL_PY = '''\
"""Triton Python-backend entry point written by damo_core.serve; the model's logic is in
damo_core.serve.python_models, its settings in this model's config.pbtxt parameters."""
import json
import site


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        for path in json.loads(params.get("sys_path", "[]")):
            site.addsitedir(path)
        from damo_core.serve.python_models import build

        self.model = build(args, config, params)

    def execute(self, requests):
        return self.model.execute(requests)
'''


class _Model:
    """Per request: read inputs, compute, answer; a failure answers that request only."""

    inputs: tuple[str, ...] = ()

    def __init__(self, pb: ModuleType, params: Mapping[str, str]) -> None:
        self.pb = pb
        self.params = params

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                arrays = [torch.from_dlpack(
                    self.pb.get_input_tensor_by_name(request, name).to_dlpack()).numpy()
                    for name in self.inputs]
                outputs = self.compute(*arrays)
                responses.append(self.pb.InferenceResponse([
                    self.pb.Tensor.from_dlpack(name, torch.from_numpy(np.ascontiguousarray(v)))
                    for name, v in outputs.items()]))
            except Exception as err:  # noqa: BLE001 - reported to the client, server lives on
                responses.append(self.pb.InferenceResponse(
                    error=self.pb.TritonError(f"{type(err).__name__}: {err}")))
        return responses

    def compute(self, *arrays: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


class Preprocess(_Model):
    inputs = (mc.IMAGE_INPUT,)

    def compute(self, *arrays: np.ndarray) -> dict[str, np.ndarray]:
        return preprocess_batch(arrays[0], int(self.params["image_size"]),
                                check_fit(self.params.get("fit", LEGACY_FIT)))


class Detector(_Model):
    inputs = (mc.DETECTOR_INPUT,)

    def __init__(self, pb: ModuleType, params: Mapping[str, str], version_dir: Path) -> None:
        super().__init__(pb, params)
        self.run = load_detector(version_dir / params["model_file"],
                                 threads=int(params.get("threads", 0)) or None)
        self.static_batch = params.get("static_batch") == "1"

    def compute(self, *arrays: np.ndarray) -> dict[str, np.ndarray]:
        return run_detector(self.run, arrays[0], static_batch=self.static_batch)


class Postprocess(_Model):
    """Prunes and runs NMS with the config's ``score_threshold``/``iou_threshold`` (the low
    evaluation thresholds unless the deployment set others); the ``default_score_threshold``
    parameter beside them is the clients' default and is not applied here, so each client
    can still choose its own threshold above the pruning one."""

    inputs = (mc.RAW_SCORES, mc.RAW_BOXES, mc.PLACEMENT)

    def compute(self, *arrays: np.ndarray) -> dict[str, np.ndarray]:
        return postprocess_batch(*arrays, score_threshold=float(self.params["score_threshold"]),
                                 iou_threshold=float(self.params["iou_threshold"]),
                                 max_detections=int(self.params["max_detections"]))


def build(args: Mapping[str, str], config: Mapping[str, Any],
          params: Mapping[str, str]) -> _Model:
    """The model for ``params["role"]``; called by :data:`MODEL_PY` inside the backend stub."""
    pb = importlib.import_module("triton_python_backend_utils")
    # Each model runs in its own stub process. Torch only decodes, fits and runs NMS here, and
    # a pool of several threads would spin on the cores the detector's runtime needs next.
    torch.set_num_threads(1)
    role = params.get("role")
    if role == "preprocess":
        return Preprocess(pb, params)
    if role == "postprocess":
        return Postprocess(pb, params)
    if role == "detector":
        version_dir = Path(args["model_repository"]) / args["model_version"]
        return Detector(pb, params, version_dir)
    raise UserInputError(f"model {config.get('name')!r}: unknown role parameter {role!r}")


# ------------------------------------------------------------------ the work, testable alone


def preprocess_batch(encoded: np.ndarray, image_size: int,
                     fit: FitMode) -> dict[str, np.ndarray]:
    """``[B, L]`` padded encoded images → fitted ``images`` and their ``placement`` rows."""
    if encoded.ndim != 2:
        raise UserInputError(f"{mc.IMAGE_INPUT} must be [batch, bytes], got shape {encoded.shape}")
    prepared = [prepare_image(decode_image(row, f"image {i} of the batch"), image_size, fit)
                for i, row in enumerate(encoded)]
    images = np.stack([p.tensor.numpy() for p in prepared])
    rows = np.array([p.placement.to_row() for p in prepared], dtype=np.float32)
    return {mc.DETECTOR_INPUT: images, mc.PLACEMENT: rows.reshape(-1, PLACEMENT_WIDTH)}


def load_detector(path: Path, *, threads: int | None) -> Callable[[np.ndarray], list[np.ndarray]]:
    """The export's own runner: ONNX Runtime for ``.onnx``, OpenVINO for ``.xml``."""
    if path.suffix == ".onnx":
        from damo_core.export.onnx import load_runner

        return load_runner(path, threads=threads)
    if path.suffix == ".xml":
        from damo_core.export.openvino import load_runner as load_ov

        return load_ov(path, threads=threads)
    raise UserInputError(f"{path}: the Python backend runs .onnx or .xml models, not "
                         f"{path.suffix}")


def run_detector(run: Callable[[np.ndarray], list[np.ndarray]], images: np.ndarray, *,
                 static_batch: bool) -> dict[str, np.ndarray]:
    """Raw ``scores``/``boxes``; a static-batch (batch 1) export runs once per image."""
    if static_batch and len(images) > 1:
        parts = [run(images[i : i + 1]) for i in range(len(images))]
        scores, boxes = (np.concatenate(p) for p in zip(*parts, strict=True))
    else:
        scores, boxes = run(images)[:2]
    return {mc.RAW_SCORES: np.asarray(scores, np.float32), mc.RAW_BOXES: np.asarray(boxes,
                                                                                  np.float32)}


def postprocess_batch(scores: np.ndarray, boxes: np.ndarray, placement: np.ndarray, *,
                      score_threshold: float, iou_threshold: float,
                      max_detections: int) -> dict[str, np.ndarray]:
    """NMS (the evaluator's, with its top-1000 pre-NMS cap) and the map back to original
    pixels, padded to ``max_detections`` rows per image."""
    per_image = postprocess(torch.from_numpy(scores), torch.from_numpy(boxes),
                            score_threshold=score_threshold, iou_threshold=iou_threshold,
                            max_detections=max_detections)
    batch = len(per_image)
    out = {mc.NUM_DETS: np.zeros((batch, 1), np.int32),
           mc.DET_BOXES: np.zeros((batch, max_detections, 4), np.float32),
           mc.DET_SCORES: np.zeros((batch, max_detections), np.float32),
           mc.DET_CLASSES: np.full((batch, max_detections), -1, np.int32)}
    for i, (det, row) in enumerate(zip(per_image, placement, strict=True)):
        k = len(det)
        out[mc.NUM_DETS][i, 0] = k
        out[mc.DET_BOXES][i, :k] = Placement.from_row(row).to_original(det.boxes).numpy()
        out[mc.DET_SCORES][i, :k] = det.scores.numpy()
        out[mc.DET_CLASSES][i, :k] = det.labels.numpy()
    return out
