"""What the repository writer needs to know about an exported model, read from its directory.

The export step writes one model file per directory (``<model>_<size>_<precision>.onnx``, an
OpenVINO ``.xml``/``.bin`` pair or a TensorRT ``.engine``) and embeds its description (model
name, image size, input fit, class names, strides, dynamic batch) in the file itself (a
TensorRT engine in the ``.json`` beside it). The pipeline also
hands over the same facts as artifact metadata; when both exist, the metadata given by the
caller wins, and a file whose embedded metadata cannot be read (a corrupt or foreign file)
is still accepted when the caller's metadata is complete: loading it is then the server's
test, and a failed load is what deploy's rollback is for.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damo_core.data.fit import LEGACY_FIT, FitMode, check_fit
from damo_core.errors import InputNotFoundError, UserInputError

# suffix of the exported file -> format name used by damo_core.export
FORMAT_BY_SUFFIX = {".onnx": "onnx", ".xml": "openvino", ".engine": "tensorrt",
                    ".plan": "tensorrt"}
DEFAULT_STRIDES = (8, 16, 32)  # every DAMO-YOLO head predicts at these strides
REQUIRED_KEYS = ("model_name", "image_size", "class_names")


@dataclass(frozen=True)
class ExportedModel:
    """One exported detector with raw ``scores [B,N,C]`` / ``boxes [B,N,4]`` outputs."""

    path: Path
    fmt: str
    model_name: str
    image_size: int
    class_names: tuple[str, ...]
    strides: tuple[int, ...] = DEFAULT_STRIDES
    dynamic_batch: bool = False
    fit: FitMode = LEGACY_FIT  # how inputs are fitted (as in training); older exports: legacy
    precision: str = "fp32"  # as exported: fp32, fp16, bf16 (FP32 IR run in BF16) or int8

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_anchors(self) -> int:
        return sum((self.image_size // s) ** 2 for s in self.strides)

    @property
    def files(self) -> list[Path]:
        """Every file that makes up the model (OpenVINO keeps its weights in a ``.bin``)."""
        if self.fmt == "openvino":
            return [self.path, self.path.with_suffix(".bin")]
        return [self.path]

    @classmethod
    def from_dir(cls, exported_dir: str | Path,
                 metadata: Mapping[str, Any] | None = None) -> ExportedModel:
        path = find_model_file(exported_dir, (metadata or {}).get("file"))
        fmt = FORMAT_BY_SUFFIX[path.suffix]
        given = dict(metadata or {})
        try:
            embedded = read_embedded_metadata(path, fmt)
        except Exception as err:  # noqa: BLE001 - any unreadable file is handled alike
            if any(key not in given for key in REQUIRED_KEYS):
                raise UserInputError(f"{path}: cannot read the model's embedded metadata "
                                     f"({err}) and no metadata with {list(REQUIRED_KEYS)} was "
                                     "given") from None
            embedded = {}
        meta = {**embedded, **given}
        missing = [key for key in REQUIRED_KEYS if key not in meta]
        if missing:
            raise UserInputError(f"{path}: metadata lacks {missing}; pass them (the export step's "
                                 "artifact metadata has them)")
        if str(meta.get("end2end", "False")) == "True":
            raise UserInputError(f"{path}: an end2end export (NMS inside the graph); the Triton "
                                 "ensemble runs NMS itself and needs the raw scores/boxes export")
        return cls(path=path, fmt=fmt, model_name=str(meta["model_name"]),
                   image_size=int(float(meta["image_size"])),
                   class_names=tuple(_as_list(meta["class_names"], "class_names", path)),
                   strides=tuple(int(s) for s in _as_list(meta.get("strides", DEFAULT_STRIDES),
                                                          "strides", path)),
                   dynamic_batch=str(meta.get("dynamic_batch", "False")) == "True",
                   fit=_fit(meta, path), precision=str(meta.get("precision", "fp32")))


def find_model_file(exported_dir: str | Path, name: str | None = None) -> Path:
    """The one model file in ``exported_dir`` (or the one called ``name``)."""
    root = Path(exported_dir)
    if not root.is_dir():
        raise InputNotFoundError(f"exported model directory {root} does not exist")
    if name:
        path = root / name
        if not path.is_file():
            raise InputNotFoundError(f"{path}: the exported model file named in the metadata "
                                     "does not exist")
        candidates = [path]
    else:
        candidates = sorted(p for p in root.iterdir() if p.suffix in FORMAT_BY_SUFFIX)
    if len(candidates) != 1 or candidates[0].suffix not in FORMAT_BY_SUFFIX:
        raise UserInputError(f"{root}: expected exactly one exported model file "
                             f"({', '.join(FORMAT_BY_SUFFIX)}), found "
                             f"{[p.name for p in candidates]}")
    return candidates[0]


def read_embedded_metadata(path: Path, fmt: str) -> dict[str, str]:
    """The description the exporter embedded (ONNX ``metadata_props``, OpenVINO rt_info, the
    JSON beside a TensorRT engine)."""
    if fmt == "onnx":
        from damo_core.export.onnx import read_metadata

        return read_metadata(path)
    if fmt == "openvino":
        from damo_core.export.openvino import read_metadata as read_ov

        return read_ov(path)
    sidecar = path.with_suffix(".json")  # engines have no metadata slot; the exporter's JSON
    return json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}


def _fit(meta: Mapping[str, Any], path: Path) -> FitMode:
    """The export's input fit; exports made before it was recorded letterboxed."""
    try:
        return check_fit(meta.get("fit", LEGACY_FIT))
    except UserInputError as err:
        raise UserInputError(f"{path}: metadata field 'fit': {err}") from None


def _as_list(value: Any, field: str, path: Path) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserInputError(f"{path}: metadata field {field!r} is not a JSON list: "
                                 f"{value!r}") from None
    if not isinstance(value, list | tuple) or not value:
        raise UserInputError(f"{path}: metadata field {field!r} must be a non-empty list, "
                             f"got {value!r}")
    return list(value)
