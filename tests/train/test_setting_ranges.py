"""Training settings outside their meaningful range are refused before any work starts, and a
run directory that already holds a run is never silently started over."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from damo_core.cli import app
from damo_core.models.config import ConfigError
from damo_core.settings import parse_overrides
from damo_core.train import Trainer, load_train_config

BAD = [("batch", 0), ("batch", -4), ("epochs", 0), ("epochs", -3), ("img_size", 0),
       ("img_size", 100), ("lr_per_image", 0.0), ("lr_per_image", math.nan),
       ("lr_per_image", math.inf), ("momentum", 1.0), ("weight_decay", -0.1),
       ("min_lr_ratio", 1.5), ("ema_decay", 1.0), ("ema_tau", 0.0), ("grad_clip", math.nan),
       ("workers", -1), ("eval_interval", 0), ("save_interval", 0), ("score_threshold", 1.5),
       ("score_threshold", math.nan), ("no_aug_epochs", -1), ("warmup_epochs", -1.0)]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v}" for k, v in BAD])
def test_out_of_range_setting_is_refused(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^overrides: training setting '{key}' = "):
        load_train_config(overrides={key: value})


def test_an_unknown_worker_start_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'worker_start' = 'threads' is not one of"):
        load_train_config(overrides={"worker_start": "threads"})


@pytest.mark.parametrize(("raw", "value"), [("5e-4", 5e-4), ("1E-3", 1e-3), ("+2e+1", 20.0)])
def test_an_exponent_without_a_dot_is_a_number(raw: str, value: float) -> None:
    """YAML 1.1 reads ``5e-4`` as a string; as a float setting it is the number."""
    assert load_train_config(overrides=parse_overrides([f"lr_per_image={raw}"])).lr_per_image \
        == value
    with pytest.raises(ConfigError, match="'lr_per_image' = '5e-4x' must be a finite number"):
        load_train_config(overrides={"lr_per_image": "5e-4x"})


def test_in_range_edges_are_accepted() -> None:
    cfg = load_train_config(overrides={"batch": 1, "epochs": 1, "img_size": 32, "momentum": 0.0,
                                       "min_lr_ratio": 1.0, "score_threshold": 0.0})
    assert (cfg.batch, cfg.epochs, cfg.img_size) == (1, 1, 32)


@pytest.mark.parametrize(("args", "why"), [(["--batch", "0"], "out of range"),
                                           (["--epochs", "0"], "out of range"),
                                           (["lr_per_image=.nan"], "must be a finite number")])
def test_cli_refuses_before_training(tiny_data, tmp_path, args: list[str], why: str) -> None:
    result = CliRunner().invoke(app, ["train", "--model", "damoyolo_ns", "--data",
                                      str(tiny_data), "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 2 and why in result.output, result.output
    assert not (tmp_path / "run" / "best.pt").exists()


def test_rerun_into_a_run_directory_needs_resume(tiny_data, tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"earlier run")
    (run / "results.csv").write_text("epoch,loss\n1,2.0\n")
    cfg = load_train_config(overrides={"epochs": 1, "batch": 4, "img_size": 64, "workers": 0})
    with pytest.raises(FileExistsError, match="already holds a training run .*--resume"):
        Trainer("damoyolo_ns", tiny_data, run, cfg, progress=False).fit()
    assert (run / "results.csv").read_text() == "epoch,loss\n1,2.0\n"
