"""What ``damo predict`` and ``damo eval`` run: the fused PyTorch graph or an exported file, at a
chosen precision.

Why not the checkpoint's eager graph: it keeps RepConv's parallel branches and every
BatchNorm, several times the work of the deploy graph (``Detector.fuse`` folds them with the
same outputs to float rounding), and the numbers a user reads from ``damo eval`` should
describe what is deployed. An export (ONNX, OpenVINO IR, TensorRT engine) runs through
:class:`ExportedDetector`, which the detection loop (:func:`dense_outputs`) treats like a
model, so evaluation and prediction of an export share every line after inference with the
PyTorch path. ``bf16`` and ``int8`` from a checkpoint go through an OpenVINO export made on
the way (:func:`open_inference_model`); precisions are those of
:mod:`damo_core.bench.precision`.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from damo_core.data.fit import set_model_fit
from damo_core.environ import torch_threads
from damo_core.errors import UserInputError

INT8_CALIB_IMAGES = 300  # NNCF's default subset size


def dense_outputs(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Decoded ``scores [B, N, C]`` and ``boxes [B, N, 4]`` (xyxy, input pixels) of a batch:
    an exported graph already decodes; a PyTorch detector decodes its head's levels."""
    dense = getattr(model, "dense", None)
    if callable(dense):
        return dense(images)
    return model.head.decode(model(images))


def runtime_precision(export_precision: str, requested: str | None, path: Path) -> str:
    """The precision an export runs at: its own unless ``requested``; a float IR may run at
    ``bf16`` (OpenVINO's hint), but INT8 is baked into the file, so ``int8`` on a float export
    (or a float precision on an INT8 one) is refused, naming the way to make the other."""
    from damo_core.bench.precision import RUNS_AS, check_precision

    own = RUNS_AS.get(export_precision, "fp32")
    if requested is None:
        return own
    requested = check_precision(requested)
    if requested == "auto":
        raise UserInputError(f"{path}: precision 'auto' chooses among exports; an existing "
                             f"export runs at its own precision ({own}) or bf16")
    if (requested == "int8") != (own == "int8"):
        raise UserInputError(
            f"{path}: an {export_precision.upper()} export cannot run at {requested}; export "
            f"{'with --int8 --data DATA' if requested == 'int8' else 'without --int8'} for that")
    return requested


def export_precision(export: Any, requested: str | None = None) -> str:
    """The runtime precision of an :class:`~damo_core.serve.exported.ExportedModel`: the one
    it was exported in unless ``requested`` (see :func:`runtime_precision`)."""
    return runtime_precision(export.precision, requested, export.path)


