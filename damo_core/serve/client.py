"""gRPC client of a deployed detector: image files in, :class:`Detections` out.

The client sends each file's encoded bytes to the ensemble (letterbox, detector and NMS run
on the server with the project's own code) and returns the same :class:`Detections` objects
``damo predict`` returns, in original-image pixels, filtered by the same score rule
(strictly above ``score_threshold``). Several images go in one request (up to the model's
``max_batch_size``); the server's dynamic batcher merges concurrent requests further.

The threshold has ``damo predict``'s default too: the deployment's
``default_score_threshold`` (the best-F1 confidence the checkpoint's training measured,
carried by the export into the postprocess model's config), else 0.3. The server prunes
first with its own threshold (low by default, see
:class:`~damo_core.serve.model_config.ServingOptions`), and this client keeps what is strictly
above the chosen one; a chosen threshold below the server's cannot bring back what it pruned.

Errors a user can fix are raised as such, each naming what is wrong: a file that is not an
image (:class:`NotAnImageError`), a model the server does not have (:class:`UnknownModelError`,
listing the ones it has) and no server at the URL (:class:`ServerUnavailableError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from damo_core.errors import UserInputError
from damo_core.eval.curves import DEFAULT_CONFIDENCE
from damo_core.eval.postprocess import Detections
from damo_core.export.common import DEFAULT_THRESHOLD_KEY, require, score_threshold_or_none
from damo_core.serve import admin
from damo_core.serve import model_config as mc
from damo_core.serve.codec import pad_batch, read_image_bytes
from damo_core.serve.errors import (
    RequestRejectedError,
    ServerUnavailableError,
    UnknownModelError,
)

OUTPUTS = (mc.NUM_DETS, mc.DET_BOXES, mc.DET_SCORES, mc.DET_CLASSES)


def grpc_module() -> Any:
    return require("tritonclient.grpc", "tritonclient[grpc]", "the Triton gRPC client")


class TritonDetector:
    """A connection to one deployed model; checks server and model on construction.

    ``class_names`` and ``default_score_threshold`` come from the postprocess model's config
    (written by :mod:`damo_core.serve.repository`); both are ``None`` for a deployment that
    lacks them (a foreign one, or an export of a checkpoint without a measured threshold), and
    a threshold that is not a number in [0, 1] (NaN included) counts as lacking.
    """

    def __init__(self, url: str, model: str, *, timeout: float = 30.0) -> None:
        grpc = grpc_module()
        self.url, self.model, self.timeout = url, model, timeout
        self.client = grpc.InferenceServerClient(url)
        self._infer_input, self._requested = grpc.InferInput, grpc.InferRequestedOutput
        try:
            self.client.is_server_live(client_timeout=min(timeout, 10.0))
            ready = self.client.is_model_ready(model, client_timeout=timeout)
        except Exception as err:  # tritonclient wraps every gRPC failure in one type
            raise ServerUnavailableError(
                f"no Triton server answers at {url} ({_first_line(err)}); is it running? "
                "start one with: damo serve local --repo DIR") from None
        if not ready:
            raise UnknownModelError(f"model {model!r} is not ready on the Triton server at "
                                    f"{url}; {self._models_there()}")
        config = self.client.get_model_config(model, as_json=True,
                                              client_timeout=timeout)["config"]
        self.max_batch_size = int(config.get("max_batch_size", 0)) or 1
        params = self._postprocess_parameters()
        names = _parameter(params, "class_names")
        self.class_names = names.split(",") if names else None
        self.default_score_threshold: float | None = score_threshold_or_none(
            _parameter(params, DEFAULT_THRESHOLD_KEY))

    def server_models(self) -> list[str]:
        """``name (STATE)`` for every model in the server's repository (the repository index
        is an admin API: this needs the server's key, see :mod:`damo_core.serve.admin`)."""
        index = self.client.get_model_repository_index(
            as_json=True, headers=admin.grpc_headers(admin.key_for(self.url)),
            client_timeout=self.timeout)
        return [f"{m['name']} ({m.get('state', 'UNAVAILABLE')})" for m in index.get("models", [])]

    def _models_there(self) -> str:
        """The model list for an error message, or how to get it when the key is missing
        (inference clients need no key, so its absence must not hide the real error)."""
        try:
            return f"models there: {self.server_models()}"
        except Exception as err:
            if not admin.is_refusal(err):
                raise
            return f"set {admin.ADMIN_KEY_ENV} to list the models there"

    def _postprocess_parameters(self) -> dict[str, Any]:
        """The postprocess model's config parameters (written by the repository writer), or
        none for a deployment without our postprocess model (a foreign one)."""
        try:
            post = self.client.get_model_config(mc.ModelNames(self.model).postprocess,
                                                as_json=True, client_timeout=self.timeout)
        except Exception:  # noqa: BLE001 - a foreign deployment: labels stay numbers
            return {}
        params = post.get("config", {}).get("parameters", {})
        return params if isinstance(params, dict) else {}

    def detect_encoded(self, encoded: Sequence[bytes]) -> list[Detections]:
        """One request with ``len(encoded)`` images (at most ``max_batch_size``)."""
        if len(encoded) > self.max_batch_size:
            raise UserInputError(f"{len(encoded)} images in one request; model {self.model!r} "
                                 f"takes at most {self.max_batch_size}")
        batch = pad_batch(encoded)
        tensor = self._infer_input(mc.IMAGE_INPUT, list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)
        try:
            result = self.client.infer(self.model, [tensor],
                                       outputs=[self._requested(n) for n in OUTPUTS],
                                       client_timeout=self.timeout)
        except Exception as err:  # tritonclient wraps every gRPC failure in one type
            raise RequestRejectedError(f"model {self.model!r} at {self.url} failed a request "
                                       f"of {len(encoded)} image(s): {_first_line(err)}") from None
        return unpack(*(result.as_numpy(n) for n in OUTPUTS))

    def detect(self, images: Sequence[str | Path], *, score_threshold: float | None = None,
               batch_size: int | None = None) -> list[Detections]:
        """Detections per image file, kept strictly above ``score_threshold``; by default
        ``damo predict``'s: the deployment's :attr:`default_score_threshold`, else 0.3."""
        if score_threshold is None:
            score_threshold = (DEFAULT_CONFIDENCE if self.default_score_threshold is None
                               else self.default_score_threshold)
        size = min(batch_size or self.max_batch_size, self.max_batch_size)
        if size <= 0:
            raise UserInputError(f"batch_size must be positive, got {batch_size}")
        encoded = [read_image_bytes(p) for p in images]  # every file checked before sending
        results: list[Detections] = []
        for start in range(0, len(encoded), size):
            results += self.detect_encoded(encoded[start : start + size])
        return [keep_above(d, score_threshold) for d in results]

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> TritonDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unpack(num: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
           classes: np.ndarray) -> list[Detections]:
    """Padded ensemble outputs → one :class:`Detections` per image."""
    out = []
    for n, b, s, c in zip(num[:, 0], boxes, scores, classes, strict=True):
        k = int(n)
        out.append(Detections(torch.from_numpy(b[:k].copy()), torch.from_numpy(s[:k].copy()),
                              torch.from_numpy(c[:k].astype(np.int64))))
    return out


def _parameter(params: dict[str, Any], key: str) -> str | None:
    """One config parameter's text, or ``None`` when it is missing or not shaped like one."""
    value = params.get(key)
    text = value.get("string_value") if isinstance(value, dict) else None
    return text if isinstance(text, str) else None


def keep_above(det: Detections, score_threshold: float) -> Detections:
    keep = det.scores > score_threshold
    return Detections(det.boxes[keep], det.scores[keep], det.labels[keep])


def detections_json(path: str | Path, det: Detections,
                    class_names: Sequence[str] | None) -> dict[str, Any]:
    """One image's detections as JSON-ready data (boxes xyxy in original pixels)."""
    rows = []
    for box, score, label in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(),
                                 strict=True):
        name = class_names[label] if class_names and 0 <= label < len(class_names) else str(label)
        rows.append({"box": [round(v, 2) for v in box], "score": round(score, 4),
                     "label": int(label), "class_name": name})
    return {"image": str(path), "detections": rows}


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
