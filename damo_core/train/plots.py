"""Training curves as PNG, because people read a plot faster than ``results.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from damo_core.atomic import atomic_path

LOSS_COLUMNS = ("loss_qfl", "loss_dfl", "loss_giou", "loss")
METRIC_COLUMNS = ("AP", "AP50")


def read_results(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [{k: float(v) if v != "" else float("nan") for k, v in row.items()}
                for row in csv.DictReader(f)]


def plot_results(results_csv: Path, out_png: Path) -> Path:
    """Loss terms per epoch (left) and validation AP / AP50 (right)."""
    rows = read_results(results_csv)
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for col in LOSS_COLUMNS:
        left.plot(epochs, [r[col] for r in rows], label=col, marker="o", markersize=3)
    left.set(title="training loss", xlabel="epoch")
    left.legend()
    for col in METRIC_COLUMNS:
        right.plot(epochs, [r[col] for r in rows], label=col, marker="o", markersize=3)
    right.set(title="validation (EMA model)", xlabel="epoch", ylim=(0, 1))
    right.legend()
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return out_png
