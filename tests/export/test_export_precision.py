"""Precision as an export choice: ``bf16`` (an FP32 IR run with the BF16 hint, refused where
the CPU has no BF16 units, whatever cpuinfo claims), ``int8`` with its val accuracy recorded
beside FP32's, ``auto`` (every precision this CPU runs exported, timed and evaluated; the
fastest within the accuracy limits kept, as :func:`choose` rules on the recorded rows), and
the benchmark step running an export at its recorded precision."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from damo_core.bench.precision import cpu_features, supported
from damo_core.cli.app import app
from damo_core.data.synth import generate
from damo_core.errors import UserInputError
from damo_core.eval.engine import ExportedDetector
from damo_core.export.openvino import load_runner, read_metadata
from damo_core.steps import benchmark as benchmark_step
from damo_core.steps import export as export_step
from tests.conftest import CONFIDENT_CLASSES, CONFIDENT_SIZE

FAKE_AMX = ("model name\t: Fake Xeon with AMX\n"
            "flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_int8\n")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth"), num_classes=len(CONFIDENT_CLASSES),
                    num_images=12, image_size=CONFIDENT_SIZE, seed=0)


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory, confident_checkpoint: Path,
                data: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("int8")
    return out, export_step.run(confident_checkpoint, out, fmt="openvino", precision="int8",
                                data=data)


def test_bf16_export_runs_only_on_bf16_units(tmp_path: Path, confident_checkpoint: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = cpu_features()
    meta = export_step.run(confident_checkpoint, tmp_path, fmt="openvino", precision="bf16")
    assert meta["precision"] == "bf16" and meta["file"].endswith("_bf16.xml")
    assert read_metadata(tmp_path / meta["file"])["precision"] == "bf16"
    if real.bf16:
        assert ExportedDetector(tmp_path, threads=1).precision == "bf16"
        # a runner given only the file (Triton's Python backend) takes its recorded precision
        assert load_runner(tmp_path / meta["file"], threads=1).precision == "bf16"
    else:
        with pytest.raises(UserInputError, match="no native BF16|has avx2"):
            ExportedDetector(tmp_path, threads=1)
        with pytest.raises(UserInputError, match="needs a CPU with AMX"):
            load_runner(tmp_path / meta["file"], threads=1)
        # cpuinfo claiming AMX does not fool the check: OpenVINO reports what it compiled
        (tmp_path / "cpuinfo").write_text(FAKE_AMX)
        monkeypatch.setenv("DAMO_CPUINFO", str(tmp_path / "cpuinfo"))
        with pytest.raises(UserInputError, match="compiled f32"):
            ExportedDetector(tmp_path, threads=1)


def test_int8_records_its_accuracy_beside_fp32(int8_export: tuple[Path, dict]) -> None:
    out, meta = int8_export
    assert meta["precision"] == "int8" and meta["file"].endswith("_int8.xml")
    for key in ("val_AP", "val_AP50", "fp32_val_AP", "fp32_val_AP50"):
        assert 0.0 <= meta[key] <= 1.0, key
    assert meta["fp32_val_AP50"] > 0  # the comparison is between real detections
    assert meta["val_AP50_loss"] == pytest.approx(meta["fp32_val_AP50"] - meta["val_AP50"])
    assert load_runner(out / meta["file"], threads=1).precision == "int8"  # from the file


def test_benchmark_step_runs_an_export_at_its_precision(int8_export: tuple[Path, dict]) -> None:
    out, _ = int8_export
    report = benchmark_step.run(out, runs=2, warmup=1, threads=1)
    assert report["precision"] == "int8" and report["format"] == "openvino"
    with pytest.raises(UserInputError, match="cannot run at fp32"):
        benchmark_step.run(out, runs=2, warmup=1, threads=1, precision="fp32")


def test_auto_keeps_the_fastest_within_the_limit(tmp_path: Path, confident_checkpoint: Path,
                                                 data: Path) -> None:
    out = tmp_path / "auto"
    result = CliRunner().invoke(app, ["export", "--weights", str(confident_checkpoint),
                                      "--format", "openvino", "--precision", "auto",
                                      "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "chose " in result.output
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 2 and files[0].endswith(".bin") and files[1].endswith(".xml")
    chosen = files[1].removesuffix(".xml").rsplit("_", 1)[1]
    assert read_metadata(out / files[1])["precision"] == chosen
    assert f"chose {chosen}:" in result.output
    for precision in supported():  # every precision this CPU runs was timed and evaluated
        assert f"{precision:>5}: p50 " in result.output
    assert "bf16: p50" not in result.output or cpu_features().bf16


def test_bad_precision_requests(tmp_path: Path, confident_checkpoint: Path) -> None:
    with pytest.raises(UserInputError, match="OpenVINO CPU choice"):
        export_step.run(confident_checkpoint, tmp_path, fmt="onnx", precision="bf16")
    with pytest.raises(UserInputError, match="once"):
        export_step.run(confident_checkpoint, tmp_path, fmt="openvino", precision="int8",
                        int8=True)
    with pytest.raises(UserInputError, match="pass data"):
        export_step.run(confident_checkpoint, tmp_path, fmt="openvino", precision="auto")
    with pytest.raises(UserInputError, match="is not a precision"):
        export_step.run(confident_checkpoint, tmp_path, fmt="openvino", precision="fp8")
    assert not any(tmp_path.iterdir())
