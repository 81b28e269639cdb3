"""What the train and distill steps share: settings, placement and the run's metadata.

``nodes``/``gpus_per_node`` place the training (damo_core.cluster.placement): one process
here; torchrun in this pod (one node, several GPUs); or a job of ``nodes`` pods (``job_kind``:
a PyTorchJob or a Trainer v2 TrainJob) sharing the PVC ``workspace_pvc`` and running
``image``. Every placement leaves the same run directory in ``out``, so both steps return the
same metadata whichever ran, and the same TensorBoard event files (``out/tensorboard``) for the
optional HTML ``page`` of them.

With ``mlflow_uri`` the training is also an MLflow run (damo_core.metrics.mlflow_tracking),
checked before anything starts: logged live, epoch by epoch, when it trains in this process;
from its run directory once it ends when torchrun or a job trained it, since those processes
are started without the URI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damo_core.metrics.mlflow_tracking import DEFAULT_EXPERIMENT
from damo_core.steps._common import (
    WEIGHTS,
    dataset_ref,
    model_metadata,
    preset_path,
    weights_file,
)

STUDENT_SIZES = ("M", "S", "T")  # the distilled sizes, which share the students' settings


def settings_for_size(settings: Mapping[str, Any] | None,
                      per_size: Mapping[str, Any] | None, size: str, *,
                      source: str = "student_size_settings") -> dict[str, Any]:
    """``settings`` with ``per_size[size]`` laid over it, nested sections (``augment``) merged
    key by key. The students share one set of settings so that their comparison is fair, yet
    at a small scale they do not learn at one pace (M gains least per epoch), so a size may
    change what it needs, such as its epochs. ``source`` names ``per_size`` in errors."""
    from damo_core.errors import UserInputError

    layers = dict(per_size or {})
    unknown = sorted(set(layers) - set(STUDENT_SIZES))
    if unknown:
        raise UserInputError(f"{source}: unknown size {unknown[0]!r}; the students' sizes are "
                             f"{list(STUDENT_SIZES)}")
    layer = layers.get(size) or {}
    if not isinstance(layer, Mapping):
        raise UserInputError(f"{source}.{size} = {layer!r}: must be a mapping of training "
                             "settings")
    return _laid_over(dict(settings or {}), layer)


def clipped_as_distilled(settings: Mapping[str, Any] | None, preset: str | Path | None,
                         distill_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``settings`` (already laid over for the size) with ``grad_clip`` set to what a distilled
    twin trains with (:func:`damo_core.train.distill.distill_clip`, over the preset too). A
    control trained without it is not the distilled student minus its teacher: on raw-pixel
    input M's gradient norm often exceeds 30, and the clip alone moved M's AP50 by 0.3 in the
    local run (damo_core.train.distill, "Gradient clipping")."""
    from damo_core.train import load_train_config
    from damo_core.train.distill import DistillConfig, distill_clip

    out = dict(settings or {})
    dcfg = DistillConfig.from_dict(dict(distill_settings or {}), "distill_settings")
    train_clip = load_train_config(preset_path(preset), out).grad_clip
    return {**out, "grad_clip": distill_clip(train_clip, dcfg)}


