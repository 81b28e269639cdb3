"""Write a Triton model repository for an exported detector: four models, one writer.

Layout for a model called ``damoyolo_s`` (see :mod:`damo_core.serve.model_config` for the
tensors)::

    repo/damoyolo_s/config.pbtxt                  ensemble: encoded image -> boxes
    repo/damoyolo_s/1/
    repo/damoyolo_s_preprocess/{config.pbtxt,1/model.py}
    repo/damoyolo_s_detector/config.pbtxt
    repo/damoyolo_s_detector/<v>/model.onnx       one numbered directory per deployed export
    repo/damoyolo_s_postprocess/{config.pbtxt,1/model.py}

``variant="native"`` is for the official Triton image in the cluster: the detector runs on
Triton's own ``onnxruntime_onnx`` / ``openvino`` / ``tensorrt_plan`` backend. ``variant=
"python"`` is for the CPU-only ``tritonserver`` of the ``nvidia-pytriton`` wheel, which has
only the Python backend: the detector directory then also holds a ``model.py`` that runs the
same file with ONNX Runtime or OpenVINO. Pre- and postprocessing are Python-backend models in
both variants (in the cluster the Triton image needs this package installed).

The postprocess config also carries, as ``default_score_threshold``, the score threshold the
export recorded for its model (the best-F1 confidence of the checkpoint's training, see
:func:`recorded_threshold`), which clients use when they are not given one.

Nothing is half-written: configs are validated before the first write, a new version is
assembled in a hidden staging directory (``.staging-<version>-<pid>-*``, see
:mod:`~damo_core.serve.staging`), checked and renamed into place (Triton ignores names that
are not numbers), and every ``config.pbtxt`` is replaced atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damo_core.atomic import atomic_write_text
from damo_core.errors import OutputExistsError, UserInputError
from damo_core.export.common import DEFAULT_THRESHOLD_KEY, score_threshold_or_none
from damo_core.serve import model_config as mc
from damo_core.serve import staging
from damo_core.serve.exported import ExportedModel, read_embedded_metadata
from damo_core.serve.python_models import MODEL_PY

CONFIG = "config.pbtxt"


@dataclass(frozen=True)
class RepositoryEntry:
    """Where one deployment's models live and which detector version was written."""

    repo: Path
    names: mc.ModelNames
    version: int
    variant: str
    changed: tuple[str, ...] = ()  # models whose files this write changed, in load order

    def model_dir(self, name: str) -> Path:
        return self.repo / name

    @property
    def version_dir(self) -> Path:
        return self.repo / self.names.detector / str(self.version)


def environment_paths() -> list[str]:
    """Directories the Python backend stub must add so that ``model.py`` imports this
    environment: site-packages (``addsitedir`` also runs their ``.pth`` files, which is how an
    editable install is found) and the directory holding ``damo_core`` itself."""
    import damo_core

    paths = [*site.getsitepackages(), str(Path(damo_core.__file__).resolve().parents[1])]
    return list(dict.fromkeys(paths))


def detector_versions(repo: str | Path, model_name: str) -> list[int]:
    """The detector's numbered version directories, ascending."""
    root = Path(repo) / mc.ModelNames(model_name).detector
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


def recorded_threshold(model: ExportedModel,
                       metadata: Mapping[str, Any] | None = None) -> float | None:
    """The default score threshold the export recorded for ``model``: from the caller's
    metadata (the export step's artifact metadata) when it has one, as in
    :meth:`ExportedModel.from_dir`, else from the file's embedded metadata.

    ``None`` when there is none: the checkpoint's training measured none, the export is of
    reference weights or random init, or was made before the threshold was recorded, or its
    file's metadata cannot be read. An invalid recorded value (not a number in [0, 1]) is
    dropped with a warning rather than deployed."""
    given = (metadata or {}).get(DEFAULT_THRESHOLD_KEY)
    if given is None:
        try:
            given = read_embedded_metadata(model.path, model.fmt).get(DEFAULT_THRESHOLD_KEY)
        except Exception:  # noqa: BLE001 - from_dir already accepted the file without it
            return None
    threshold = score_threshold_or_none(given)
    if given is not None and threshold is None:
        warnings.warn(f"{model.path}: recorded {DEFAULT_THRESHOLD_KEY} {given!r} is not a score "
                      "threshold in [0, 1]; deploying without one (clients use 0.3)",
                      stacklevel=2)
    return threshold


