"""Bad export requests end in one clear line (exit 2) and never leave a file behind, and an
interrupted export never leaves a partial file under the final name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.export.formats import export_model, load_source
from damo_core.models import Detector, build_model
from damo_core.train.checkpoint_io import atomic_save, model_meta

SIZE = "64"


@pytest.fixture(scope="module")
def ns() -> Detector:
    return build_model("damoyolo_ns", num_classes=4).eval()


@pytest.fixture(scope="module")
def ns_checkpoint(ns: Detector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "ns_best.pt"
    atomic_save({**model_meta(ns, ["a", "b", "c", "d"], 64), "model": ns.state_dict(),
                 "ema": None}, path)
    return path


def damo(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


@pytest.mark.parametrize("opset", ["9", "21"])
def test_unsupported_opset(tmp_path: Path, opset: str) -> None:
    code, out = damo("export", "--model", "damoyolo_ns", "--opset", opset, "--img-size", SIZE,
                     "--out", tmp_path)
    assert code == 2 and f"opset must be in [11, 20], got {opset}" in out
    assert not any(tmp_path.iterdir())


def test_opset_is_onnx_only(tmp_path: Path) -> None:
    code, out = damo("export", "--model", "damoyolo_ns", "-f", "openvino", "--opset", "13",
                     "--out", tmp_path)
    assert code == 2 and "does not support option 'opset'" in out


def test_checkpoint_of_another_model(ns_checkpoint: Path, tmp_path: Path) -> None:
    code, out = damo("export", "--model", "damoyolo_s", "--weights", ns_checkpoint,
                     "--out", tmp_path)
    assert code == 2
    assert f"{ns_checkpoint} holds a damoyolo_ns checkpoint (field model_name), not " \
           "damoyolo_s" in out
    assert not any(tmp_path.iterdir())


def test_checkpoint_whose_weights_do_not_fit_its_config(ns: Detector, tmp_path: Path) -> None:
    """A mixed-up file: damoyolo_t's config with damoyolo_ns's weights."""
    t = build_model("damoyolo_t", num_classes=4)
    path = tmp_path / "mixed.pt"
    atomic_save({**model_meta(t, ["a", "b", "c", "d"], 64), "model": ns.state_dict(),
                 "ema": ns.state_dict()}, path)
    code, out = damo("export", "--weights", path, "--out", tmp_path / "out")
    assert code == 2 and f"{path}:ema does not fit model damoyolo_t" in out
    assert "missing keys" in out or "shape mismatches" in out
    assert not (tmp_path / "out").exists()


def test_bare_state_dict_needs_and_must_fit_its_model(ns: Detector, tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save({"model": ns.state_dict()}, path)
    code, out = damo("export", "--weights", path, "--out", tmp_path / "out")
    assert code == 2 and "not a damo training checkpoint" in out and "--model" in out
    code, out = damo("export", "--weights", path, "--model", "damoyolo_s", "--num-classes",
                     "4", "--out", tmp_path / "out")
    assert code == 2 and f"{path} does not fit model damoyolo_s" in out
    loaded = load_source(path, "damoyolo_ns", num_classes=4)
    for key, value in ns.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_unreadable_weights(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    path.write_text("not a checkpoint")
    code, out = damo("export", "--weights", path, "--out", tmp_path / "out")
    assert code == 2 and f"{path}: cannot be read as a torch checkpoint" in out
    code, out = damo("export", "--weights", tmp_path / "missing.pt")
    assert code == 2 and "missing.pt does not exist" in out


@pytest.mark.parametrize(("command", "fmt", "module", "package"), [
    ("export", "openvino", "openvino", "openvino"),
    ("export", "onnx", "onnx", "onnx"),
    ("bench", "onnx", "onnxruntime", "onnxruntime"),
    ("bench", "openvino", "openvino", "openvino"),
])
def test_missing_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str,
                         fmt: str, module: str, package: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    extra = (["--runs", "1", "--out", tmp_path / "report.json"] if command == "bench" else
             ["--out", tmp_path / "out"])
    code, out = damo(command, "--model", "damoyolo_ns", "-f", fmt, "--img-size", SIZE, *extra)
    assert code == 2, out
    assert f"needs the '{package}' package" in out and f"pip install {package}" in out
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "report.json").exists()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C in the middle of writing."""


def _half_then_interrupt(real):  # type: ignore[no-untyped-def]
    def write(self: Path, data: bytes) -> int:
        real(self, data[: len(data) // 2])
        raise Interrupted
    return write


def test_interrupted_onnx_export_keeps_the_old_file(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    code, out = damo("export", "--model", "damoyolo_ns", "--img-size", SIZE, "--out", tmp_path)
    assert code == 0, out
    (final,) = tmp_path.iterdir()
    before = final.read_bytes()
    monkeypatch.setattr(Path, "write_bytes", _half_then_interrupt(Path.write_bytes))
    model = load_source(model_name="damoyolo_ns").model
    with pytest.raises(Interrupted):
        export_model(model, "onnx", tmp_path, image_size=int(SIZE))
    assert list(tmp_path.iterdir()) == [final] and final.read_bytes() == before


def test_interrupted_openvino_export_leaves_nothing(monkeypatch: pytest.MonkeyPatch,
                                                    ns: Detector, tmp_path: Path) -> None:
    import openvino as ov

    real = ov.save_model

    def save_then_interrupt(model, path: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
        real(model, path, **kwargs)
        Path(path).with_suffix(".bin").write_bytes(b"torn")
        raise Interrupted

    monkeypatch.setattr(ov, "save_model", save_then_interrupt)
    with pytest.raises(Interrupted):
        export_model(ns, "openvino", tmp_path / "out", image_size=int(SIZE))
    assert not any((tmp_path / "out").iterdir())
