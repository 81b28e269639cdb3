"""The unify step: the training data as one COCO-format dataset (``dataset.yaml``) in ``out``.

Three kinds of source, because that is what users arrive with: ``synthetic`` (the bundled
generator, the laptop default), the path of one ``dataset.yaml`` (validated and copied, so the
artifact is self-contained), or several ``NAME[:FORMAT]=URI`` sources with a ``label_space``:
those are unified into Parquet manifests over one label space (``out/unified``, with the
sampling weights) and the COCO dataset the trainer reads is written from them.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from damo_core.errors import UserInputError
from damo_core.steps._common import DATASET_YAML

SYNTHETIC = "synthetic"
MANIFESTS = "unified"


def run(sources: Sequence[str], out: str | Path, *, label_space: str = "",
        num_classes: int = 4, num_images: int = 160, image_size: int = 256, seed: int = 0,
        val_fraction: float = 0.05, alpha: float = 0.5, rfs_threshold: float = 0.001,
        skip_invalid: bool = False) -> dict[str, Any]:
    """Materialise ``sources`` under ``out``; returns the dataset's metadata (class names and
    image counts). ``num_classes``/``num_images``/``image_size`` size the synthetic set;
    ``val_fraction``, ``alpha``, ``rfs_threshold`` and ``skip_invalid`` apply to unification."""
    sources = [s for s in sources if s]
    out = Path(out)
    if not sources:
        raise UserInputError("unify: no source given (synthetic, a dataset.yaml, or "
                             "NAME=URI sources with a label space)")
    if sources == [SYNTHETIC]:
        from damo_core.data.synth import generate

        generate(out, num_classes=num_classes, num_images=num_images, image_size=image_size,
                 seed=seed, overwrite=True)
    elif len(sources) == 1 and "=" not in sources[0]:
        from damo_core.data.coco import load_dataset_yaml

        shutil.copytree(load_dataset_yaml(sources[0]).root, out, dirs_exist_ok=True)
    else:
        _unify_sources(sources, label_space, out, val_fraction=val_fraction, seed=seed,
                       alpha=alpha, rfs_threshold=rfs_threshold, skip_invalid=skip_invalid)
    return dataset_metadata(out / DATASET_YAML)


def _unify_sources(sources: Sequence[str], label_space: str, out: Path, *, val_fraction: float,
                   seed: int, alpha: float, rfs_threshold: float, skip_invalid: bool) -> None:
    from damo_core.data.formats.coco_export import export_coco
    from damo_core.data.unify import unify

    if not label_space:
        raise UserInputError("unify: several sources need a label space (a mapping CSV from "
                             "`damo data labelspace`, or preset:NAME)")
    for source in sources:
        if "=" not in source:
            raise UserInputError(f"unify: source {source!r} is not NAME[:FORMAT]=URI; "
                                 f"{SYNTHETIC!r} and a dataset.yaml stand alone")
    manifests = out / MANIFESTS
    unify(list(sources), label_space, manifests, alpha=alpha, rfs_threshold=rfs_threshold,
          skip_invalid=skip_invalid, progress=False)
    export_coco(manifests, out, val_fraction=val_fraction, seed=seed)


def dataset_metadata(yaml_path: str | Path) -> dict[str, Any]:
    from damo_core.data.coco import CocoDetection, load_dataset_yaml

    spec = load_dataset_yaml(yaml_path)
    train = CocoDetection.from_spec(spec, "train")
    val = CocoDetection.from_spec(spec, "val")
    return {"class_names": list(spec.names), "num_classes": len(spec.names),
            "num_train_images": len(train), "num_val_images": len(val)}
