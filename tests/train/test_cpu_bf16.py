"""BF16 training on CPU (issue #22): the forward runs under bf16 autocast while parameters,
optimiser state, the assigner and the losses stay fp32; ``auto`` follows the CPU's flags; the
run records what it trained in; a bad value is refused naming it."""

from __future__ import annotations

import csv
import json
import logging
import math
import typing

import pytest
import torch
from typer.testing import CliRunner

import damo_core.losses.detection as detection_mod
from damo_core.cli import app
from damo_core.cli.options import TRAIN_PRECISIONS
from damo_core.models import build_model
from damo_core.settings import ConfigError
from damo_core.train import TrainConfig, Trainer, load_train_config
from damo_core.train.amp import resolve_precision
from damo_core.train.checkpoint_io import atomic_save, model_meta
from damo_core.train.distill import DistillTrainer

TINY = dict(epochs=1, batch=4, img_size=64, warmup_epochs=1, no_aug_epochs=0, workers=0,
            precise_bn_batches=1, ema_tau=10.0)
CLASSES = ["circle", "square"]  # tiny_data's classes
NO_BF16 = "fpu sse2 avx avx2 fma"
AMX = f"{NO_BF16} avx512f amx_tile amx_bf16 amx_int8"
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _trainer(data, out, **overrides) -> Trainer:
    cfg = load_train_config(overrides={**TINY, **overrides})
    return Trainer("damoyolo_ns", data, out, cfg, progress=False)


def _first_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def _conv_output_dtypes(model: torch.nn.Module) -> tuple[set[torch.dtype], object]:
    seen: set[torch.dtype] = set()
    handle = _first_conv(model).register_forward_hook(lambda m, i, out: seen.add(out.dtype))
    return seen, handle


def test_bf16_cli_run_keeps_fp32_state_and_records_bf16(tiny_data, tmp_path, cpu_flags,
                                                        caplog):
    """A 1-epoch run from ``damo train --precision bf16`` on a CPU without native BF16:
    finite losses, fp32 weights and optimiser state, ``bf16`` in the checkpoint, the step's
    metadata and the summary line, and one warning that the arithmetic is emulated."""
    cpu_flags(NO_BF16)
    run = tmp_path / "run"
    args = ["train", "--model", "damoyolo_ns", "--data", str(tiny_data), "--out", str(run),
            "--precision", "bf16", *(f"{k}={v}" for k, v in TINY.items())]
    with caplog.at_level(logging.WARNING, logger="damo_core.train.amp"):
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["precision"] == "bf16"
    warnings = [r for r in caplog.records if r.name == "damo_core.train.amp"]
    assert len(warnings) == 1 and "emulates" in warnings[0].getMessage()
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert rows and all(math.isfinite(float(r[k])) for r in rows
                        for k in ("loss", "loss_qfl", "loss_dfl", "loss_giou"))
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["train_precision"] == "bf16" and ckpt["train_config"]["cpu_precision"] == "bf16"
    tensors = [*ckpt["model"].values(), *ckpt["ema"].values(),
               *(v for s in ckpt["optimizer"]["state"].values() for v in s.values()
                 if torch.is_tensor(v))]
    floats = {t.dtype for t in tensors if t.is_floating_point()}
    assert floats == {torch.float32}


