"""``damo distill``: train a student with a frozen teacher's neck features (CWD), then fine-tune
without mosaic and without the teacher. Same ``key=value`` overrides as ``damo train``, plus
``distill.<key>=value`` for the distillation settings (weight_start, weight_end, tau, levels,
grad_clip)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from damo_core.cli.errors import exit_on_user_error


@exit_on_user_error
def distill(
    student: Annotated[str, typer.Option(help="Student: zoo name (damoyolo_m ...) or YAML.")],
    teacher_weights: Annotated[Path, typer.Option(
        "--teacher-weights", help="Teacher checkpoint written by `damo train` (best.pt).")],
    data: Annotated[Path, typer.Option(help="dataset.yaml (see `damo data synth`).")],
    out: Annotated[Path, typer.Option(help="Run directory for checkpoints and plots.")] = Path(
        "runs/distill"),
    epochs: Annotated[int | None, typer.Option(
        help="Total epochs; the last no_aug_epochs run without the teacher.")] = None,
    batch: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", help="Input side.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML of training settings.")] = None,
    weights: Annotated[Path | None, typer.Option(help="Initial student weights.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt.")] = False,
    overrides: Annotated[list[str] | None, typer.Argument(
        help="key=value training settings and distill.key=value distillation settings, e.g. "
             "no_aug_epochs=2 distill.tau=2")] = None,
) -> None:
    """Distil a teacher into a student; writes last.pt, best.pt, results.csv/png into OUT."""
    from damo_core.models.config import ConfigError
    from damo_core.train import load_train_config, parse_overrides
    from damo_core.train.distill import DistillConfig
    from damo_core.train.distill import distill as run_distill
    from damo_core.train.trainer import summary_line

    settings: dict[str, Any] = parse_overrides(overrides or [])
    distill_settings = settings.pop("distill", {})
    if not isinstance(distill_settings, dict):
        raise ConfigError("distillation settings are given as distill.<key>=value, "
                          "e.g. distill.tau=2")
    for key, value in (("epochs", epochs), ("batch", batch), ("img_size", img_size)):
        if value is not None:
            settings[key] = value
    result = run_distill(student, teacher_weights, data, out, load_train_config(config, settings),
                         DistillConfig.from_dict(distill_settings, "overrides"), weights=weights,
                         resume=resume)
    typer.echo(summary_line(result))
