"""The train step: the teacher (or any model) trained from scratch or from weights."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from damo_core.metrics.mlflow_tracking import DEFAULT_EXPERIMENT
from damo_core.steps._training import Placement, clipped_as_distilled, fit, settings_for_size

CONTROL_SUFFIX = "-control"


def run(data: str | Path, out: str | Path, *, model: str,
        settings: Mapping[str, Any] | None = None, preset: str | Path | None = None,
        weights: str | Path | None = None, resume: bool = False,
        backbone: str | Path | None = None, run_id: str | None = None,
        placement: Placement | None = None, progress: bool = False,
        page: str | Path | None = None, mlflow_uri: str = "",
        mlflow_experiment: str = DEFAULT_EXPERIMENT, control: bool = False, size: str = "",
        size_settings: Mapping[str, Any] | None = None,
        distill_settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train ``model`` (zoo name or model YAML) on ``data`` (a ``dataset.yaml`` or the
    directory holding one) into ``out``: last.pt, best.pt, results.csv/png, metrics.json and
    TensorBoard event files in tensorboard/; ``page``, when given, gets an HTML page of them.

    ``preset`` is a bundled preset name (``cpu_quick``) or a YAML of settings, ``settings``
    override it (``{"epochs": 3, "augment": {"mosaic_prob": 0}}``). ``backbone`` is a TinyNAS
    structure file (``damo nas`` writes one) that replaces the model's backbone. ``run_id``
    labels the training's metric pushes and, with ``mlflow_uri``, tags the MLflow run the
    training logs to (in ``mlflow_experiment``; the export and gate steps find it by that tag
    and the model's name). Returns the model's metadata (name, classes, AP; the MLflow run's
    id and page when logged).

    ``control``: this training is the pipeline's control, a distilled student's twin trained
    alone so the report can say what distillation bought; its run id gets ``-control``
    appended, so its pushed metrics and MLflow run never mix with the distilled model's, which
    has the same name. ``size``/``size_settings``: the student size the control stands in for
    and the pipeline's per-size settings, laid over ``settings`` as for its distilled twin.
    ``distill_settings``: the twin's distillation settings; the control takes their gradient
    clip unless the training settings set their own, as the twin does
    (:func:`~damo_core.steps._training.clipped_as_distilled`).
    """
    if control:
        from damo_core.metrics import run_id as env_run_id

        run_id = f"{run_id or env_run_id()}{CONTROL_SUFFIX}"
        if distill_settings is not None:
            settings = clipped_as_distilled(settings_for_size(settings, size_settings, size),
                                            preset, distill_settings)
            size_settings = None  # laid over already
    if backbone is not None:
        from damo_core.nas.search import model_yaml_with_backbone

        model = str(model_yaml_with_backbone(model, backbone, Path(out) / "model.yaml"))
    meta = fit(data, out, model=model, settings=settings, preset=preset, teacher=None,
               distill_settings=None, weights=weights, resume=resume, run_id=run_id,
               placement=placement or Placement(), progress=progress, page=page,
               mlflow_uri=mlflow_uri, mlflow_experiment=mlflow_experiment,
               size=size, size_settings=size_settings)
    return {**meta, "control": True} if control else meta
