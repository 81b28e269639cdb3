"""A PNG of latency against mAP per model (the paper's Figure 1) for people without Grafana.

Why: the quality dashboard needs a running Grafana and Prometheus; the pipeline's report step
writes the same picture from the per-model metric dicts it already holds (evaluation AP and
benchmark p50), so the chart is in the run's artifacts even on a laptop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from damo_core.atomic import atomic_path
from damo_core.errors import UserInputError


@dataclass(frozen=True)
class ModelPoint:
    """One model on the chart; ``series`` groups points into one line (e.g. format/device)."""

    model: str
    latency_ms: float
    ap: float
    series: str = ""
    params_m: float | None = None

    @classmethod
    def from_metrics(cls, row: Mapping[str, Any], metric: str = "AP") -> ModelPoint:
        """From ``{"model", metric, "latency_ms" or "p50_ms", optional "series", "params_m"}``:
        the evaluate step's metrics merged with the benchmark step's report and a model name."""
        name = row.get("model") or row.get("model_name")
        if not name:
            raise UserInputError(f"metrics row has no 'model' or 'model_name': {sorted(row)}")
        latency = row.get("latency_ms", row.get("p50_ms"))
        for field, value in ((metric, row.get(metric)), ("latency_ms/p50_ms", latency)):
            if not isinstance(value, int | float) or value != value or value < 0:
                raise UserInputError(f"metrics row of {name}: {field} must be a number >= 0, "
                                     f"got {value!r}")
        params = row.get("params_m")
        return cls(model=str(name), latency_ms=float(latency), ap=float(row[metric]),
                   series=str(row.get("series") or row.get("format") or ""),
                   params_m=None if params is None else float(params))


def plot_latency_vs_map(rows: Sequence[Mapping[str, Any]], out_png: str | Path, *,
                        metric: str = "AP", title: str | None = None) -> Path:
    """Scatter each model's p50 latency (x) against ``metric`` (y), one line per series sorted
    by latency as in the paper; marker area follows parameters when given. Returns the path."""
    if not rows:
        raise UserInputError("no model metrics to plot")
    points = [ModelPoint.from_metrics(row, metric) for row in rows]
    fig = Figure(figsize=(7, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, series in enumerate(sorted({p.series for p in points})):
        line = sorted((p for p in points if p.series == series), key=lambda p: p.latency_ms)
        sizes = [30 + 6 * (p.params_m or 0) for p in line]
        color = f"C{i % 10}"
        ax.plot([p.latency_ms for p in line], [p.ap for p in line], "-", alpha=0.6, color=color)
        ax.scatter([p.latency_ms for p in line], [p.ap for p in line], s=sizes, color=color,
                   label=series or None, zorder=3)
        for p in line:
            ax.annotate(p.model, (p.latency_ms, p.ap), textcoords="offset points",
                        xytext=(5, 5), fontsize=8)
    ax.set(xlabel="latency p50 (ms)", ylabel=metric, title=title or f"Latency vs {metric}")
    ax.grid(True, alpha=0.3)
    if any(p.series for p in points):
        ax.legend()
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return Path(out_png)