class ExportedDetector(nn.Module):
    """An exported detector behind the interface the detection loop uses (``dense``,
    ``config.name``/``image_size``, ``num_classes``, the input fit); no parameters, CPU input.

    A static-batch export (the default) is fed one image at a time; a dynamic-batch one
    takes the whole batch in one call.
    """

    def __init__(self, exported: str | Path, *, precision: str | None = None,
                 threads: int | None = None) -> None:
        super().__init__()
        from damo_core.bench.latency import make_runner
        from damo_core.serve.exported import ExportedModel

        export = ExportedModel.from_dir(*_dir_and_name(Path(exported)))
        self.export = export
        self.precision = export_precision(export, precision)
        self.config = SimpleNamespace(name=export.model_name, image_size=export.image_size)
        self.num_classes = export.num_classes
        set_model_fit(self, export.fit)
        self._runner = make_runner(export.fmt, export.path, threads=threads,
                                   batch=None if export.dynamic_batch else 1,
                                   precision=self.precision)

    @property
    def name(self) -> str:
        return self.export.model_name

    def dense(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if self.export.fmt == "tensorrt":
            outs = [self._runner(images.cuda().float())]
            owned = False  # the engine's output buffers: copied before the next call
        else:
            arr = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
            chunks = [arr] if self.export.dynamic_batch else np.split(arr, len(arr))
            outs = [self._runner(chunk) for chunk in chunks]
            owned = True  # ONNX Runtime and OpenVINO hand out fresh arrays per call
        scores, boxes = (_joined([np.asarray(o[k]) for o in outs], owned) for k in (0, 1))
        return scores.to(images.device), boxes.to(images.device)

    def meta(self) -> dict[str, Any]:
        """What the CLI reads from a checkpoint's metadata, from the export's own."""
        meta: dict[str, Any] = {"model_name": self.export.model_name,
                                "image_size": self.export.image_size,
                                "class_names": list(self.export.class_names),
                                "fit": self.export.fit, "precision": self.precision}
        from damo_core.serve.repository import recorded_threshold

        threshold = recorded_threshold(self.export)
        if threshold is not None:
            meta["metrics"] = {"best_f1_threshold": threshold}
        return meta


def _joined(parts: list[np.ndarray], owned: bool) -> Tensor:
    """The chunks' outputs as one tensor. A single chunk of arrays the caller owns is wrapped,
    not copied: concatenating one image's outputs (a 1.1 MB score map at 416 px and 80
    classes) made OpenVINO Ns's call 6.6 ms slower (median, interleaved, 2-core EPYC)."""
    tensors = [torch.as_tensor(part) for part in parts]
    return tensors[0] if owned and len(tensors) == 1 else torch.cat(tensors)


def _dir_and_name(path: Path) -> tuple[Path, dict[str, str] | None]:
    """An export directory as is; a model file as its directory plus its name."""
    if path.is_file():
        return path.parent, {"file": path.name}
    return path, None


def is_export(path: str | Path) -> bool:
    """An exported model file, or a directory holding one (and no checkpoint)."""
    from damo_core.serve.exported import FORMAT_BY_SUFFIX

    path = Path(path)
    if path.is_file():
        return path.suffix in FORMAT_BY_SUFFIX
    return path.is_dir() and not (path / "best.pt").exists() and any(
        p.suffix in FORMAT_BY_SUFFIX for p in path.iterdir())


@contextlib.contextmanager
def open_inference_model(weights: str | Path, *, precision: str | None = None,
                         data: str | Path | None = None, threads: int | None = None
                         ) -> Iterator[tuple[nn.Module, dict[str, Any]]]:
    """``(model, metadata)`` to predict or evaluate with, for the life of the ``with``.

    ``weights``: an export (file or directory) or a checkpoint (``best.pt`` or its directory).
    A checkpoint at ``fp32`` (the default) is the fused PyTorch model; at ``bf16`` or ``int8``
    it is exported to OpenVINO in a temporary directory first (``int8`` calibrates on the
    train split of ``data``, which it then needs). ``auto`` is the export step's choice,
    made with measurements, not here.
    """
    from damo_core.bench.precision import check_precision, require_supported

    if precision is not None:
        precision = check_precision(precision)
        if precision == "auto":
            raise UserInputError("precision 'auto' is chosen by measuring every precision on the "
                                 "val split: `damo export --precision auto --data DATA`; here "
                                 "use fp32, bf16 or int8")
    if is_export(weights):
        model = ExportedDetector(weights, precision=precision, threads=threads)
        with _runtime_owns_cpu(model):
            yield model, model.meta()
        return
    from damo_core.steps._common import weights_file
    from damo_core.train.checkpoint_io import load_fused

    model, meta = load_fused(weights_file(weights))
    if precision in (None, "fp32"):
        yield model, {**meta, "precision": "fp32"}
        return
    require_supported(precision)
    if precision == "int8" and data is None:
        raise UserInputError("precision int8 from a checkpoint quantises on the way and needs "
                             "calibration images: pass --data (a dataset training accepts)")
    from damo_core.export.openvino import export as ov_export

    with tempfile.TemporaryDirectory(prefix="damo-infer-") as tmp:
        path = ov_export(model, tmp, image_size=int(meta["image_size"]),
                         int8=precision == "int8", data=data if precision == "int8" else None,
                         calib_count=INT8_CALIB_IMAGES, class_names=list(meta["class_names"]))
        exported = ExportedDetector(path, precision=precision, threads=threads)
        with _runtime_owns_cpu(exported):
            yield exported, {**meta, "precision": precision}


def _runtime_owns_cpu(model: ExportedDetector) -> contextlib.AbstractContextManager[None]:
    """One torch thread while a CPU runtime (OpenVINO, ONNX Runtime) runs the model: torch
    then only decodes, fits and runs NMS, and its idle pool threads spin on the cores the
    runtime's own pool needs next (``damo predict`` of one image with OpenVINO Ns on a 2-core
    Xeon: 21.2 and 23.0 ms with two torch threads, 20.3 and 20.5 with one; medians of 60
    calls, two passes)."""
    return contextlib.nullcontext() if model.export.fmt == "tensorrt" else torch_threads(1)
