"""The unify step: the training data as one manifest directory in ``out``.

Whatever the sources, the output is the same: Parquet manifests over one label space with the
sampling weights, ``label_space.json``, class counts, plots and ``summary.json``
(:mod:`damo_core.data.unify`). Images are never copied into it; its rows name them where they
lie (local paths or ``s3://`` URIs), which is what keeps a 700 GB source out of every step's
artifact store.

Sources, as users arrive with them: several ``NAME[:FORMAT]=URI`` sources (unified over
``label_space``: a preset name, a mapping CSV, or empty to propose one from the class names),
one ``dataset.yaml`` (COCO) or ultralytics ``data.yaml`` (its own classes and splits), or
``synthetic``: the bundled generator, whose images go to the user's cache
(:func:`damo_core.data.resolve.cache_root`), keyed by its settings, not into the artifact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from damo_core.data.errors import DatasetError
from damo_core.data.sampling import SamplingSettings
from damo_core.errors import UserInputError

SYNTHETIC = "synthetic"


def run(sources: Sequence[str], out: str | Path, *, label_space: str = "",
        num_classes: int = 4, num_images: int = 160, image_size: int = 256, seed: int = 0,
        object_scale: str = "coco", sampling: SamplingSettings | Mapping[str, Any] | None = None,
        skip_invalid: bool = False, report_md: str | Path | None = None) -> dict[str, Any]:
    """Unify ``sources`` into the manifest directory ``out``; returns its metadata (class
    names, images and boxes per split and source, name collisions of a proposed label
    space). ``num_classes``/``num_images``/``image_size`` size the synthetic set and
    ``object_scale`` its objects (:data:`damo_core.data.synth.OBJECT_SCALES`); ``seed``
    (the split), ``sampling`` (:class:`~damo_core.data.sampling.SamplingSettings` or its
    mapping) and ``skip_invalid`` apply to unification. ``report_md`` receives the page the
    KFP UI shows (per-source counts, dropped classes, collisions, sampling plots)."""
    from damo_core.data.resolve import convert_yaml

    sources = [s for s in sources if s]
    if not sources:
        raise UserInputError("unify: no source given (synthetic, a dataset.yaml or data.yaml, "
                             "or NAME=URI sources with a label space)")
    settings = (sampling if isinstance(sampling, SamplingSettings)
                else SamplingSettings.from_dict(sampling, "sampling"))
    options = {"alpha": settings.alpha, "rfs_threshold": settings.threshold,
               "sampling": settings.enabled}
    collisions: list[dict[str, Any]] = []
    if sources == [SYNTHETIC]:
        yaml_path = _synthetic(num_classes=num_classes, num_images=num_images,
                               image_size=image_size, seed=seed, object_scale=object_scale)
        convert_yaml(yaml_path, out, **options)
    elif len(sources) == 1 and "=" not in sources[0]:
        convert_yaml(_yaml_of(sources[0]), out, skip_invalid=skip_invalid, **options)
    else:
        collisions = _unify_sources(sources, label_space, out,
                                    val_fraction=settings.val_fraction, seed=seed,
                                    skip_invalid=skip_invalid, **options)
    if report_md is not None:
        from damo_core.atomic import atomic_write_text
        from damo_core.data.unify_report import unify_markdown

        atomic_write_text(report_md, unify_markdown(str(out), collisions))
    return {**dataset_metadata(out), "collisions": collisions}


def _yaml_of(source: str) -> Path:
    path = Path(source)
    if path.is_dir():
        found = [path / n for n in ("dataset.yaml", "data.yaml") if (path / n).is_file()]
        if found:
            return found[0]
    if not path.is_file():
        raise DatasetError(f"unify: source {source!r} is neither {SYNTHETIC!r}, an existing "
                           "dataset.yaml / data.yaml, nor NAME[:FORMAT]=URI")
    return path


def _synthetic(*, num_classes: int, num_images: int, image_size: int, seed: int,
               object_scale: str) -> Path:
    """The generated set's dataset.yaml, made once per settings in the user's cache."""
    from damo_core.data.resolve import cache_root
    from damo_core.data.synth import generate

    settings = f"{num_classes}|{num_images}|{image_size}|{seed}"
    # the default keeps the key it had before scales existed: caches stay valid
    settings += "" if object_scale == "coco" else f"|{object_scale}"
    key = hashlib.sha256(settings.encode())
    root = cache_root() / "synthetic" / key.hexdigest()[:16]
    if not (root / "dataset.yaml").is_file():
        generate(root, num_classes=num_classes, num_images=num_images, image_size=image_size,
                 seed=seed, overwrite=True, object_scale=object_scale)
    return root / "dataset.yaml"


def _unify_sources(sources: Sequence[str], label_space: str, out: str | Path, *,
                   val_fraction: float, seed: int, skip_invalid: bool, alpha: float,
                   rfs_threshold: float, sampling: bool) -> list[dict[str, Any]]:
    """Unify; returns the name collisions of a proposed label space (none for a given one)."""
    from damo_core.data.unify import unify

    for source in sources:
        if "=" not in source:
            raise UserInputError(f"unify: source {source!r} is not NAME[:FORMAT]=URI; "
                                 f"{SYNTHETIC!r} and a dataset.yaml stand alone")
    space: Any = label_space
    collisions: list[dict[str, Any]] = []
    if not label_space:
        proposal = _proposed(sources, skip_invalid)
        space, collisions = proposal.label_space, proposal.collisions
    unify(list(sources), space, out, alpha=alpha, rfs_threshold=rfs_threshold,
          sampling=sampling, val_fraction=val_fraction, seed=seed, skip_invalid=skip_invalid,
          progress=False)
    return collisions


def _proposed(sources: Sequence[str], skip_invalid: bool) -> Any:
    """A label space proposed from the sources' class names (no mapping given)."""
    from damo_core.data.formats import open_source, parse_source
    from damo_core.data.labelspace import propose

    specs = [parse_source(s) for s in sources]
    readers = {s.name: (s.format, open_source(s, skip_invalid=skip_invalid).classes)
               for s in specs}
    return propose(readers)


def dataset_metadata(manifest: str | Path) -> dict[str, Any]:
    """Class names, per-split image counts and per-source images and boxes of a manifest."""
    import json

    from damo_core.data.unify import read_summary
    from damo_core.storage import open_store

    summary = read_summary(manifest)
    space = json.loads(open_store(manifest).read_text("label_space.json"))
    names = [c["name"] for c in space["classes"]]
    splits = summary.get("splits", {})
    return {"class_names": names, "num_classes": len(names),
            "num_train_images": splits.get("train", 0), "num_val_images": splits.get("val", 0),
            "num_boxes": summary["num_boxes"],
            "sources": {k: {"images": v["images"], "boxes": v["boxes"]}
                        for k, v in summary["sources"].items()}}
