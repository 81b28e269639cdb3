"""The library calls behind ``damo nas search`` and ``damo nas lut`` (argument parsing stays in
``damo_core.cli.nas_cmds``; this is what a notebook or a pipeline step calls)."""

from __future__ import annotations

from pathlib import Path

from damo_core.models.config import load_model_config
from damo_core.nas.budgets import Budgets, backbone_graph_kwargs, parse_count
from damo_core.nas.latency_lut import LatencyTable, calibrate, measure_table, space_ops
from damo_core.nas.report import write_outputs
from damo_core.nas.search import SearchConfig, run_search, space_for
from damo_core.nas.space import DEFAULT_MODELS, SPACES


def budgets_from_cli(params: str | None, flops: str | None, layers: int | None,
                     latency_ms: float | None) -> Budgets:
    """``8.5M`` params and ``18G`` FLOPs (whole deploy model) into a :class:`Budgets`."""
    return Budgets(
        params_m=parse_count(params, "--budget-params") / 1e6 if params else None,
        gflops=parse_count(flops, "--budget-flops") / 1e9 if flops else None,
        layers=layers, latency_ms=latency_ms)


def _model_for(block: str, model: str | None) -> str:
    if block not in SPACES:
        raise ValueError(f"--block {block!r}: expected one of {sorted(SPACES)}")
    return model or DEFAULT_MODELS[block]


def search_to_files(block: str, model: str | None, budgets: Budgets, out: Path, *,
                    lut: Path | None, image_size: int | None, population: int,
                    generations: int, seed: int, score: str) -> str:
    """Run the search and write its files; the latency table is used when a latency budget is
    set (then it must exist) or when it exists (for the plot and the log)."""
    table = None
    if lut is not None and (budgets.latency_ms is not None or lut.is_file()):
        table = LatencyTable.from_json(lut)
    config = SearchConfig(population=population, generations=generations,
                          children=population, seed=seed, score=score)
    result = run_search(_model_for(block, model), budgets, config, block=block,
                        image_size=image_size, latency=table)
    paths = write_outputs(result, out)
    c, p = result.best.costs, result.baseline.costs
    latency = f", {c.latency_ms:.1f} ms" if c.latency_ms is not None else ""
    return (f"best score {result.best.score:.2f} (published {result.model}: "
            f"{result.baseline.score:.2f}); {c.params_m:.2f}M params, {c.gflops:.2f} GFLOPs, "
            f"{c.layers} layers{latency} (published {p.params_m:.2f}M, {p.gflops:.2f} GFLOPs); "
            f"{result.evaluated} candidates in {result.seconds:.0f}s\n"
            + "\n".join(f"{k}: {v}" for k, v in paths.items()))


def measure_lut(device: str, block: str, model: str | None, image_size: int | None,
                threads: int, runs: int, out: Path) -> str:
    cfg = load_model_config(_model_for(block, model))
    space = space_for(cfg, block)
    size = image_size or cfg.image_size
    kwargs = backbone_graph_kwargs(cfg)
    ops = space_ops(space.backbone_type, space, size, kwargs)
    table = measure_table(ops, device=device, threads=threads, runs=runs)
    scale = calibrate(table, space.backbone_type, space, size,
                      {k: v for k, v in cfg.backbone.items() if k not in ("type", "structure")})
    table.meta.update(block=block, model=cfg.name, image_size=size)
    path = table.to_json(out)
    return (f"{path}: {len(table.points)} op classes, "
            f"{sum(map(len, table.points.values()))} points, calibration scale {scale:.3f}")
