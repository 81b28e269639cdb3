"""The FORMATS table: bad requests fail fast and clearly, good ones reach the right exporter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from typer.testing import CliRunner

from damo_core.cli import export_cmds
from damo_core.export import tensorrt
from damo_core.export.common import BackendUnavailableError
from damo_core.export.formats import (
    FORMATS,
    OPTIONS,
    ExportFormat,
    check_request,
    export_model,
    load_source,
)
from damo_core.models import Detector, build_model
from damo_core.train.checkpoint_io import atomic_save, model_meta

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")


@pytest.fixture(scope="module")
def tiny() -> Detector:
    return build_model("damoyolo_ns", num_classes=4).eval()


def test_every_format_has_a_module_suffix_and_options() -> None:
    assert set(FORMATS) == set(OPTIONS) == {"onnx", "openvino", "tensorrt"}
    assert {f.suffix for f in FORMATS.values()} == {".onnx", ".xml", ".engine"}
    assert [name for name, f in FORMATS.items() if f.needs_gpu] == ["tensorrt"]


@pytest.mark.parametrize(
    ("fmt", "opts", "message"),
    [
        ("onxx", {}, "did you mean 'onnx'"),
        ("onnx", {"int8": True}, "INT8 is available for openvino and tensorrt"),
        ("onnx", {"half": True}, "needs device='cuda'"),
        ("onnx", {"half": True, "device": "cpu"}, "needs device='cuda'"),
        ("openvino", {"half": True, "int8": True, "data": "d.yaml"}, "exclusive"),
        ("openvino", {"int8": True}, "calibration images"),
        ("openvino", {"opset": 13}, "does not support option 'opset'"),
    ],
)
def test_unsupported_combinations_raise(fmt: str, opts: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_request(fmt, opts)


@no_gpu
def test_tensorrt_without_gpu_says_so(tiny: Detector, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="needs an NVIDIA GPU with CUDA"):
        export_model(tiny, "tensorrt", tmp_path, half=True)
    with pytest.raises(BackendUnavailableError, match="NVIDIA GPU"):  # the module itself too
        tensorrt.export(tiny, tmp_path, image_size=128)
    with pytest.raises(BackendUnavailableError, match="NVIDIA GPU"):
        tensorrt.load_runner(tmp_path / "missing.engine")
    with pytest.raises(BackendUnavailableError, match="device='cuda'"):
        export_model(tiny, "onnx", tmp_path, half=True, device="cuda")
    assert not list(tmp_path.iterdir())  # failed before writing anything


def test_unset_flags_are_ignored_and_set_ones_are_forwarded(
        tiny: Detector, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_export(model: Detector, out_dir: Path, **kwargs: Any) -> Path:
        calls.append(kwargs)
        return Path(out_dir) / "model.onnx"

    monkeypatch.setitem(FORMATS, "onnx", ExportFormat(fake_export, ".onnx", False))
    path = export_model(tiny, "onnx", tmp_path, int8=False, data=None, half=False,
                        end2end=True)
    assert path.name == "model.onnx"
    # image size defaults to the model's own; False/None flags are dropped
    assert calls == [{"image_size": 416, "end2end": True}]


def test_load_source_by_name_or_trained_checkpoint(tiny: Detector, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="or both"):
        load_source()
    with pytest.raises(FileNotFoundError, match="best.pt does not exist"):
        load_source(tmp_path / "best.pt", "damoyolo_ns")
    by_name = load_source(model_name="damoyolo_ns", num_classes=4)
    assert by_name.image_size == 416 and by_name.class_names is None
    ckpt = {**model_meta(tiny, ["a", "b", "c", "d"], 320), "model": tiny.state_dict(),
            "ema": None}
    atomic_save(ckpt, tmp_path / "best.pt")
    trained = load_source(tmp_path / "best.pt")
    assert trained.image_size == 320 and trained.class_names == ["a", "b", "c", "d"]
    assert trained.model.head.num_classes == 4


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("export")(export_cmds.export)
    app.command("bench")(export_cmds.benchmark)
    return app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--model", "damoyolo_ns", "--int8"], "does not support option 'int8'"),
        (["export", "--model", "damoyolo_ns", "--half"], "needs device='cuda'"),
        (["export"], "a model name"),
        (["bench", "--model", "damoyolo_ns", "-f", "onnx:int4"], "bad benchmark target"),
        pytest.param(["export", "--model", "damoyolo_ns", "-f", "tensorrt"], "NVIDIA GPU",
                     marks=no_gpu),
    ],
)
def test_cli_reports_bad_requests_in_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
