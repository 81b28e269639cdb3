"""The NAS step: MAE-NAS search of a model's backbone under budgets, written as the model YAML
the training steps build.

One meaning of a budget of 0 everywhere: the paper's own cost for that model (its config's
``expect``, e.g. 8.5 M params / 18.1 GFLOPs for T; for layers, the published structure's
TinyNAS depth). The search then looks for a better backbone at the paper's cost, not a bigger
one (without a depth budget the entropy score buys depth and nothing else). The published
structure is that cost by definition, so ``generations=0``, which keeps it, checks it against
the budgets given explicitly (> 0) only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from damo_core.errors import UserInputError


def run(model: str, out: str | Path, *, budget_params_m: float = 0.0,
        budget_gflops: float = 0.0, budget_layers: int = 0, budget_latency_ms: float = 0.0,
        lut: str | Path | None = None, generations: int = 6, population: int = 16,
        seed: int = 0, score: str = "analytic", block: str | None = None,
        img_size: int | None = None, warm_start: bool = True,
        progress: bool = False) -> dict[str, Any]:
    """Write ``model``'s config with a searched backbone to ``out`` (a YAML file); beside it
    the structure (``<out>_backbone.txt``), the search log, summary and population plot.

    ``warm_start`` puts the published structure into the first population, so a few
    generations never return a backbone that scores below the paper's. Returns the artifact
    metadata (model name, costs, scores)."""
    from damo_core.models import load_model_config

    for name, value in (("budget_params_m", budget_params_m), ("budget_gflops", budget_gflops),
                        ("budget_layers", budget_layers),
                        ("budget_latency_ms", budget_latency_ms)):
        if not value >= 0:  # NaN too
            raise UserInputError(f"{name} must be >= 0 (0: the paper's), got {value}")
    if generations < 0:
        raise UserInputError(f"generations must be >= 0, got {generations}")
    cfg = load_model_config(model)
    if generations == 0:
        return _published(cfg, Path(out), budget_params_m, budget_gflops)
    return _search(cfg, Path(out), budget_params_m=budget_params_m, budget_gflops=budget_gflops,
                   budget_layers=budget_layers, budget_latency_ms=budget_latency_ms, lut=lut,
                   generations=generations, population=population, seed=seed, score=score,
                   block=block, img_size=img_size, warm_start=warm_start, progress=progress)


def _published(cfg: Any, out: Path, budget_params_m: float,
               budget_gflops: float) -> dict[str, Any]:
    import yaml

    from damo_core.models import build_model
    from damo_core.models.profile import model_info
    from damo_core.nas.budgets import BudgetError
    from damo_core.steps._common import write_text

    info = model_info(build_model(cfg))
    for name, value, budget in (("params (M)", info.deploy_params_m, budget_params_m),
                                ("GFLOPs", info.deploy_gflops, budget_gflops)):
        if budget > 0 and value > budget:
            raise BudgetError(f"{cfg.name}: deploy {name} {value:.2f} exceeds the budget "
                              f"{budget}")
    raw = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "source"}
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, yaml.safe_dump(raw, sort_keys=False))
    return {"model_name": cfg.name, "image_size": cfg.image_size,
            "params_m": round(info.deploy_params_m, 3), "gflops": round(info.deploy_gflops, 3)}


def _search(cfg: Any, out: Path, *, budget_params_m: float, budget_gflops: float,
            budget_layers: int, budget_latency_ms: float, lut: str | Path | None,
            generations: int, population: int, seed: int, score: str, block: str | None,
            img_size: int | None, warm_start: bool, progress: bool) -> dict[str, Any]:
    from damo_core.models.backbones.structure import stages_from_config
    from damo_core.nas.budgets import Budgets
    from damo_core.nas.latency_lut import LatencyTable
    from damo_core.nas.ops import count_layers
    from damo_core.nas.report import write_outputs
    from damo_core.nas.search import SearchConfig, model_config_with, run_search, write_model_yaml

    layers = budget_layers or count_layers(
        str(cfg.backbone["type"]), stages_from_config(cfg.backbone["structure"], cfg.source))
    budgets = Budgets(budget_params_m or cfg.expect.get("params_m"),
                      budget_gflops or cfg.expect.get("gflops"), layers,
                      budget_latency_ms or None)
    table = None
    if lut is not None and (budgets.latency_ms is not None or Path(lut).is_file()):
        table = LatencyTable.from_json(lut)
    config = SearchConfig(population=population, generations=generations, children=population,
                          seed=seed, score=score, warm_start=warm_start)
    result = run_search(cfg, budgets, config, block=block, image_size=img_size, latency=table,
                        progress=progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = write_outputs(result, out.with_name(f"{out.stem}_backbone.txt"))
    note = f"MAE-NAS {result.block} backbone (seed {seed}, score {result.best.score:.2f})"
    write_model_yaml(out, model_config_with(cfg, result.best.stages, note))
    costs = result.best.costs
    return {"model_name": cfg.name, "image_size": result.image_size,
            "params_m": round(costs.params_m, 3), "gflops": round(costs.gflops, 3),
            "layers": costs.layers, "latency_ms": costs.latency_ms,
            "nas_score": round(result.best.score, 4),
            "published_score": round(result.baseline.score, 4),
            "published_params_m": round(result.baseline.costs.params_m, 3),
            "published_gflops": round(result.baseline.costs.gflops, 3),
            "evaluated": result.evaluated, "seconds": round(result.seconds, 1), "seed": seed,
            "files": {k: str(v) for k, v in files.items()}}