def _laid_over(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        below = out.get(key)
        out[key] = _laid_over(dict(below), value) if isinstance(value, Mapping) and \
            isinstance(below, Mapping) else value
    return out


@dataclass(frozen=True)
class Placement:
    """Where a training runs; the defaults train in this process."""

    nodes: int = 1
    gpus_per_node: int = 1
    workspace_pvc: str = ""
    image: str | None = None
    job_kind: str = "pytorchjob"


def fit(data: str | Path, out: str | Path, *, model: str,
        settings: Mapping[str, Any] | None, preset: str | Path | None,
        teacher: str | Path | None, distill_settings: Mapping[str, Any] | None,
        weights: str | Path | None, resume: bool, run_id: str | None,
        placement: Placement, progress: bool, page: str | Path | None,
        mlflow_uri: str = "", mlflow_experiment: str = DEFAULT_EXPERIMENT, size: str = "",
        size_settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train (``teacher`` None) or distil ``model`` on ``data`` into ``out``. Every setting is
    loaded and checked before the first batch, wherever the training then runs. ``page``: write
    an HTML page of the run's TensorBoard events there (for the components' KFP UI view).
    ``mlflow_uri``: log the training to that MLflow server too (tagged with the run id and the
    model), and add ``mlflow_run_id`` (and ``mlflow_run_url``) to the metadata. The metadata
    names the precision the forward trained in (``train_precision``: fp32, bf16 or fp16), which
    the ``cpu_precision`` setting may leave to ``auto``. ``size_settings``: per student size,
    settings laid over ``settings`` for ``size`` (:func:`settings_for_size`)."""
    from damo_core.cluster.placement import (
        Mode,
        TrainPlacement,
        train_placed,
        training_env,
    )
    from damo_core.environ import exported_env
    from damo_core.metrics import run_id as env_run_id
    from damo_core.metrics.mlflow_tracking import checkpoint_params, training_logged
    from damo_core.train import load_train_config
    from damo_core.train.distill import DistillConfig

    where = TrainPlacement(placement.nodes, placement.gpus_per_node, placement.workspace_pvc,
                           job_kind=placement.job_kind)
    data_ref = dataset_ref(data)
    config = preset_path(preset)
    settings = settings_for_size(settings, size_settings, size)
    cfg = load_train_config(config, settings)
    dcfg = DistillConfig.from_dict(dict(distill_settings or {}), "distill_settings")
    teacher_file = weights_file(teacher) if teacher is not None else None
    run = run_id or env_run_id()
    # what the trainer cannot say about itself (Trainer.run_params says the rest)
    extras = {"data": data_ref, "preset": str(preset or ""), "weights": str(weights or "")}
    mlflow_log = training_logged(mlflow_uri, mlflow_experiment, run_id=run, params=extras)
    if where.mode is not Mode.IN_PROCESS:
        with mlflow_log as logged:  # the server is checked before the job starts
            train_placed(where, data_ref, out, model=model, run=run, settings=settings,
                         config=config, teacher_weights=teacher_file,
                         distill_settings=distill_settings, image=placement.image)
            if logged is not None:
                logged.replay(out, checkpoint_params(Path(out) / WEIGHTS))
        from damo_core.train.checkpoint_io import read_checkpoint

        ran = read_checkpoint(Path(out) / WEIGHTS).get("train_precision")
        return _finished(out, page, {**model_metadata(Path(out) / WEIGHTS), "epochs": cfg.epochs,
                                     "train_precision": ran,
                                     **(logged.info() if logged else {})})
    from damo_core.train import train
    from damo_core.train.distill import distill

    with exported_env(training_env(run)), mlflow_log as logged:
        if teacher_file is None:
            result = train(model, data_ref, out, cfg, weights=weights, resume=resume,
                           progress=progress)
        else:
            result = distill(model, teacher_file, data_ref, out, cfg, dcfg, weights=weights,
                             resume=resume, progress=progress)
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # under torchrun only rank 0 writes best.pt; the others report what they saw
        return {"model_name": Path(str(model)).stem, "rank": rank, "AP": result.best_ap,
                "AP50": result.best_ap50, "epochs": result.epochs,
                "train_precision": result.precision}
    return _finished(out, page, {**model_metadata(Path(out) / WEIGHTS), "epochs": result.epochs,
                                 "train_precision": result.precision,
                                 **(logged.info() if logged else {})})


def _finished(out: str | Path, page: str | Path | None, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta``, once ``page`` (when given) holds the KFP UI's view of the run: KFP v2 has no
    TensorBoard output type, so the event files in ``out/tensorboard`` are rendered as HTML."""
    if page is not None:
        from damo_core.train.tracking import LOG_DIR, write_page

        write_page(Path(out) / LOG_DIR, page, title=f"{meta['model_name']}: training curves")
    return meta
