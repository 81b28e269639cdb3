"""MAE-NAS must-show numbers: reference score parity, latency-model accuracy, T-budget search.

1. Analytic score of the seven published DAMO-YOLO backbones vs TinyNAS's own scorer (fixture
   computed once by the reference code, tests/nas/data/reference_madnas_scores.json).
2. Latency table vs measurement: predicted and measured (thread CPU time, min of --rounds
   round-robin passes) latency of 10 random fused res backbones at --image-size on this CPU;
   the error must stay within ±20%. The machine is shared: run with ``nice -n 0`` and read the
   numbers as noisy (see ``latency_check`` for the same-window calibration).
3. A search at DAMO-YOLO-T's budget (whole model <= 18 GFLOPs and 8.5 M params, <= 20 TinyNAS
   layers, backbone latency <= the published T backbone's on this CPU — T's 5 ms is a T4 GPU
   figure, unreachable here, which the search reports as an error, shown too); prints time,
   budgets, best and published scores, and checks every reported candidate.

    nice -n 0 python benchmarks/nas_search.py --lut runs/nas/lut_cpu.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from damo_core.models import load_model_config
from damo_core.models.backbones.structure import (
    parse_tinynas,
    stages_from_config,
    stages_to_config,
)
from damo_core.nas.budgets import BudgetError, Budgets, backbone_graph_kwargs, violations
from damo_core.nas.latency_lut import LatencyTable, build_fused_backbone, measure_modules_ms
from damo_core.nas.ops import backbone_ops
from damo_core.nas.score import madnas_score
from damo_core.nas.search import SearchConfig, run_search
from damo_core.nas.space import SPACES, random_structure

FIXTURE = Path(__file__).resolve().parent.parent / "tests/nas/data/reference_madnas_scores.json"


def score_parity() -> None:
    print("== 1. analytic score vs TinyNAS reference (DAMO-YOLO weights 0,0,1,1,16, with nbits)")
    data = json.loads(FIXTURE.read_text())
    worst = 0.0
    for model, entry in data.items():
        if model.startswith("_"):
            continue
        ours = madnas_score(parse_tinynas(entry["structure_text"]),
                            focus_stem=entry["focus_stem"]).total
        ref = entry["score_nbits1_w001116"]
        worst = max(worst, abs(ours - ref) / abs(ref))
        print(f"  {model:12s} {entry['file']:24s} ours {ours:12.6f}  reference {ref:12.6f}  "
              f"rel diff {abs(ours - ref) / abs(ref):.1e}")
    print(f"  worst relative difference {worst:.1e} (limit 1e-6): "
          f"{'PASS' if worst <= 1e-6 else 'FAIL'}")


def latency_check(table: LatencyTable, image_size: int, count: int, rounds: int) -> None:
    """This shared machine's speed drifts by ~±20% over minutes (neighbours' load, SMT, memory
    bandwidth), which moves every backbone alike. So the table's calibration scale is re-fitted
    on 6 *other* random backbones (seed 1000, as `damo nas lut` does) measured in the same
    round-robin passes as the 10 checked ones (seed 123); errors with the table's stored scale
    are printed too."""
    print(f"== 2. latency table vs measured, {count} random res backbones @ {image_size}, "
          f"{table.threads} thread(s), min of {rounds} round-robin passes, "
          f"clock {table.meta.get('clock')}")
    cfg = load_model_config("damoyolo_t")
    kwargs = {k: v for k, v in cfg.backbone.items() if k not in ("type", "structure")}
    rng_c, rng_v = random.Random(1000), random.Random(123)
    calib = [random_structure(SPACES["res"], rng_c) for _ in range(6)]
    checked = [random_structure(SPACES["res"], rng_v) for _ in range(count)]
    modules = [build_fused_backbone("tinynas_res", s, kwargs) for s in calib + checked]
    measured = measure_modules_ms(modules, image_size, threads=table.threads, rounds=rounds)
    stored = float(table.meta.get("scale", 1.0))

    def raw(stages: list) -> float:  # summed op times, no scale
        ops = backbone_ops("tinynas_res", stages, image_size, **kwargs)
        return table.predict_ms(ops) / stored

    ratios = sorted(m / raw(s) for m, s in zip(measured, calib, strict=False))
    scale = ratios[len(ratios) // 2]
    print(f"  scale: stored {stored:.3f} (fitted at `damo nas lut` time), refitted now "
          f"{scale:.3f} on the 6 calibration backbones")
    worst = worst_stored = 0.0
    for i, (stages, ms) in enumerate(zip(checked, measured[len(calib):], strict=True)):
        err, err_stored = scale * raw(stages) / ms - 1, stored * raw(stages) / ms - 1
        worst, worst_stored = max(worst, abs(err)), max(worst_stored, abs(err_stored))
        widths = [s.out_channels for s in stages]
        depths = [s.depth for s in stages[1:]]
        print(f"  #{i:2d} widths {widths} depths {depths}: predicted {scale * raw(stages):7.1f} "
              f"ms, measured {ms:7.1f} ms, error {100 * err:+5.1f}% "
              f"(stored scale: {100 * err_stored:+5.1f}%)")
    print(f"  worst |error| {100 * worst:.1f}% (limit 20%): {'PASS' if worst <= 0.2 else 'FAIL'}"
          f"; with the stored scale {100 * worst_stored:.1f}%")


def t_budget_search(table: LatencyTable, generations: int, population: int, seed: int) -> None:
    cfg = load_model_config("damoyolo_t")
    t_stages = stages_from_config(cfg.backbone["structure"], cfg.source)
    t_latency = table.predict_ms(backbone_ops("tinynas_res", t_stages, cfg.image_size,
                                              **backbone_graph_kwargs(cfg)))
    print("== 3. search at the DAMO-YOLO-T budget")
    started = time.perf_counter()  # from here: includes the one-off neck/head cost-model fit
    try:
        run_search(cfg, Budgets(8.5, 18.0, 20, 5.0), SearchConfig(generations=1),
                   latency=table, progress=False)
    except BudgetError as err:
        print(f"  with T's GPU latency budget of 5 ms: BudgetError: {err}")
    budgets = Budgets(params_m=8.5, gflops=18.0, layers=20, latency_ms=t_latency)
    print(f"  budgets: {budgets.as_dict()} (latency = published T backbone, latency table)")
    result = run_search(cfg, budgets, SearchConfig(population=population,
                                                   generations=generations,
                                                   children=population, seed=seed),
                        latency=table, progress=True)
    seconds = time.perf_counter() - started
    bad = [c for c in result.population if violations(c.costs, budgets)]
    print(f"  search time {seconds:.1f} s incl. the neck/head cost fit ({result.evaluated} "
          "candidates, limit 600 s): "
          f"{'PASS' if seconds <= 600 else 'FAIL'}")
    print(f"  best      score {result.best.score:.3f}  costs {result.best.costs.as_dict()}")
    print(f"  published score {result.baseline.score:.3f}  costs {result.baseline.costs.as_dict()}")
    print(f"  best >= published: {'PASS' if result.best.score >= result.baseline.score else 'FAIL'}"
          f"; candidates over a budget in the final population: {len(bad)}")
    print(f"  best structure: {stages_to_config(result.best.stages)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lut", type=Path, default=Path("runs/nas/lut_cpu.json"))
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--backbones", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--generations", type=int, default=60)
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["score", "latency", "search"])
    args = parser.parse_args()
    table = LatencyTable.from_json(args.lut)
    if "score" not in args.skip:
        score_parity()
    if "latency" not in args.skip:
        latency_check(table, args.image_size, args.backbones, args.rounds)
    if "search" not in args.skip:
        t_budget_search(table, args.generations, args.population, args.seed)


if __name__ == "__main__":
    main()
