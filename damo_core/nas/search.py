"""Evolutionary MAE-NAS search: keep the best-scoring structures that fit every budget.

The loop is TinyNAS's: start from the space's cheapest structure, pick a parent (the best of a
few drawn at random), mutate one property of one stage, drop the child if it breaks a budget or
was seen before, score it, and keep the ``population`` best. Everything random comes from one
``random.Random(seed)``, and ties sort by the structure itself, so a seed fixes the result.
"""

from __future__ import annotations

import dataclasses
import random
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from damo_core.atomic import atomic_write_text
from damo_core.models.backbones.structure import StageSpec, stages_to_config
from damo_core.models.config import ConfigError, ModelConfig, load_model_config
from damo_core.nas.budgets import Budgets, CostModel, Costs, check_reachable, violations
from damo_core.nas.latency_lut import LatencyTable, LatencyTableError
from damo_core.nas.score import (
    DAMO_YOLO_WEIGHTS,
    ScoreBreakdown,
    forward_entropy_score,
    madnas_score,
)
from damo_core.nas.space import SPACES, SearchSpace, minimal_structure, mutate
from damo_core.settings import Settings

Score = Literal["analytic", "forward"]
SCORES: tuple[str, ...] = typing.get_args(Score)
_TYPE_TO_BLOCK = {space.backbone_type: name for name, space in SPACES.items()}


@dataclass(frozen=True)
class SearchConfig(Settings):
    noun = "search setting"

    population: int = 64
    generations: int = 40
    children: int = 64  # candidates drawn per generation
    tournament: int = 4
    seed: int = 0
    score: Score = "analytic"
    weights: tuple[float, ...] = DAMO_YOLO_WEIGHTS
    # False: grow from the minimal structure, as TinyNAS does (the benchmark's claim is made so).
    # True: the published structure joins the first population when it fits the budgets, so a
    # short search (the pipeline's few generations) can only improve on it, never regress.
    warm_start: bool = False

    def check(self) -> None:
        for name in ("population", "generations", "children", "tournament"):
            self.require(getattr(self, name) >= 1, name, "must be >= 1")


@dataclass(frozen=True)
class Candidate:
    stages: list[StageSpec]
    score: float
    costs: Costs

    @property
    def key(self) -> tuple[tuple[Any, ...], ...]:
        return structure_key(self.stages)


@dataclass
class SearchResult:
    model: str
    block: str
    image_size: int
    budgets: Budgets
    config: SearchConfig
    best: Candidate
    population: list[Candidate]
    baseline: Candidate  # the model's published structure, priced and scored the same way
    log: list[dict[str, Any]] = field(default_factory=list)
    evaluated: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "block": self.block, "image_size": self.image_size,
                "budgets": self.budgets.as_dict(), "seed": self.config.seed,
                "population": self.config.population, "generations": self.config.generations,
                "score_kind": self.config.score, "best_score": self.best.score,
                "best_costs": self.best.costs.as_dict(),
                "best_structure": stages_to_config(self.best.stages),
                "published_score": self.baseline.score,
                "published_costs": self.baseline.costs.as_dict(),
                "evaluated": self.evaluated, "seconds": round(self.seconds, 2)}


def structure_key(stages: list[StageSpec]) -> tuple[tuple[Any, ...], ...]:
    return tuple((s.block, s.in_channels, s.out_channels, s.stride, s.kernel, s.depth, s.btn)
                 for s in stages)


def space_for(cfg: ModelConfig, block: str | None) -> SearchSpace:
    """The space of ``block``, which must be the one ``cfg``'s backbone type builds."""
    backbone_type = str(cfg.backbone.get("type"))
    expected = _TYPE_TO_BLOCK.get(backbone_type)
    if expected is None:
        raise ConfigError(f"{cfg.source}: backbone.type = {backbone_type!r} has no NAS space; "
                         f"known: {sorted(_TYPE_TO_BLOCK)}")
    if block is not None and block != expected:
        raise ConfigError(f"--block {block}: model {cfg.name} builds a {backbone_type} "
                          f"backbone, whose block is {expected!r}; pass --model of a {block} "
                          "model")
    return SPACES[expected]


