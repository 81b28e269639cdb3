"""The benchmark step: latency of deploy graphs (no postprocess) on this machine's runtimes.

Two inputs, one step: an export directory (what the pipeline hands over; timed in its own
format) or a checkpoint / zoo model timed side by side across runtimes (each exported on the
way), with the speed-up over PyTorch eager. Both give the same report: ``rows``, one per
runtime, and the host it ran on, since a latency means nothing without its CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_FORMATS = ("pytorch", "onnx", "openvino")


def run(source: str | Path | None, *, model: str | None = None,
        formats: Sequence[str] | None = None, img_size: int | None = None, batch: int = 1,
        runs: int = 30, warmup: int = 5, threads: int | None = None,
        data: str | Path | None = None, num_classes: int | None = None,
        out_json: str | Path | None = None, run_id: str | None = None,
        precision: str | None = None) -> dict[str, Any]:
    """Time ``source``: an export directory (``formats`` must then be empty) or a checkpoint
    (``best.pt`` or its directory; with ``model``, reference weights; ``model`` alone: random
    init) in each of ``formats``. Returns the report: ``rows`` plus, at the top level, the
    numbers of the export (or of the last runtime) -- what the gate reads. An export's latency
    is pushed under the run ``run_id`` (default ``$DAMO_RUN_ID``); ``out_json`` gets the
    report (a directory, or a path without ``.json``: ``MODEL_SIZE_bBATCH.json`` in it).
    An export runs at the precision recorded in it, or ``precision`` (``bf16`` for a float
    OpenVINO IR; :func:`damo_core.eval.engine.runtime_precision`)."""
    if source is not None and _is_export(Path(source)):
        if formats:
            from damo_core.errors import UserInputError

            raise UserInputError(f"{source} is an export; its format is fixed, drop --format "
                                 f"{list(formats)}")
        report = _time_export(Path(source), img_size, batch, runs, warmup, threads, run_id,
                              precision)
    else:
        if precision is not None:
            from damo_core.errors import UserInputError

            raise UserInputError("--precision applies to an export; for a checkpoint name "
                                 "FORMAT:PRECISION targets, e.g. --format openvino:bf16")
        report = _time_runtimes(source, model, list(formats or DEFAULT_FORMATS), img_size,
                                batch, runs, warmup, threads, data, num_classes)
    if out_json is not None:
        from damo_core.steps._common import write_json

        path = Path(out_json)
        if path.suffix != ".json":
            path = path / f"{report['model_name']}_{report['image_size']}_b{batch}.json"
        report["report"] = str(write_json(path, report))
    return report


def _is_export(path: Path) -> bool:
    from damo_core.serve.exported import FORMAT_BY_SUFFIX

    return path.is_dir() and any(p.suffix in FORMAT_BY_SUFFIX for p in path.iterdir())


def _time_export(exported: Path, img_size: int | None, batch: int, runs: int, warmup: int,
                 threads: int | None, run_id: str | None,
                 precision: str | None) -> dict[str, Any]:
    import dataclasses

    from damo_core.bench.latency import benchmark, host_info, make_runner, random_images
    from damo_core.eval.engine import export_precision
    from damo_core.serve.exported import ExportedModel
    from damo_core.steps._common import push

    export = ExportedModel.from_dir(exported)
    runs_at = export_precision(export, precision)
    runner = make_runner(export.fmt, export.path, threads=threads, batch=batch,
                         precision=runs_at)
    size = int(img_size or export.image_size)
    stats = dataclasses.asdict(benchmark(runner, random_images(size, batch), warmup=warmup,
                                         runs=runs))
    host = host_info()
    row = {"model": export.model_name, "format": export.fmt, "precision": runs_at,
           "image_size": size, "threads": threads, **stats,
           "speedup_vs_baseline": None}
    push("latency", row, export.model_name, export.fmt,
         "gpu" if export.fmt == "tensorrt" else "cpu", run_id)
    return {**row, **host, "model_name": export.model_name, "host": host, "rows": [row]}


def _time_runtimes(source: str | Path | None, model: str | None, formats: list[str],
                   img_size: int | None, batch: int, runs: int, warmup: int,
                   threads: int | None, data: str | Path | None,
                   num_classes: int | None) -> dict[str, Any]:
    from damo_core.bench.latency import run_benchmarks
    from damo_core.bench.report import report_doc
    from damo_core.export.formats import load_source
    from damo_core.steps._common import weights_file

    loaded = load_source(weights_file(source) if source is not None else None, model,
                         num_classes)
    results = run_benchmarks(loaded.model, formats, image_size=img_size or loaded.image_size,
                             batch=batch, runs=runs, warmup=warmup, threads=threads, data=data)
    doc = report_doc(results)
    host = results[0].host if results else {}
    return {**doc["rows"][-1], **host, "model_name": loaded.model.name, "host": host, **doc}
