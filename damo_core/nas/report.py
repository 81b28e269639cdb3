"""What a search leaves behind: the structure file, its log, a summary and a plot.

The structure is written in TinyNAS's text format without bit-width fields (the search scores
float networks, so re-scoring the file gives the reported score), which both this project's
model builder (``backbone.structure_file`` / ``damo train --backbone``) and DAMO-YOLO read.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from damo_core.atomic import atomic_path, atomic_write_text
from damo_core.models.backbones.structure import format_tinynas
from damo_core.nas.search import SearchResult

LOG_COLUMNS = ("generation", "score", "params_m", "gflops", "layers", "latency_ms", "evaluated",
               "population")


def output_paths(structure_path: str | Path) -> dict[str, Path]:
    out = Path(structure_path)
    stem = out.with_suffix("")
    return {"structure": out, "log": Path(f"{stem}_search_log.csv"),
            "summary": Path(f"{stem}_search.json"), "plot": Path(f"{stem}_population.png")}


def write_outputs(result: SearchResult, structure_path: str | Path) -> dict[str, Path]:
    paths = output_paths(structure_path)
    atomic_write_text(paths["structure"], format_tinynas(result.best.stages))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.log)
    atomic_write_text(paths["log"], buf.getvalue())
    atomic_write_text(paths["summary"], json.dumps(result.summary(), indent=2) + "\n")
    plot_population(result, paths["plot"])
    return paths


def plot_population(result: SearchResult, out_png: Path) -> Path:
    """Score against latency (GFLOPs when no latency table was used) of the final population,
    with the best candidate and the published structure marked."""
    use_latency = result.best.costs.latency_ms is not None

    def x_of(costs: object) -> float:
        value = getattr(costs, "latency_ms" if use_latency else "gflops")
        return float(value)

    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter([x_of(c.costs) for c in result.population],
               [c.score for c in result.population], s=14, label="final population")
    ax.scatter([x_of(result.best.costs)], [result.best.score], marker="*", s=160, c="tab:red",
               label="best")
    ax.scatter([x_of(result.baseline.costs)], [result.baseline.score], marker="D", s=50,
               c="tab:green", label=f"published {result.model}")
    limit = result.budgets.latency_ms if use_latency else result.budgets.gflops
    if limit is not None:
        ax.axvline(limit, color="grey", linestyle="--", label="budget")
    ax.set(xlabel="backbone latency (ms, latency table)" if use_latency else "model GFLOPs",
           ylabel=f"MAE-NAS score ({result.config.score})",
           title=f"{result.block} search for {result.model} @ {result.image_size}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return out_png
