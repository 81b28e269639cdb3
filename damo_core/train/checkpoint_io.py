"""Training checkpoints: written atomically, carrying what is needed to resume or to rebuild.

A checkpoint holds the raw weights (``model``), the EMA weights (``ema``, what inference loads),
optimiser state, progress counters and the model's config, so ``damo eval --weights best.pt``
needs no other file and a crash while writing never corrupts the previous checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from damo_core.atomic import atomic_path
from damo_core.data.fit import LEGACY_FIT, check_fit, model_fit, set_model_fit
from damo_core.errors import InputNotFoundError, UserInputError
from damo_core.models import Detector, build_model
from damo_core.models.checkpoint import convert_state_dict, read_torch_file
from damo_core.models.checkpoint_format import check_plain
from damo_core.models.config import ConfigError, ModelConfig, config_from_dict


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename: never a torn checkpoint.

    Only plain data is written, so every reader can load it with ``weights_only=True``.
    """
    check_plain(obj, str(path))
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def model_meta(model: Detector, class_names: list[str], image_size: int) -> dict[str, Any]:
    """What a checkpoint says about its model. ``fit`` is how inputs were fitted in training
    (``letterbox`` or ``stretch``, see :mod:`damo_core.data.fit`); every consumer fits the
    same way. A checkpoint without it predates the field and gets ``LEGACY_FIT``."""
    cfg = model.config
    assert cfg is not None
    raw = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "source"}
    return {"model_name": cfg.name, "model_config": raw, "num_classes": len(class_names),
            "class_names": list(class_names), "image_size": image_size,
            "fit": model_fit(model)}


def checkpoint_fit(ckpt: dict[str, Any], path: str | Path) -> str:
    """The checkpoint's input fit: its ``fit`` field, ``LEGACY_FIT`` (letterbox, what the
    evaluator always did) for checkpoints written before the field existed."""
    try:
        return check_fit(ckpt.get("fit", LEGACY_FIT))
    except UserInputError as err:
        raise UserInputError(f"{path}: field fit: {err}") from None


def load_trained(path: str | Path, *, use_ema: bool = True) -> tuple[Detector, dict[str, Any]]:
    """Rebuild a model saved by the trainer and load its (EMA) weights; returns it and the
    checkpoint's metadata (class names, image size, metrics)."""
    return model_from_checkpoint(read_checkpoint(path), path, use_ema=use_ema)


def load_fused(path: str | Path, *, use_ema: bool = True) -> tuple[Detector, dict[str, Any]]:
    """:func:`load_trained` with RepConv branches and BatchNorms folded (``Detector.fuse``):
    the graph that is deployed, several times cheaper than the training graph and equal to it
    up to float rounding; for prediction and evaluation, never for training on."""
    model, meta = load_trained(path, use_ema=use_ema)
    return model.fuse(), meta


def read_checkpoint(path: str | Path) -> Any:
    """The object in a weights file, read safely (tensors and plain data only); a missing,
    unreadable or code-carrying file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"weights file {path} does not exist")
    return read_torch_file(path)


def model_from_checkpoint(ckpt: Any, path: str | Path, *,
                          use_ema: bool = True) -> tuple[Detector, dict[str, Any]]:
    """:func:`load_trained` on a checkpoint already read from ``path`` (named in errors).

    The model carries the checkpoint's input fit (:func:`damo_core.data.fit.model_fit`), so
    ``evaluate``, ``predict`` and the exporters given only the model fit inputs the way it was
    trained; ``meta["fit"]`` says the same, legacy checkpoints included."""
    if not isinstance(ckpt, dict) or "model_config" not in ckpt:
        raise ConfigError(
            f"{path}: not a damo training checkpoint (no 'model_config'); to load reference "
            "weights build the model by name and use damo_core.models.checkpoint.load_checkpoint"
        )
    cfg: ModelConfig = config_from_dict(ckpt["model_config"], source=f"{path}:model_config")
    model = build_model(cfg, num_classes=ckpt["num_classes"])
    field = "ema" if use_ema and ckpt.get("ema") is not None else "model"
    # A tampered or mixed-up file (weights of another model under this config) gets one
    # line naming what differs, not torch's page of key lists.
    model.load_state_dict(convert_state_dict(model, ckpt[field], f"{path}:{field}"))
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "ema", "optimizer")}
    meta["fit"] = checkpoint_fit(ckpt, path)
    set_model_fit(model, meta["fit"])
    return model.eval(), meta
