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
    from damo_core.train import load_train_config
    from damo_core.train.distill import DistillConfig
    from damo_core.train.distill import distill as run_distill
    from damo_core.train.trainer import summary_line

    settings, distill_settings = _split_settings(overrides, epochs=epochs, batch=batch,
                                                 img_size=img_size)
    result = run_distill(student, teacher_weights, data, out, load_train_config(config, settings),
                         DistillConfig.from_dict(distill_settings, "overrides"), weights=weights,
                         resume=resume)
    typer.echo(summary_line(result))


@exit_on_user_error
def distill_chain(
    data: Annotated[Path, typer.Option(help="dataset.yaml (see `damo data synth`).")],
    out: Annotated[Path, typer.Option(help="Root directory; one run directory per model.")] = Path(
        "runs/chain"),
    models: Annotated[str | None, typer.Option(
        help="Comma-separated chain, teacher first; each model teaches the next "
             "(default: the paper's damoyolo_l,damoyolo_m,damoyolo_s,damoyolo_t).")] = None,
    teacher_weights: Annotated[Path | None, typer.Option(
        "--teacher-weights", help="Use this trained first model instead of training it.")] = None,
    teacher_epochs: Annotated[int | None, typer.Option(
        "--teacher-epochs", help="Epochs of the first model's plain training.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of every distilled link.")] = None,
    batch: Annotated[int | None, typer.Option(help="Images per step.")] = None,
    img_size: Annotated[int | None, typer.Option("--img-size", help="Input side.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML of training settings.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue every unfinished link from its last.pt.")] = False,
    overrides: Annotated[list[str] | None, typer.Argument(
        help="key=value training settings and distill.key=value distillation settings")] = None,
) -> None:
    """Train the teacher, then distil the chain (L -> M -> S -> T); writes OUT/chain.json."""
    from damo_core.train import load_train_config
    from damo_core.train.chain import PAPER_CHAIN, run_chain
    from damo_core.train.distill import DistillConfig

    settings, distill_settings = _split_settings(overrides, epochs=epochs, batch=batch,
                                                 img_size=img_size)
    teacher_settings = dict(settings)
    if teacher_epochs is not None:
        teacher_settings["epochs"] = teacher_epochs
    chain = [m.strip() for m in models.split(",") if m.strip()] if models else PAPER_CHAIN
    links = run_chain(chain, data, out,
                      load_train_config(config, settings),
                      load_train_config(config, teacher_settings),
                      DistillConfig.from_dict(distill_settings, "overrides"),
                      teacher_weights=teacher_weights, resume=resume)
    for link in links:
        source = f"<- {link.teacher}" if link.teacher else "(trained)"
        typer.echo(f"{link.model:<12} AP {link.ap:.4f} AP50 {link.ap50:.4f} {source} "
                   f"-> {link.weights}")
    typer.echo(f"chain summary: {out / 'chain.json'}")


def _split_settings(overrides: list[str] | None, **flags: int | None
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Training settings (with the explicit flags applied) and the ``distill.*`` settings."""
    from damo_core.models.config import ConfigError
    from damo_core.train import parse_overrides

    settings: dict[str, Any] = parse_overrides(overrides or [])
    distill_settings = settings.pop("distill", {})
    if not isinstance(distill_settings, dict):
        raise ConfigError("distillation settings are given as distill.<key>=value, "
                          "e.g. distill.tau=2")
    settings.update({key: value for key, value in flags.items() if value is not None})
    return settings, distill_settings
