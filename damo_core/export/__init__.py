"""Deploy exports of the fused detector: ONNX, OpenVINO IR and TensorRT engines.

Entry point: :func:`damo_core.export.formats.export_model` (checks the request against the
``FORMATS`` table, then calls the format's module). The submodules import their backends
lazily, so importing this package needs none of onnx, openvino, nncf or tensorrt.
"""

from damo_core.export.common import BackendUnavailableError
from damo_core.export.wrapper import ExportModel

__all__ = ["BackendUnavailableError", "ExportModel"]
