"""What several steps share: where a step finds its inputs, how it writes and pushes results.

A step's input may be named the way its caller naturally has it: the pipeline hands over
artifact directories (``dataset/``, ``model/``), a user on the command line names files
(``dataset.yaml``, ``best.pt``). Resolving both here keeps one entry per step for both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from damo_core.errors import InputNotFoundError

DATASET_YAML = "dataset.yaml"
WEIGHTS = "best.pt"


def dataset_ref(data: str | Path) -> str:
    """The manifest directory (or ``s3://`` URI) training reads for ``data``: a manifest (the
    unify step's output), a dataset.yaml or data.yaml, or a directory holding one."""
    from damo_core.data.resolve import manifest_for

    return manifest_for(data)


def weights_file(weights: str | Path) -> Path:
    """``weights`` itself when it is a file, else the ``best.pt`` in that directory."""
    return _file_or_member(weights, WEIGHTS, "weights")


def _file_or_member(path: str | Path, member: str, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / member
    if not path.is_file():
        raise InputNotFoundError(f"{what} file {path} does not exist")
    return path


def preset_path(preset: str | Path | None) -> Path | None:
    """A training preset by name (``cpu_quick``) or a settings file (a ``.yaml`` name, an
    existing file or anything with a directory in it); empty means the paper's defaults. A
    name that is not bundled fails here, listing the bundled ones."""
    if not preset:
        return None
    path = Path(preset)
    if path.suffix in (".yaml", ".yml") or path.is_file() or len(path.parts) > 1:
        if not path.is_file():
            raise InputNotFoundError(f"training settings file {path} does not exist")
        return path
    from damo_core.resources import data_file, data_names, data_path

    if not data_file("train", "presets", f"{preset}.yaml").is_file():
        known = data_names("train", "presets", suffix=".yaml")
        raise InputNotFoundError(f"unknown training preset {str(preset)!r}; bundled: {known}")
    return data_path("train", "presets", f"{preset}.yaml")


def push(kind: str, values: dict[str, Any], model: str, fmt: str, device: str,
         run_id: str | None = None) -> None:
    """To the Pushgateway named by $DAMO_PUSHGATEWAY (Grafana's source); a no-op without one,
    and never a reason for the step itself to fail. ``run_id`` (the pipeline passes its job
    name) wins over $DAMO_RUN_ID, which wins over ``local``."""
    from damo_core import metrics

    sender = {"eval": metrics.push_eval, "latency": metrics.push_latency}[kind]
    sender(values, metrics.MetricLabels(run_id or metrics.run_id(), model, fmt, device))


def model_metadata(weights: str | Path) -> dict[str, Any]:
    """What the later steps and the KFP UI read about a trained model without opening it."""
    from damo_core.models.profile import count_params
    from damo_core.train import load_trained

    model, meta = load_trained(weights)
    ckpt_metrics = meta.get("metrics") or {}
    return {"model_name": meta["model_name"], "image_size": meta["image_size"],
            "num_classes": meta["num_classes"], "class_names": meta["class_names"],
            "params_m": round(count_params(model) / 1e6, 3), "best_epoch": meta["epoch"],
            "AP": ckpt_metrics.get("AP"), "AP50": ckpt_metrics.get("AP50")}


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    write_text(path, json.dumps(payload, indent=2, default=str))
    return Path(path)


def write_text(path: str | Path, text: str) -> None:
    from damo_core.atomic import atomic_write_text

    atomic_write_text(path, text)


def read_json_file(path: str | Path, what: str) -> Any:
    """A JSON file a user named; missing or malformed is one line naming it."""
    from damo_core.errors import UserInputError

    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{what} file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserInputError(f"{path}: not JSON ({err})") from None
