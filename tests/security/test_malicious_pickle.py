"""A weights file that carries code is refused by every path that opens one, and nothing runs.

The hostile file is a real ``torch.save`` of a checkpoint-shaped dict whose ``model`` entry
unpickles into a call that writes a marker file: if any loader unpickled it, the marker would
exist. Every loader must instead end in one clear line that names the file and the safe way
out for trusted files.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from damo_core.cli.app import app
from damo_core.data.synth import generate
from damo_core.export.formats import load_source
from damo_core.models import build_model
from damo_core.models.checkpoint import UnsafeCheckpointError, load_checkpoint
from damo_core.models.checkpoint_format import FORMAT, FORMAT_KEY, upgrade_checkpoint
from damo_core.train import load_trained
from damo_core.train.checkpoint_io import atomic_save, model_meta, read_checkpoint
from damo_core.train.config import TrainConfig, load_train_config
from damo_core.train.distill import distill
from damo_core.train.trainer import train


class _RunsCode:
    """Unpickles into ``exec`` of a line that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("data") / "synth", num_classes=2, num_images=8,
                    image_size=64, seed=5)


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture()
def hostile(tmp_path: Path, marker: Path) -> Path:
    ns = build_model("damoyolo_ns", num_classes=2)
    path = tmp_path / "best.pt"
    torch.save({**model_meta(ns, ["a", "b"], 64), "model": _RunsCode(marker), "ema": None}, path)
    return path


def _refused(err: BaseException | str, path: Path) -> None:
    text = str(err)
    assert str(path) in text and "refused" in text, text
    assert "damo checkpoint upgrade" in text, text


def _tiny_cfg() -> TrainConfig:
    return load_train_config(overrides={"epochs": 2, "no_aug_epochs": 1, "batch": 4,
                                        "img_size": 64, "workers": 0})


LIBRARY_LOADS: dict[str, Callable[[Path, Path], Any]] = {
    "read_checkpoint": lambda weights, _data: read_checkpoint(weights),
    "load_trained": lambda weights, _data: load_trained(weights),
    "load_checkpoint (reference .pth path)": lambda weights, _data: load_checkpoint(
        weights, build_model("damoyolo_ns", num_classes=2)),
    "export load_source": lambda weights, _data: load_source(weights),
    "export load_source --model": lambda weights, _data: load_source(weights, "damoyolo_ns"),
    "train --weights": lambda weights, data: train(
        "damoyolo_ns", data, weights.parent / "run", _tiny_cfg(), weights=weights,
        progress=False),
    "distill teacher": lambda weights, data: distill(
        "damoyolo_ns", weights, data, weights.parent / "student", _tiny_cfg(), progress=False),
}


@pytest.mark.parametrize("load", LIBRARY_LOADS.values(), ids=LIBRARY_LOADS.keys())
def test_library_loaders_refuse(load: Callable[[Path, Path], Any], hostile: Path, marker: Path,
                                data: Path) -> None:
    with pytest.raises(UnsafeCheckpointError) as err:
        load(hostile, data)
    _refused(err.value, hostile)
    assert not marker.exists()


def test_resume_refuses_hostile_last_pt(hostile: Path, marker: Path, data: Path,
                                        tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(hostile, run / "last.pt")
    with pytest.raises(UnsafeCheckpointError) as err:
        train("damoyolo_ns", data, run, _tiny_cfg(), resume=True, progress=False)
    _refused(err.value, run / "last.pt")
    assert not marker.exists()


def _cli_cases(hostile: Path, data: Path, out: Path) -> dict[str, list[str]]:
    image = next((data.parent / "images" / "val").glob("*.jpg"), None) or \
        next(data.parent.rglob("*.jpg"))
    return {
        "eval": ["eval", "--weights", str(hostile), "--data", str(data)],
        "predict": ["predict", "--weights", str(hostile), str(image), "--out", str(out / "p")],
        "export": ["export", "--weights", str(hostile), "--out", str(out / "e")],
        "distill": ["distill", "--student", "damoyolo_ns", "--teacher-weights", str(hostile),
                    "--data", str(data), "--out", str(out / "d"), "epochs=2", "no_aug_epochs=1"],
        "train --weights": ["train", "--model", "damoyolo_ns", "--data", str(data),
                            "--out", str(out / "t"), "--weights", str(hostile)],
    }


@pytest.mark.parametrize("command", ["eval", "predict", "export", "distill", "train --weights"])
def test_cli_refuses(command: str, hostile: Path, marker: Path, data: Path,
                     tmp_path: Path) -> None:
    args = _cli_cases(hostile, data, tmp_path)[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    _refused(result.output.replace("\n", " "), hostile)
    assert not marker.exists()


def test_cli_resume_refuses(hostile: Path, marker: Path, data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(hostile, run / "last.pt")
    result = CliRunner().invoke(app, ["train", "--model", "damoyolo_ns", "--data", str(data),
                                      "--out", str(run), "--resume", "epochs=1", "img_size=64"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "refused" in result.output and not marker.exists()


def test_upgrade_needs_explicit_trust(hostile: Path, marker: Path) -> None:
    result = CliRunner().invoke(app, ["checkpoint", "upgrade", str(hostile)])
    assert result.exit_code == 2 and "--trusted" in result.output, result.output
    assert not marker.exists()


def test_upgrade_converts_a_trusted_legacy_checkpoint(tmp_path: Path) -> None:
    """An older checkpoint with a Path and a whole module in it becomes safe plain data."""
    ns = build_model("damoyolo_ns", num_classes=2).eval()
    legacy = tmp_path / "old.pt"
    torch.save({**model_meta(ns, ["a", "b"], 64), "model": ns, "ema": None,
                "data": tmp_path / "dataset.yaml"}, legacy)
    with pytest.raises(UnsafeCheckpointError):
        load_trained(legacy)
    result = CliRunner().invoke(app, ["checkpoint", "upgrade", str(legacy), "--trusted",
                                      "--out", str(tmp_path / "new.pt")])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(tmp_path / "new.pt", weights_only=True)
    assert ckpt[FORMAT_KEY] == FORMAT and ckpt["data"] == str(tmp_path / "dataset.yaml")
    model, meta = load_trained(tmp_path / "new.pt")
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        for mine, theirs in zip(model(x), ns(x), strict=True):
            torch.testing.assert_close(mine.cls_logits, theirs.cls_logits)
    assert meta["class_names"] == ["a", "b"]


def test_saving_refuses_what_cannot_load_safely(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"best.pt.data is a pathlib"):
        atomic_save({"data": tmp_path}, tmp_path / "best.pt")
    assert not any(tmp_path.iterdir())


def test_upgrade_in_place_keeps_the_original_on_failure(tmp_path: Path) -> None:
    src = tmp_path / "odd.pt"
    torch.save({"model_config": {}, "thing": _Opaque()}, src)
    before = src.read_bytes()
    with pytest.raises(ValueError, match="cannot convert"):
        upgrade_checkpoint(src)
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["odd.pt"]


class _Opaque:
    """A class with no plain-data equivalent."""
