"""One function per pipeline step, directory in and directory out, returning artifact metadata.

KFP components (``components/<step>/component.py``) and the CLI are thin wrappers around these:
a component passes its artifacts' paths, then copies the returned dict into the artifact's
metadata, so later steps and the KFP UI read model name, classes, image size and mAP without
opening files. Keeping the glue here means the component bodies hold no logic and the local
run, the cluster run and a notebook call the same code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from damo_core.data.coco import CocoDetection, load_dataset_yaml

DATASET_YAML = "dataset.yaml"
WEIGHTS = "best.pt"


def unify_dataset(source: str, out_dir: str | Path, *, num_classes: int = 4,
                  num_images: int = 160, image_size: int = 256, seed: int = 0) -> dict[str, Any]:
    """Materialise the training data as one COCO-format dataset under ``out_dir``.

    ``source="synthetic"`` generates the bundled synthetic set; otherwise ``source`` is the
    path of a ``dataset.yaml`` whose files are validated and copied, so the artifact is
    self-contained. (Merging several sources into one label space is the unify step proper,
    damo_core.data.unify; with one source it reduces to this.)
    """
    out = Path(out_dir)
    if source == "synthetic":
        from damo_core.data.synth import generate

        generate(out, num_classes=num_classes, num_images=num_images, image_size=image_size,
                 seed=seed, overwrite=True)
    else:
        spec = load_dataset_yaml(source)
        shutil.copytree(spec.root, out, dirs_exist_ok=True)
    return dataset_metadata(out / DATASET_YAML)


def dataset_metadata(yaml_path: str | Path) -> dict[str, Any]:
    spec = load_dataset_yaml(yaml_path)
    train = CocoDetection.from_spec(spec, "train")
    val = CocoDetection.from_spec(spec, "val")
    return {"class_names": list(spec.names), "num_classes": len(spec.names),
            "num_train_images": len(train), "num_val_images": len(val)}


def resolve_backbone(model: str, out_yaml: str | Path, *, budget_params_m: float = 0.0,
                     budget_gflops: float = 0.0) -> dict[str, Any]:
    """The model config the training steps build, with its backbone structure and budgets.

    Today this emits the published (TinyNAS-searched) structure of the zoo model and checks it
    against the budgets (0 = unbounded); the MAE-NAS search writes its result through the same
    output, so the DAG does not change when it lands.
    """
    import dataclasses

    import yaml

    from damo_core.models import build_model, load_model_config
    from damo_core.models.profile import model_info

    cfg = load_model_config(model)
    info = model_info(build_model(cfg))
    for name, value, budget in (("params (M)", info.deploy_params_m, budget_params_m),
                                ("GFLOPs", info.deploy_gflops, budget_gflops)):
        if budget > 0 and value > budget:
            raise ValueError(f"{cfg.name}: deploy {name} {value:.2f} exceeds the budget {budget}")
    raw = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "source"}
    Path(out_yaml).parent.mkdir(parents=True, exist_ok=True)
    write_text(out_yaml, yaml.safe_dump(raw, sort_keys=False))
    return {"model_name": cfg.name, "image_size": cfg.image_size,
            "params_m": round(info.deploy_params_m, 3), "gflops": round(info.deploy_gflops, 3)}


def nas_step(model: str, out_yaml: str | Path, *, budget_params_m: float = 0.0,
             budget_gflops: float = 0.0, generations: int = 6, population: int = 16,
             seed: int = 0) -> dict[str, Any]:
    """The pipeline's NAS step: MAE-NAS search of ``model``'s backbone under the budgets
    (0: the paper's params/GFLOPs for that model) starting from the published structure;
    ``generations=0`` keeps the published structure, only checked against the budgets."""
    if generations <= 0:
        return resolve_backbone(model, out_yaml, budget_params_m=budget_params_m,
                                budget_gflops=budget_gflops)
    from damo_core.nas import search_for_model

    return search_for_model(model, out_yaml, budget_params_m=budget_params_m,
                            budget_gflops=budget_gflops, generations=int(generations),
                            population=int(population), seed=int(seed))


def train_model(data_dir: str | Path, out_dir: str | Path, *, model: str, settings: dict[str, Any],
                preset: str | None = None, teacher_dir: str | Path | None = None,
                distill_settings: dict[str, Any] | None = None, run_id: str | None = None,
                nodes: int = 1, gpus_per_node: int = 1, workspace_pvc: str = "",
                image: str | None = None) -> dict[str, Any]:
    """Train ``model`` (or distill it from the teacher in ``teacher_dir``) into ``out_dir``.

    ``nodes``/``gpus_per_node`` place the training (damo_core.cluster.placement): one process
    here; torchrun in this pod (one node, several GPUs); or a PyTorchJob of ``nodes`` pods
    sharing the PVC ``workspace_pvc`` and running ``image``. Every placement leaves the same
    run directory in ``out_dir``; ``run_id`` labels the training's metric pushes.
    """
    from damo_core.cluster.placement import (
        Mode,
        TrainPlacement,
        exported_env,
        train_placed,
        training_env,
    )
    from damo_core.metrics import run_id as env_run_id

    placement = TrainPlacement(nodes, gpus_per_node, workspace_pvc)
    run = run_id or env_run_id()
    config = preset_path(preset)
    teacher = Path(teacher_dir) / WEIGHTS if teacher_dir is not None else None
    if placement.mode is not Mode.IN_PROCESS:
        train_placed(placement, data_dir, out_dir, model=model, run=run, settings=settings,
                     config=config, teacher_weights=teacher, distill_settings=distill_settings,
                     image=image)
        return model_metadata(Path(out_dir) / WEIGHTS)
    from damo_core.train import load_train_config, train

    cfg = load_train_config(config, settings)
    data = Path(data_dir) / DATASET_YAML
    with exported_env(training_env(run)):
        if teacher is None:
            train(model, data, out_dir, cfg, progress=False)
        else:
            from damo_core.train.distill import DistillConfig, distill

            distill(model, teacher, data, out_dir, cfg,
                    DistillConfig.from_dict(distill_settings or {}), progress=False)
    return model_metadata(Path(out_dir) / WEIGHTS)


def model_metadata(weights: str | Path) -> dict[str, Any]:
    from damo_core.models.profile import count_params
    from damo_core.train import load_trained

    model, meta = load_trained(weights)
    ckpt_metrics = meta.get("metrics") or {}
    return {"model_name": meta["model_name"], "image_size": meta["image_size"],
            "num_classes": meta["num_classes"], "class_names": meta["class_names"],
            "params_m": round(count_params(model) / 1e6, 3), "epochs": meta["epoch"],
            "AP": ckpt_metrics.get("AP"), "AP50": ckpt_metrics.get("AP50")}


def evaluate_model(model_dir: str | Path, data_dir: str | Path,
                   out_json: str | Path | None = None,
                   run_id: str | None = None) -> dict[str, float]:
    """COCO metrics of the model in ``model_dir`` on the val split of ``data_dir``; pushed
    under the run ``run_id`` (default ``$DAMO_RUN_ID``)."""
    from damo_core.eval import evaluate
    from damo_core.train import load_trained

    model, meta = load_trained(Path(model_dir) / WEIGHTS)
    result = evaluate(model, Path(data_dir) / DATASET_YAML, split="val",
                      image_size=meta["image_size"], progress=False, workers=0)
    if out_json is not None:
        result.to_json(out_json)
    metrics = {k: float(getattr(result, k)) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
    _push("eval", metrics, meta["model_name"], "pytorch", "cpu", run_id)
    return metrics


def _push(kind: str, values: dict[str, Any], model: str, fmt: str, device: str,
          run_id: str | None = None) -> None:
    """To the Pushgateway named by $DAMO_PUSHGATEWAY (Grafana's source); a no-op without one,
    and never a reason for the step itself to fail. ``run_id`` (the pipeline passes its job
    name) wins over $DAMO_RUN_ID, which wins over ``local``."""
    from damo_core import metrics

    push = {"eval": metrics.push_eval, "latency": metrics.push_latency}[kind]
    push(values, metrics.MetricLabels(run_id or metrics.run_id(), model, fmt, device))


def export_step(model_dir: str | Path, out_dir: str | Path, *, fmt: str = "openvino",
                half: bool = False, dynamic_batch: bool = False) -> dict[str, Any]:
    """Fuse (RepConv, BN) and export the trained model in ``model_dir`` as ``fmt``.

    ``dynamic_batch`` exports a graph that takes any batch, so Triton's native variant can
    batch concurrent requests (a static batch-1 graph gets ``max_batch_size`` 1)."""
    from damo_core.export.formats import export_model
    from damo_core.train import load_trained

    model, meta = load_trained(Path(model_dir) / WEIGHTS)
    path = export_model(model.fuse(), fmt, out_dir, image_size=meta["image_size"],
                        half=half or None, dynamic_batch=dynamic_batch or None,
                        class_names=list(meta["class_names"]))
    return {"model_name": meta["model_name"], "format": fmt, "file": path.name,
            "image_size": meta["image_size"], "num_classes": meta["num_classes"],
            "class_names": meta["class_names"], "precision": "fp16" if half else "fp32",
            "dynamic_batch": bool(dynamic_batch)}


def benchmark_step(exported_dir: str | Path, *, fmt: str, image_size: int, batch: int = 1,
                   warmup: int = 5, runs: int = 30, threads: int | None = None,
                   model_name: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Latency of an exported model on this machine's runtime for ``fmt`` (no postprocess);
    pushed under the run ``run_id`` (default ``$DAMO_RUN_ID``)."""
    import dataclasses

    from damo_core.bench.latency import benchmark, host_info, make_runner, random_images
    from damo_core.serve.exported import find_model_file

    model_file = find_model_file(exported_dir)
    runner = make_runner(fmt, model_file, threads=threads, batch=batch)
    # artifact metadata travels as JSON numbers: 128 arrives as 128.0
    images = random_images(int(image_size), batch)
    stats = benchmark(runner, images, warmup=warmup, runs=runs)
    result = {"format": fmt, **dataclasses.asdict(stats), **host_info()}
    _push("latency", result, model_name or model_file.stem, fmt,
          "gpu" if fmt == "tensorrt" else "cpu", run_id)
    return result


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_gate_thresholds(map_floor: float, latency_budget_ms: float | None, *,
                          names: tuple[str, str] = ("map_floor", "latency_budget_ms")) -> None:
    """Reject a gate that could not mean anything: a floor outside [0, 1] (NaN included, which
    every comparison would wave through) or a budget that is not a finite number of ms > 0.
    ``None`` is no budget. ``names`` are what the caller calls the two (CLI options, component
    parameters), so the one-line ``ValueError`` points at what to fix."""
    import math

    floor_name, budget_name = names
    if not _is_number(map_floor) or not 0.0 <= map_floor <= 1.0:
        raise ValueError(f"{floor_name} must be a number in [0, 1], got {map_floor!r}")
    if latency_budget_ms is not None and not (
            _is_number(latency_budget_ms) and math.isfinite(latency_budget_ms)
            and latency_budget_ms > 0):
        raise ValueError(f"{budget_name} must be a finite number of ms > 0, "
                         f"got {latency_budget_ms!r}")


def gate(metrics: dict[str, float], latency_ms: float | None, *, map_floor: float,
         latency_budget_ms: float | None, metric: str = "AP50") -> tuple[bool, str]:
    """Deploy only what is accurate enough and fast enough; the reason is logged either way.

    A measured value that is not a finite number (a diverged training's NaN mAP, a broken
    benchmark's NaN or infinite latency) is a FAIL naming it: NaN compares false with
    everything, so without this it would pass. A floor or budget that is not a sensible number
    is the caller's mistake, a ``ValueError`` (see :func:`check_gate_thresholds`);
    ``latency_budget_ms=None`` means no latency budget.
    """
    import math

    check_gate_thresholds(map_floor, latency_budget_ms)
    value = metrics.get(metric)
    if value is None:
        return False, f"no {metric} in the evaluation metrics {sorted(metrics)}"
    if not _is_number(value):
        return False, f"{metric} is {value!r}, not a number"
    if not math.isfinite(value):
        return False, f"{metric} is {value}, not a finite number (did the training diverge?)"
    if not 0.0 <= value <= 1.0:
        return False, f"{metric} {value} is outside [0, 1]"
    if value < map_floor:
        return False, f"{metric} {value:.4f} is below the floor {map_floor:.4f}"
    if latency_ms is not None:
        if not _is_number(latency_ms):
            return False, f"latency is {latency_ms!r}, not a number"
        if not math.isfinite(latency_ms):
            return False, f"latency is {latency_ms} ms, not a finite number"
        if latency_ms < 0:
            return False, f"latency {latency_ms} ms is negative"
        if latency_budget_ms is not None and latency_ms > latency_budget_ms:
            return False, (f"latency {latency_ms:.2f} ms exceeds the budget "
                           f"{latency_budget_ms:.2f} ms")
    lat = "n/a" if latency_ms is None else f"{latency_ms:.2f} ms"
    budget = "(no budget)" if latency_budget_ms is None else "within budget"
    return True, f"{metric} {value:.4f} >= {map_floor:.4f} and latency {lat} {budget}"


def preset_path(preset: str | None) -> Path | None:
    """A training preset by name (``cpu_quick``) or path; ``None`` means the paper defaults."""
    if not preset:
        return None
    path = Path(preset)
    if path.suffix in (".yaml", ".yml"):
        return path
    from damo_core.resources import data_file, data_names, data_path

    if not data_file("train", "presets", f"{preset}.yaml").is_file():
        known = data_names("train", "presets", suffix=".yaml")
        raise FileNotFoundError(f"unknown training preset {preset!r}; bundled: {known}")
    return data_path("train", "presets", f"{preset}.yaml")


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    write_text(path, json.dumps(payload, indent=2, default=str))


def write_text(path: str | Path, text: str) -> None:
    from damo_core.atomic import atomic_write_text

    atomic_write_text(path, text)


def report_step(evals: list[dict[str, Any]], benches: list[dict[str, Any]],
                out_png: str | Path, out_html: str | Path | None = None) -> dict[str, Any]:
    """The latency-vs-mAP chart of a run from each model's evaluate and benchmark metadata
    (paired by position: one evaluate and one benchmark per model)."""
    import base64

    from damo_core.metrics.report import plot_latency_vs_map

    if len(evals) != len(benches):
        raise ValueError(f"report: {len(evals)} evaluations but {len(benches)} benchmarks")
    rows = [{**bench, **ev, "model": ev.get("model_name") or bench.get("model_name")}
            for ev, bench in zip(evals, benches, strict=True)]
    png = plot_latency_vs_map(rows, out_png).read_bytes()
    if out_html is not None:
        table = "".join(f"<tr><td>{r['model']}</td><td>{r.get('AP', 0):.4f}</td>"
                        f"<td>{r.get('AP50', 0):.4f}</td><td>{r.get('p50_ms', 0):.2f}</td></tr>"
                        for r in rows)
        write_text(out_html, (
            "<html><body><h3>DAMO-YOLO: latency vs mAP</h3>"
            f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"
            "<table border=1><tr><th>model</th><th>AP</th><th>AP50</th><th>p50 ms</th></tr>"
            f"{table}</table></body></html>"))
    return {"models": [r["model"] for r in rows], "format": "png"}

