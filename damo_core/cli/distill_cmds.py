"""``damo distill`` (a shell over the distill step) and ``damo distill-chain`` (the paper's
L -> M -> S -> T chain in one command). Same ``key=value`` settings as ``damo train``, plus
``distill.<key>=value`` for the distillation settings (weight_start, weight_end, tau, levels,
grad_clip)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from damo_core.cli import options as opt
from damo_core.cli.errors import exit_on_user_error
from damo_core.cli.train_cmds import summary


@exit_on_user_error
def distill(
    model: Annotated[str, typer.Option(
        "--model", "--student", help="Student: zoo name (damoyolo_m ...) or model YAML.")],
    teacher: Annotated[Path, typer.Option(
        "--teacher", "--teacher-weights", help="Teacher checkpoint written by `damo train` "
        "(best.pt), or its run directory.")],
    data: opt.Data,
    out: Annotated[Path, typer.Option(help="Run directory for checkpoints and plots.")] = Path(
        "runs/distill"),
    epochs: Annotated[int | None, typer.Option(
        help="Total epochs; the last no_aug_epochs run without the teacher. [default: the "
        "preset's]")] = None,
    batch: opt.Batch = None,
    img_size: opt.ImgSize = None,
    preset: opt.Preset = None,
    weights: opt.InitWeights = None,
    resume: opt.Resume = False,
    run_id: opt.TrainRunId = None,
    nodes: opt.Nodes = 1,
    gpus_per_node: opt.GpusPerNode = 1,
    mlflow: opt.Mlflow = None,
    mlflow_experiment: opt.MlflowExperiment = opt.DEFAULT_EXPERIMENT,
    precision: opt.TrainPrecision = None,
    overrides: Annotated[list[str] | None, typer.Argument(
        help="key=value training settings and distill.key=value distillation settings, e.g. "
             "no_aug_epochs=2 distill.tau=2")] = None,
) -> None:
    """Distil a teacher into a student; writes last.pt, best.pt, results.csv/png into OUT."""
    from damo_core.steps._training import Placement
    from damo_core.steps.distill import run

    settings, distill_settings = opt.split_distill_settings(
        opt.settings_from_cli(overrides, epochs=epochs, batch=batch, img_size=img_size,
                              cpu_precision=precision))
    meta = run(data, out, model=model, teacher=teacher, settings=settings,
               distill_settings=distill_settings, preset=preset, weights=weights,
               resume=resume, run_id=run_id, placement=Placement(nodes, gpus_per_node),
               progress=True, mlflow_uri=mlflow or "", mlflow_experiment=mlflow_experiment)
    typer.echo(summary(meta, out))


@exit_on_user_error
def distill_chain(
    data: opt.Data,
    out: Annotated[Path, typer.Option(help="Root directory; one run directory per model.")] = Path(
        "runs/chain"),
    models: Annotated[str | None, typer.Option(
        help="Comma-separated chain, teacher first; each model teaches the next "
             "[default: the paper's damoyolo_l,damoyolo_m,damoyolo_s,damoyolo_t]")] = None,
    teacher: Annotated[Path | None, typer.Option(
        "--teacher", "--teacher-weights",
        help="Use this trained first model instead of training it. [default: none]")] = None,
    teacher_epochs: Annotated[int | None, typer.Option(
        "--teacher-epochs", help="Epochs of the first model's plain training. [default: "
        "--epochs]")] = None,
    epochs: Annotated[int | None, typer.Option(
        help="Epochs of every distilled link. [default: the preset's]")] = None,
    batch: opt.Batch = None,
    img_size: opt.ImgSize = None,
    preset: opt.Preset = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue every unfinished link from its last.pt.")] = False,
    run_id: opt.TrainRunId = None,
    mlflow: opt.Mlflow = None,
    mlflow_experiment: opt.MlflowExperiment = opt.DEFAULT_EXPERIMENT,
    precision: opt.TrainPrecision = None,
    overrides: Annotated[list[str] | None, typer.Argument(
        help="key=value training settings and distill.key=value distillation settings")] = None,
) -> None:
    """Train the teacher, then distil the chain (L -> M -> S -> T); writes OUT/chain.json.
    With --mlflow, every model of the chain gets its own MLflow run."""
    from damo_core.environ import exported_env
    from damo_core.metrics import ENV_RUN
    from damo_core.metrics import run_id as env_run_id
    from damo_core.metrics.mlflow_tracking import training_logged
    from damo_core.steps._common import dataset_ref, preset_path, weights_file
    from damo_core.train import load_train_config
    from damo_core.train.chain import PAPER_CHAIN, run_chain
    from damo_core.train.distill import DistillConfig

    settings, distill_settings = opt.split_distill_settings(
        opt.settings_from_cli(overrides, epochs=epochs, batch=batch, img_size=img_size,
                              cpu_precision=precision))
    teacher_settings = {**settings, **({"epochs": teacher_epochs} if teacher_epochs else {})}
    config = preset_path(preset)
    chain = [m.strip() for m in models.split(",") if m.strip()] if models else PAPER_CHAIN
    data_ref, run = dataset_ref(data), run_id or env_run_id()
    with exported_env({ENV_RUN: run}), training_logged(
            mlflow, mlflow_experiment, run_id=run,
            params={"data": data_ref, "preset": str(preset or ""), "weights": ""}):
        links = run_chain(chain, data_ref, out, load_train_config(config, settings),
                          load_train_config(config, teacher_settings),
                          DistillConfig.from_dict(distill_settings, "overrides"),
                          teacher_weights=weights_file(teacher) if teacher else None,
                          resume=resume)
    for link in links:
        source = f"<- {link.teacher}" if link.teacher else "(trained)"
        typer.echo(f"{link.model:<12} AP {link.ap:.4f} AP50 {link.ap50:.4f} {source} "
                   f"-> {link.weights}")
    typer.echo(f"chain summary: {out / 'chain.json'}")
