"""The latency-vs-mAP PNG (paper Figure 1) from per-model metric dicts."""

from __future__ import annotations

import pytest
from PIL import Image

from damo_core.metrics.report import ModelPoint, plot_latency_vs_map


def rows() -> list[dict]:
    return [{"model": "damoyolo_t", "AP": 0.42, "p50_ms": 2.8, "format": "tensorrt",
             "params_m": 8.5},
            {"model_name": "damoyolo_s", "AP": 0.46, "latency_ms": 3.8, "format": "tensorrt"},
            {"model": "damoyolo_s", "AP": 0.46, "p50_ms": 30.1, "format": "openvino"}]


def test_png_is_written(tmp_path):
    path = plot_latency_vs_map(rows(), tmp_path / "sub" / "fig.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200
        # Not a blank canvas: points, lines and labels were drawn.
        assert len(image.convert("L").getcolors(maxcolors=100000)) > 20
    assert not list((tmp_path / "sub").glob(".*.tmp"))  # atomic write left no temp file


def test_points_read_eval_and_bench_keys():
    point = ModelPoint.from_metrics(rows()[0])
    assert (point.model, point.latency_ms, point.ap, point.series) == (
        "damoyolo_t", 2.8, 0.42, "tensorrt")


@pytest.mark.parametrize(("row", "match"), [
    ({"AP": 0.4, "p50_ms": 1.0}, "no 'model'"),
    ({"model": "m", "p50_ms": 1.0}, "AP must be a number"),
    ({"model": "m", "AP": 0.4}, "latency_ms/p50_ms"),
    ({"model": "m", "AP": float("nan"), "p50_ms": 1.0}, "AP must be"),
])
def test_bad_rows_are_named(tmp_path, row, match):
    with pytest.raises(ValueError, match=match):
        plot_latency_vs_map([row], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_no_rows(tmp_path):
    with pytest.raises(ValueError, match="no model metrics"):
        plot_latency_vs_map([], tmp_path / "x.png")