class Scorer:
    """One scoring convention for a whole search (and for the published baseline). Mob
    structures are scored as the TinyNAS k1kx text they are written in, as the published nano
    files were searched."""

    def __init__(self, cfg: ModelConfig, config: SearchConfig) -> None:
        self.focus = (cfg.backbone["type"] != "tinynas_mob"
                      and bool(cfg.backbone.get("use_focus", True)))
        self.config = config

    def __call__(self, stages: list[StageSpec]) -> ScoreBreakdown:
        if self.config.score == "forward":
            return forward_entropy_score(stages, focus_stem=self.focus,
                                         weights=self.config.weights, seed=self.config.seed)
        return madnas_score(stages, focus_stem=self.focus, weights=self.config.weights)


def run_search(model: str | Path | ModelConfig, budgets: Budgets, config: SearchConfig, *,
               block: str | None = None, image_size: int | None = None,
               latency: LatencyTable | None = None, precision: str = "fp32",
               progress: bool = True) -> SearchResult:
    """Search ``model``'s backbone under ``budgets`` (its neck and head stay as configured).
    ``latency`` must have been measured at ``precision``, the arithmetic the searched model
    will be deployed in: block rankings can differ between fp32 and bf16."""
    from tqdm import tqdm

    started = time.perf_counter()
    cfg = model if isinstance(model, ModelConfig) else load_model_config(model)
    space = space_for(cfg, block)
    if budgets.latency_ms is not None and latency is None:
        raise LatencyTableError("--budget-latency-ms needs a latency table: measure one with "
                                "`damo nas-lut --device cpu` and pass it with --lut")
    if latency is not None:
        latency.require(precision)
    if not cfg.backbone.get("reparam", True):
        space = space.with_kernels((3, 5))
    pricer = CostModel(cfg, image_size, latency)
    scorer = Scorer(cfg, config)
    seed = minimal_structure(space)
    check_reachable(pricer.costs(seed), budgets, space.block)
    rng = random.Random(config.seed)

    def evaluate(stages: list[StageSpec]) -> Candidate:
        return Candidate(stages, scorer(stages).total, pricer.costs(stages))

    population = [evaluate(seed)]
    seen = {population[0].key}
    published = evaluate(pricer.published_structure())
    if config.warm_start and not violations(published.costs, budgets):
        population.append(published)
        seen.add(published.key)
    result = SearchResult(cfg.name, space.block, pricer.image_size, budgets, config,
                          population[0], population, published)
    bar = tqdm(range(config.generations), desc=f"MAE-NAS {space.block}", disable=not progress)
    for generation in bar:
        for _ in range(config.children):
            pool = rng.sample(population, min(config.tournament, len(population)))
            parent = max(pool, key=_rank)
            child = mutate(parent.stages, space, rng)
            key = structure_key(child)
            if key in seen:
                continue
            seen.add(key)
            result.evaluated += 1
            costs = pricer.costs(child)
            if violations(costs, budgets):
                continue
            population.append(Candidate(child, scorer(child).total, costs))
        population = sorted(population, key=_rank, reverse=True)[: config.population]
        best = population[0]
        result.log.append({"generation": generation, "score": best.score,
                           **best.costs.as_dict(), "evaluated": result.evaluated,
                           "population": len(population)})
        bar.set_postfix(score=f"{best.score:.1f}", gflops=f"{best.costs.gflops:.2f}")
    result.population, result.best = population, population[0]
    result.seconds = time.perf_counter() - started
    return result


def _rank(c: Candidate) -> tuple[float, tuple[tuple[Any, ...], ...]]:
    return c.score, c.key


def model_config_with(cfg: ModelConfig, stages: list[StageSpec], note: str) -> dict[str, Any]:
    """``cfg`` as a YAML-ready dict whose backbone is ``stages`` (inline, so checkpoints that
    embed the config stay self-contained)."""
    raw = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "source"}
    backbone = {k: v for k, v in raw["backbone"].items() if k != "structure_file"}
    backbone["structure"] = stages_to_config(stages)
    raw["backbone"] = backbone
    raw["description"] = f"{raw.get('description') or cfg.name}; {note}".strip("; ")
    raw["expect"] = {}  # the published numbers no longer describe this model
    return raw


def write_model_yaml(path: str | Path, raw: dict[str, Any]) -> Path:
    return atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False))


def model_yaml_with_backbone(model: str | Path, structure_file: str | Path,
                             out_yaml: str | Path) -> Path:
    """Write ``model``'s config with the backbone structure read from ``structure_file``
    (``damo train --backbone``); the structure is inlined so the checkpoint is self-contained."""
    from damo_core.models.backbones.structure import read_structure_file

    cfg = load_model_config(model)
    stages = read_structure_file(structure_file)
    return write_model_yaml(out_yaml, model_config_with(cfg, stages, f"backbone {structure_file}"))
