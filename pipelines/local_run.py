"""Run the same pipeline function on this machine with KFP's local runner, then summarise it.

``kfp.local.SubprocessRunner(use_venv=False)`` executes every component body in this Python
environment, passing real artifacts between them under ``pipeline_root``; the DAG, the
component code and the artifact metadata are exactly the cluster's.

``containers=True`` swaps only the runner: ``kfp.local.DockerRunner`` runs every step in its
image (the cluster's ``base_image``, built locally by scripts/images.sh) and Triton runs from
its image; see :mod:`pipelines.containers`. Parameters, DAG, progress and summary are shared.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from damo_core.data.blob_cache import CACHE_DIR_ENV
from damo_core.environ import exported_env
from damo_core.serve.local_server import LocalTriton, stop_on_signals
from pipelines.damo_pipeline import PIPELINE_NAME, damo_pipeline
from pipelines.progress import StepProgress, count_steps

TRITON_REPOSITORY = "triton-repository"

# Reduced sizes so the whole DAG (four trainings included) fits minutes on 2 CPU cores.
LOCAL_BUCKET = "damo-local"
LOCAL_PARAMS: dict[str, Any] = {
    "preset": "cpu_quick",
    "synth_images": 270,  # in all, over the three embedded sources
    # Half of them (~135 images) in val: with ~30, a model's AP50 moved by 0.1-0.15 between
    # evaluations, more than the distilled-vs-alone gaps it has to tell apart. On ~150 training
    # images the default rare-class threshold (0.001, for sets of millions) leaves no class
    # rare: 0.1 makes repeat-factor sampling draw the rarest class's images more often, as it
    # would on a large set.
    "sampling": {"val_fraction": 0.5, "rfs_threshold": 0.1},
    # object areas drawn at 3-26 % of the image: at 96 px COCO's small objects are a few
    # pixels, which no model learns in minutes (damo_core.data.synth, "coarse")
    "synth_object_scale": "coarse",
    # 96 px and batch 8 (twice cpu_quick's steps per epoch): in trials on 2 cores L reached a
    # higher AP50 in the same epochs at 5e-4-6e-4 per image than at cpu_quick's 2.5e-4 or at
    # 1e-3. No loader workers: at 96 px without mosaic a batch takes milliseconds to build,
    # less than starting workers each epoch (samples are the same either way). Epochs: the
    # teacher clearly stronger than its students alone (L AP50 0.75 after 40 epochs; M, S, T
    # alone and unclipped 0.67, 0.65, 0.57 after 20, 12, 12 on a 2-core AMD EPYC with
    # AVX-512). Distilled vs alone per link, clip included: README, "Distillation, export,
    # latency".
    "teacher_settings": {"epochs": 40, "img_size": 96, "no_aug_epochs": 2, "batch": 8,
                         "lr_per_image": 5e-4, "workers": 0},
    # grad_clip: the reference clips distillation at norm 30 (the control takes that clip from
    # the distillation settings anyway; written here so the students' settings say it), so the
    # distilled-vs-alone comparison differs only by the teacher (M's gradient norm is often
    # above 30 at this scale, and the clip costs M alone AP50 0.31).
    "student_settings": {"epochs": 12, "img_size": 96, "no_aug_epochs": 2, "batch": 8,
                         "lr_per_image": 5e-4, "workers": 0, "grad_clip": 30.0},
    "student_size_settings": {"M": {"epochs": 20}},
    # a short run: the reference's 1.0 -> 0.1 stalls the students' classification loss
    # (damo_core.train.distill, "Weight"). Levels: strides 16 and 32 only; at 96 px the
    # stride-8 map (12x12) cost every link in trials (README, "Distillation, export, latency").
    "distill_settings": {"weight_start": 0.1, "weight_end": 0.01, "levels": [1, 2]},
    "map_floor": 0.0,
    "nas_generations": 3,  # a short MAE-NAS search per size (seconds on a CPU)
}


@dataclass
class TaskRecord:
    task: str
    outputs: dict[str, Any]
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class LocalRun:
    run_dir: Path
    seconds: float
    tasks: list[TaskRecord]
    # containers only: executor label -> image it ran in; every step container's exit
    images: dict[str, str] = field(default_factory=dict)
    exits: list[Any] = field(default_factory=list)

    def by_prefix(self, prefix: str) -> list[TaskRecord]:
        return [t for t in self.tasks if t.task == prefix or t.task.startswith(prefix + "-")]


class StepRunner(Protocol):
    """Where the steps and the Triton server run: this Python environment, or containers
    (:class:`pipelines.containers.InContainers`)."""

    pipeline: Any

    def server(self, repo: Path, log_path: Path) -> LocalTriton: ...

    def runner(self, admin_key: str) -> Any: ...

    def watch(self) -> AbstractContextManager[Any]: ...

    def step_images(self) -> dict[str, str]: ...


class InProcess:
    """KFP's ``SubprocessRunner`` in this environment; Triton from the nvidia-pytriton wheel.
    The steps inherit ``os.environ``, where the server leaves its admin key."""

    pipeline = damo_pipeline

    def server(self, repo: Path, log_path: Path) -> LocalTriton:
        return LocalTriton(repo, log_path=log_path)

    def runner(self, admin_key: str) -> Any:
        from kfp import local

        return local.SubprocessRunner(use_venv=False)

    def watch(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def step_images(self) -> dict[str, str]:
        return {}


def step_runner(containers: bool, gpu_image: str | None = None) -> StepRunner:
    """In-process, or in containers (checks the daemon and the images first)."""
    if not containers:
        return InProcess()
    from pipelines.containers import InContainers

    return InContainers(damo_pipeline, gpu_image)


def run_local(params: dict[str, Any] | None = None,
              pipeline_root: str | Path = "runs/pipeline", *, containers: bool = False,
              gpu_image: str | None = None,
              serving: Callable[[LocalTriton], None] | None = None) -> LocalRun:
    """Run the DAG here; ``containers``: each step in its image (``gpu_image``: the image
    the training steps run in when not ``DAMO_GPU_IMAGE``). ``serving`` is called with the
    server after the last step, while it still serves what the run deployed (the server
    lives only as long as the run)."""
    from kfp import local

    mode = step_runner(containers, gpu_image)
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    started = time.perf_counter()
    repo = root / TRITON_REPOSITORY
    repo.mkdir(exist_ok=True)
    # The deploy steps load models into a real Triton server on 127.0.0.1 (the CPU build from
    # the nvidia-pytriton wheel, Python-backend variant of the repository) for the whole run.
    # SIGTERM/SIGHUP stop it like Ctrl-C (process group killed, temporary directory removed).
    run_params = {**LOCAL_PARAMS, **(params or {})}
    with stop_on_signals(), mode.server(repo, root / "tritonserver.log") as server, \
            mode.watch() as exits, StepProgress(root, count_steps(_spec_dict())), \
            _cache_visible_to_steps(root if containers else None), \
            embedded_sources(root, run_params) as data_params:
        local.init(runner=mode.runner(server.admin_key), pipeline_root=str(root),
                   raise_on_error=True)
        mode.pipeline(**{**run_params, **data_params, "triton_repository": str(repo),
                         "triton_url": server.grpc_url, "triton_variant": "python"})
        if serving is not None:
            serving(server)
    seconds = time.perf_counter() - started
    new_runs = sorted(p for p in set(root.iterdir()) - before
                      if p.is_dir() and p.name.startswith(PIPELINE_NAME))
    if not new_runs:
        raise RuntimeError(f"the local run left no run directory under {root}")
    return LocalRun(new_runs[-1], seconds, collect_tasks(new_runs[-1]), mode.step_images(),
                    list(getattr(exits, "exits", [])))


@contextlib.contextmanager
def embedded_sources(root: Path, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The embedded default's data, unless ``params`` names ``sources``: three small sources
    in their native formats (COCO JSON, Objects365 JSON, OpenImages CSV; overlapping,
    ambiguous and long-tailed classes, :mod:`damo_core.data.synth_sources`), sized by
    ``synth_images`` (in all), ``synth_image_size`` and ``synth_object_scale``, uploaded to a
    moto S3 endpoint on 127.0.0.1 that lives as long as the run. The local copy is deleted
    once uploaded, so the run reads every image from S3, as a cluster run would. Yields the
    ``sources`` and ``label_space`` parameters that unify them by URI."""
    if "sources" in params:
        yield {}
        return
    import shutil
    import tempfile

    from damo_core.data.synth_sources import generate_sources, upload_sources
    from damo_core.storage.local_s3 import local_s3
    from damo_core.storage.s3 import S3Store

    with local_s3(root / "s3-server.log"):
        S3Store(LOCAL_BUCKET).ensure_bucket()
        base = f"s3://{LOCAL_BUCKET}/sources"
        scratch = Path(tempfile.mkdtemp(prefix="damo-sources-"))
        try:
            made = generate_sources(scratch / "sources",
                                    images_per_source=max(2, int(params["synth_images"]) // 3),
                                    image_size=int(params.get("synth_image_size", 256)),
                                    seed=int(params.get("seed", 0)),
                                    object_scale=params.get("synth_object_scale", "coco"))
            specs = upload_sources(made, base)
            label_space = made.label_space_at(base)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        yield {"sources": list(specs), "label_space": label_space}


@contextlib.contextmanager
def _cache_visible_to_steps(root: Path | None) -> Iterator[None]:
    """Step containers see only the pipeline root (mounted at its own path), so the data the
    steps generate or cache (the synthetic set, converted datasets, S3 images) goes under it
    for the run; ``DAMO_*`` variables reach the containers. ``None``: leave it as it is."""
    if root is None:
        yield
        return
    with exported_env({CACHE_DIR_ENV: str(root / ".cache")}):
        yield


def _spec_dict() -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(damo_pipeline.pipeline_spec)


def collect_tasks(run_dir: Path) -> list[TaskRecord]:
    """Read every finished task's ``executor_output.json`` (parameters and artifact metadata)."""
    records = []
    # rglob: tasks inside a dsl.If group (deploy) sit one directory deeper
    for out_file in sorted(run_dir.rglob("executor_output.json")):
        payload = json.loads(out_file.read_text())
        artifacts = {
            name: {"uri": entry["artifacts"][0]["uri"], **entry["artifacts"][0].get("metadata", {})}
            for name, entry in payload.get("artifacts", {}).items() if entry.get("artifacts")
        }
        records.append(TaskRecord(out_file.parent.name, payload.get("parameterValues", {}),
                                  artifacts))
    return records


def summary_rows(run: LocalRun) -> list[dict[str, Any]]:
    """Per model: AP, AP50, latency, params, GFLOPs, gate result — the README's final table."""
    rows: dict[str, dict[str, Any]] = {}
    for rec in run.by_prefix("nas"):
        meta = rec.artifacts.get("model_config", {})
        rows.setdefault(meta.get("model_name", rec.task), {}).update(
            params_m=meta.get("params_m"), gflops=meta.get("gflops"))
    for rec in run.by_prefix("evaluate"):
        meta = rec.artifacts.get("metrics", {})
        rows.setdefault(meta.get("model_name", rec.task), {}).update(
            AP=meta.get("AP"), AP50=meta.get("AP50"))
    for rec in run.by_prefix("benchmark"):
        meta = rec.artifacts.get("metrics", {})
        rows.setdefault(meta.get("model_name", rec.task), {}).update(
            latency_ms=meta.get("p50_ms"), runtime=meta.get("format"))
    for rec in run.by_prefix("gate"):
        meta = rec.artifacts.get("verdict", {})
        rows.setdefault(meta.get("model_name", rec.task), {}).update(
            gate="pass" if rec.outputs.get("Output") else "FAIL", gate_reason=meta.get("reason"))
    for rec in run.by_prefix("deploy"):
        meta = rec.artifacts.get("deployment", {})
        rows.setdefault(meta.get("model_name", rec.task), {}).update(
            served=f"v{meta.get('version')} {meta.get('status')}")
    for rec in run.by_prefix("train") + run.by_prefix("distill"):
        meta = rec.artifacts.get("model", {})
        if meta.get("control"):  # the student trained alone: distillation_summary's row
            continue
        rows.setdefault(meta.get("model_name", rec.task), {}).update(
            weights=meta.get("uri"), teacher=meta.get("teacher"))
    return [{"model": name, **values} for name, values in rows.items()]


def distillation_summary(run: LocalRun) -> dict[str, Any]:
    """The report step's teacher-vs-student rows per link and its control row (the last
    student trained alone against its distilled twin); empty when the report did not run."""
    for rec in run.by_prefix("report"):
        chart = rec.artifacts.get("chart", {})
        return {"links": chart.get("links") or [], "control": chart.get("control")}
    return {"links": [], "control": None}
