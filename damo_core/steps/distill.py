"""The distill step: a student trained with a frozen teacher's neck features (CWD, paper 2.4),
then fine-tuned without mosaic and without the teacher."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from damo_core.metrics.mlflow_tracking import DEFAULT_EXPERIMENT
from damo_core.steps._training import Placement, fit


def run(data: str | Path, out: str | Path, *, model: str, teacher: str | Path,
        settings: Mapping[str, Any] | None = None,
        distill_settings: Mapping[str, Any] | None = None, preset: str | Path | None = None,
        weights: str | Path | None = None, resume: bool = False, run_id: str | None = None,
        placement: Placement | None = None, progress: bool = False,
        page: str | Path | None = None, mlflow_uri: str = "",
        mlflow_experiment: str = DEFAULT_EXPERIMENT, size: str = "",
        size_settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Distil ``teacher`` (a ``best.pt`` or the directory holding one) into ``model`` on
    ``data``, into ``out``. ``distill_settings``: weight_start, weight_end, tau, levels,
    grad_clip (damo_core.train.distill.DistillConfig); the rest (``page`` and MLflow
    included) as the train step; the MLflow run's parameters add the teacher's weights and
    the distillation settings. ``size``: the student's size (M, S or T), whose entry of
    ``size_settings`` is laid over ``settings``. Returns the student's metadata, naming its
    teacher."""
    meta = fit(data, out, model=model, settings=settings, preset=preset, teacher=teacher,
               distill_settings=distill_settings, weights=weights, resume=resume,
               run_id=run_id, placement=placement or Placement(), progress=progress,
               page=page, mlflow_uri=mlflow_uri, mlflow_experiment=mlflow_experiment,
               size=size, size_settings=size_settings)
    from damo_core.steps._common import weights_file
    from damo_core.train.checkpoint_io import read_checkpoint

    meta["teacher"] = read_checkpoint(weights_file(teacher)).get("model_name")
    return meta
