"""PNG plots of what sampling does to a unified dataset: per-source share and per-class box
frequency, each before (uniform over images) and after the sampling weights, on log scales.

Why log scales: source sizes differ by 10-100x and class frequencies by 10^4 and more; on a
linear axis everything but the head collapses onto zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from damo_core.atomic import atomic_path
from damo_core.data.sampling import SamplingPlan

__all__ = ["expected_class_boxes", "plot_class_frequency", "plot_source_share"]


def expected_class_boxes(plan: SamplingPlan, offsets: np.ndarray, classes: np.ndarray,
                         num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes per class in one epoch of ``N`` draws: uniform vs weighted sampling."""
    n = len(offsets) - 1
    owner = np.repeat(np.arange(n), np.diff(offsets))
    uniform = np.bincount(classes, minlength=num_classes).astype(np.float64)
    weighted = np.bincount(classes, weights=plan.weights[owner] * n, minlength=num_classes)
    return uniform, weighted


def _figure():  # matplotlib without a display, imported only when plotting
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_source_share(plan: SamplingPlan, path: str | Path) -> Path:
    """Bars: each source's share of images vs its sampled (smoothed) share."""
    plt = _figure()
    sizes = np.bincount(plan.source_ids, minlength=len(plan.sources))
    natural = sizes / sizes.sum()
    x = np.arange(len(plan.sources))
    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(x)), 4))
    ax.bar(x - 0.2, natural, 0.4, label="images (uniform sampling)")
    ax.bar(x + 0.2, plan.shares, 0.4, label="sampled share (smoothed)")
    ax.set_xticks(x, plan.sources)
    ax.set_yscale("log")
    ax.set_ylabel("share of draws")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def plot_class_frequency(uniform: np.ndarray, weighted: np.ndarray, names: Sequence[str],
                         path: str | Path) -> Path:
    """Per-class boxes per epoch, classes sorted by their uniform frequency (long tail)."""
    plt = _figure()
    order = np.argsort(-uniform, kind="stable")
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(uniform[order], label="uniform sampling", lw=1)
    ax.plot(weighted[order], label="with sampling weights", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel(f"class rank by frequency ({len(names)} classes)")
    ax.set_ylabel("boxes per epoch")
    if len(names) <= 30:
        ax.set_xticks(np.arange(len(names)), [names[i] for i in order], rotation=60, fontsize=7)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