@pytest.mark.parametrize("precision, forward_dtype",
                         [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_autocast_covers_the_forward_not_the_assigner_or_losses(
        tiny_data, tmp_path, monkeypatch, precision, forward_dtype):
    trainer = _trainer(tiny_data, tmp_path / "run", cpu_precision=precision)
    assert trainer.precision.name == precision and not trainer.precision.scaled
    seen, handle = _conv_output_dtypes(trainer.model)
    assigned: set[torch.dtype] = set()
    assign = detection_mod.assign

    def recording_assign(pred_scores, pred_boxes, *args, **kwargs):
        assigned.update({pred_scores.dtype, pred_boxes.dtype})
        return assign(pred_scores, pred_boxes, *args, **kwargs)

    monkeypatch.setattr(detection_mod, "assign", recording_assign)
    images, targets = next(iter(trainer.loader()))
    losses = trainer.compute_losses(images, targets)
    handle.remove()
    assert seen == {forward_dtype}
    assert assigned == {torch.float32}
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    trainer.optimise(losses["loss"])
    assert {p.dtype for p in trainer.model.parameters()} == {torch.float32}


def test_teacher_forward_follows_the_students_autocast(tiny_data, tmp_path, cpu_flags):
    torch.manual_seed(1)
    teacher = build_model("damoyolo_nm", num_classes=len(CLASSES))
    teacher_pt = tmp_path / "teacher.pt"
    atomic_save({**model_meta(teacher, CLASSES, TINY["img_size"]),
                 "model": teacher.state_dict(), "ema": teacher.state_dict()}, teacher_pt)
    cpu_flags(AMX)
    cfg = load_train_config(overrides={**TINY, "epochs": 2, "no_aug_epochs": 1,
                                       "cpu_precision": "auto"})
    trainer = DistillTrainer("damoyolo_ns", teacher_pt, tiny_data, tmp_path / "run", cfg,
                             progress=False)
    assert trainer.precision.name == "bf16"
    trainer.distilling, trainer.distill_steps = True, 1
    seen, handle = _conv_output_dtypes(trainer.teacher)
    images, targets = next(iter(trainer.loader()))
    losses = trainer.compute_losses(images, targets)
    handle.remove()
    assert seen == {torch.bfloat16}
    assert losses["loss_distill"].dtype == torch.float32 and torch.isfinite(losses["loss"])
    assert trainer.checkpoint(1, None, with_optimizer=False)["train_precision"] == "bf16"


def test_auto_follows_the_cpu_flags_and_cuda_keeps_fp16_amp(cpu_flags, caplog):
    cpu_flags(NO_BF16)
    assert resolve_precision(CPU, amp=True, cpu_precision="auto").name == "fp32"
    cpu_flags(AMX)
    assert resolve_precision(CPU, amp=True, cpu_precision="auto").name == "bf16"
    with caplog.at_level(logging.WARNING, logger="damo_core.train.amp"):
        assert resolve_precision(CPU, amp=True, cpu_precision="bf16").name == "bf16"
    assert not caplog.records  # native BF16: nothing to warn about
    assert resolve_precision(CPU, amp=True, cpu_precision="fp32").name == "fp32"
    cuda = torch.device("cuda")
    for setting in TRAIN_PRECISIONS:
        fp16 = resolve_precision(cuda, amp=True, cpu_precision=setting)
        assert (fp16.name, fp16.scaled) == ("fp16", True)
        assert resolve_precision(cuda, amp=False, cpu_precision=setting).name == "fp32"


def test_a_bad_precision_is_refused_naming_field_and_value(tiny_data, tmp_path):
    assert load_train_config().cpu_precision == "fp32"
    with pytest.raises(ConfigError, match="'cpu_precision' = 'bf8' is not one of"):
        load_train_config(overrides={"cpu_precision": "bf8"})
    # the CLI's choices are the setting's
    hint = typing.get_type_hints(TrainConfig)["cpu_precision"]
    assert set(TRAIN_PRECISIONS) == set(typing.get_args(hint))
    runner = CliRunner()
    for command in (["train", "--model", "damoyolo_ns"],
                    ["distill", "--model", "damoyolo_ns", "--teacher", str(tmp_path)],
                    ["distill-chain"]):
        result = runner.invoke(app, [*command, "--data", str(tiny_data), "--out",
                                     str(tmp_path / "out"), "--precision", "bogus"])
        assert result.exit_code == 2, (command, result.output)
        assert "'bogus' is not a training precision" in result.output
    assert not (tmp_path / "out").exists()
