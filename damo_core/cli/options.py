"""The options every command shares, declared once: the same name, aliases and help for the
same thing in every command (``--img-size`` / ``--imgsz``, ``--weights``, ``--data``,
``--out`` ...), so what a user learns in one command holds in the next."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

# re-exported: the commands' default of --mlflow-experiment
from damo_core.metrics.mlflow_tracking import DEFAULT_EXPERIMENT as DEFAULT_EXPERIMENT
from damo_core.metrics.mlflow_tracking import EXTRA

Model = Annotated[str, typer.Option(
    "--model", help="Zoo name (damoyolo_t ...) or a model YAML (e.g. from `damo nas`).")]
OptionalModel = Annotated[str | None, typer.Option(
    "--model", help="Zoo name; alone: random init, for latency only (detections are noise); "
    "with --weights: the architecture of reference .pth weights. [default: none]")]
Data = Annotated[str, typer.Option(
    "--data", help="Manifest directory (local or s3://, see `damo unify`), COCO dataset.yaml "
    "(see `damo data synth`) or ultralytics data.yaml, or the directory holding one.")]
OptionalData = Annotated[str | None, typer.Option(
    "--data", help="Dataset (as for training) whose train images calibrate INT8. "
    "[default: none]")]
Weights = Annotated[Path, typer.Option(
    "--weights", help="Checkpoint written by `damo train` (best.pt), or its run directory.")]
InferWeights = Annotated[Path, typer.Option(
    "--weights", help="Checkpoint written by `damo train` (best.pt) or its run directory, or an "
    "export: an .onnx / .xml (OpenVINO) / .engine file or the directory `damo export` wrote.")]
InferPrecision = Annotated[str | None, typer.Option(
    "--precision", help="fp32, bf16 or int8. A checkpoint runs fused in PyTorch at fp32; bf16 "
    "(CPUs with AMX or AVX-512-BF16) and int8 export it to OpenVINO first (int8 calibrates on "
    "a train split: predict's --calib, evaluate's --data). An export runs at its own "
    "precision, or bf16 for a float one. [default: fp32, or the export's]",
    show_default=False)]
OptionalWeights = Annotated[Path | None, typer.Option(
    "--weights", help="Checkpoint written by `damo train` (best.pt) or its run directory; "
    "with --model, reference .pth weights. [default: none]")]
ImgSize = Annotated[int | None, typer.Option(
    "--img-size", "--imgsz", help="Input side, a multiple of 32. [default: the checkpoint's, "
    "else the model's]")]
Preset = Annotated[str | None, typer.Option(
    "--preset", "--config", help="Training settings: a bundled preset (cpu_quick) or a YAML "
    "file. [default: the paper's settings]")]
Epochs = Annotated[int | None, typer.Option(
    "--epochs", help="Total epochs. [default: the preset's]")]
Batch = Annotated[int | None, typer.Option(
    "--batch", help="Images per step. [default: the preset's]")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")]
InitWeights = Annotated[Path | None, typer.Option(
    "--weights", help="Initial weights (.pt/.pth). [default: none, random init]")]
RunId = Annotated[str | None, typer.Option(
    "--run-id", help="Label of the pushed metrics. [default: $DAMO_RUN_ID, else local]")]
TrainRunId = Annotated[str | None, typer.Option(
    "--run-id", help="Label of the pushed metrics and, with --mlflow, the damo.run_id tag of "
    "the MLflow run, by which `damo export` and `damo gate` find it. \\[default: "
    "$DAMO_RUN_ID, else local]")]
MlflowRunId = Annotated[str | None, typer.Option(
    "--run-id", help="With --mlflow: the run whose MLflow run (tag damo.run_id, as given to "
    "`damo train --run-id`) to log into. \\[default: $DAMO_RUN_ID, else local]")]
# No envvar on purpose: $MLFLOW_TRACKING_URI, set for other tools, must not turn logging on.
# (Help text is rich markup: a literal "[" is written "\\[".)
_EXTRA_HELP = EXTRA.replace("[", r"\[")
Mlflow = Annotated[str | None, typer.Option(
    "--mlflow", metavar="URI", help="Also log to this MLflow tracking server (e.g. "
    f"http://127.0.0.1:5000), checked before any work; needs {_EXTRA_HELP}. Off unless given "
    "($MLFLOW_TRACKING_URI is not read).")]
MlflowExperiment = Annotated[str, typer.Option(
    "--mlflow-experiment", help="MLflow experiment of the runs (created if missing).")]
Nodes = Annotated[int, typer.Option(
    "--nodes", help="1 trains here; N > 1 runs a PyTorchJob of N pods (in a cluster).")]
GpusPerNode = Annotated[int, typer.Option(
    "--gpus-per-node", help="Ranks per node (torchrun when > 1).")]
# The values of the training setting cpu_precision (damo_core.train.config.TrainConfig); kept
# here so that parsing the command line does not import torch.
TRAIN_PRECISIONS = ("fp32", "bf16", "auto")


def _train_precision(value: str | None) -> str | None:
    """``--precision`` lower-cased, or a usage error naming the value and the choices."""
    if value is None:
        return None
    norm = value.strip().lower()
    if norm not in TRAIN_PRECISIONS:
        raise typer.BadParameter(f"{value!r} is not a training precision; expected one of "
                                 f"{list(TRAIN_PRECISIONS)}")
    return norm


TrainPrecision = Annotated[str | None, typer.Option(
    "--precision", callback=_train_precision, help="Arithmetic of the training forward on "
    "CPU (the setting cpu_precision): fp32; bf16 (autocast; native on AMX or AVX-512-BF16 "
    "CPUs, emulated and slower elsewhere); auto (bf16 where native, else fp32). Parameters "
    "stay fp32; CUDA keeps the amp setting (fp16). \\[default: the preset's, else fp32]")]
Overrides = Annotated[list[str] | None, typer.Argument(
    help="key=value training settings, e.g. lr_per_image=0.0002 augment.mosaic_prob=0 "
    "imgsz=320")]

# ultralytics spellings users type out of habit, as key=value settings
SETTING_ALIASES = {"imgsz": "img_size", "img": "img_size", "bs": "batch", "batch_size": "batch"}


def settings_from_cli(overrides: list[str] | None, **flags: Any) -> dict[str, Any]:
    """``key=value`` settings (nested by dots, ultralytics aliases accepted) with the explicit
    flags (``--epochs`` ...) applied on top."""
    from damo_core.train import parse_overrides

    pairs = []
    for pair in overrides or []:
        key, sep, value = pair.partition("=")
        pairs.append(f"{SETTING_ALIASES.get(key, key)}{sep}{value}")
    settings: dict[str, Any] = parse_overrides(pairs)
    settings.update({key: value for key, value in flags.items() if value is not None})
    return settings


def split_distill_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Training settings and the ``distill.*`` ones (weight_start, weight_end, tau, levels,
    grad_clip), given on one command line."""
    from damo_core.models.config import ConfigError

    settings = dict(settings)
    distill_settings = settings.pop("distill", {})
    if not isinstance(distill_settings, dict):
        raise ConfigError("distillation settings are given as distill.<key>=value, "
                          "e.g. distill.tau=2")
    return settings, distill_settings