def build_configs(model: ExportedModel, *, variant: str, options: mc.ServingOptions,
                  sys_path: list[str] | None = None,
                  default_score_threshold: float | None = None) -> dict[str, str]:
    """``{model name: config.pbtxt text}`` for the four models, validated.
    ``default_score_threshold`` goes into the postprocess config for clients (``None``: left
    out); it is a fact about the model, so it is passed here, not as a serving option."""
    if variant not in mc.VARIANTS:
        raise UserInputError(f"unknown repository variant {variant!r}; expected one of "
                             f"{list(mc.VARIANTS)}")
    names = mc.ModelNames(model.model_name)
    # The native variant's Python models run in the Triton image's own environment.
    paths = (environment_paths() if sys_path is None else sys_path) if variant == "python" \
        else []
    params = {"sys_path": json.dumps(paths)}
    max_batch = mc.batch_capacity(model, options, variant)
    configs: list[Mapping[str, Any]] = [
        mc.detector_config(model, names, options, variant, params),
        mc.preprocess_config(model, names, max_batch, params),
        mc.postprocess_config(model, names, options, max_batch, params,
                              default_score_threshold=default_score_threshold),
        mc.ensemble_config(names, options, max_batch),
    ]
    return {str(cfg["name"]): mc.to_pbtxt(cfg) for cfg in configs}


def write_repository(exported: ExportedModel | str | Path, repo: str | Path, *,
                     variant: str = "python", version: int | None = None,
                     options: mc.ServingOptions | None = None,
                     metadata: Mapping[str, Any] | None = None,
                     sys_path: list[str] | None = None) -> RepositoryEntry:
    """Add ``exported`` (a directory from the export step, or its :class:`ExportedModel`) to
    ``repo`` as detector version ``version`` (default: the next number) and (re)write the four
    configs. ``metadata`` is the export step's artifact metadata, if at hand (also with an
    :class:`ExportedModel`: it may hold the recorded default score threshold)."""
    model = exported if isinstance(exported, ExportedModel) else ExportedModel.from_dir(
        exported, metadata)
    configs = build_configs(model, variant=variant, options=options or mc.ServingOptions(),
                            sys_path=sys_path,
                            default_score_threshold=recorded_threshold(model, metadata))
    root = Path(repo)
    names = mc.ModelNames(model.model_name)
    existing = detector_versions(root, model.model_name)
    version = version if version is not None else (existing[-1] + 1 if existing else 1)
    if version <= 0:
        raise UserInputError(f"model versions are positive integers, got {version}")
    target = root / names.detector / str(version)
    if target.exists():
        raise OutputExistsError(f"{target} already exists: versions are immutable, deploy a new "
                                "one instead of overwriting")
    files = {f"model{path.suffix if model.fmt != 'tensorrt' else '.plan'}": path
             for path in model.files}
    extra = {"model.py": MODEL_PY} if variant == "python" else {}
    _write_version_dir(target, files, extra)
    staging.fault_point("renamed")
    changed = {names.detector}
    for name in (names.preprocess, names.postprocess):
        if _write_version_dir(root / name / "1", {}, {"model.py": MODEL_PY}, replace=True):
            changed.add(name)
    (root / names.ensemble / "1").mkdir(parents=True, exist_ok=True)
    for name, text in configs.items():
        if write_if_changed(root / name / CONFIG, text):
            changed.add(name)
    return RepositoryEntry(root, names, version, variant,
                           tuple(n for n in names.all if n in changed))


def write_if_changed(path: Path, text: str) -> bool:
    """Atomically replace ``path`` only when its text differs: Triton reloads a model whose
    files are newer than its load, and each reload of a Python model restarts its stub."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(path, text)
    return True


def _write_version_dir(target: Path, files: Mapping[str, Path], texts: Mapping[str, str], *,
                       replace: bool = False) -> bool:
    """Assemble a version directory beside ``target`` and rename it into place.

    With ``replace`` an existing directory's text files are swapped atomically one by one
    (a loaded model keeps its directory; only changed files are rewritten). Returns whether
    anything changed.
    """
    if replace and target.is_dir():
        return any([write_if_changed(target / name, text) for name, text in texts.items()])
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=staging.staging_prefix(target.name), dir=target.parent))
    try:
        for name, source in files.items():
            shutil.copyfile(source, tmp / name)
        for name, text in texts.items():
            (tmp / name).write_text(text, encoding="utf-8")
        staging.verify_copy(files, tmp)
        os.chmod(tmp, 0o755)
        staging.fault_point("staged")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True
