"""The report step: latency against mAP of every model of a run (the paper's Figure 1 for
this run), as a PNG and an HTML page embedding it, for people without Grafana."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from damo_core.errors import UserInputError


def run(evals: Sequence[Mapping[str, Any]], benches: Sequence[Mapping[str, Any]],
        out_png: str | Path, out_html: str | Path | None = None) -> dict[str, Any]:
    """Chart each model's evaluate and benchmark results (paired by position: one of each per
    model; the evaluate step's metrics and the benchmark step's report, as returned or as
    their JSON files)."""
    from damo_core.metrics.report import plot_latency_vs_map
    from damo_core.steps._common import write_text

    evals = [_loaded(e, "evaluation metrics") for e in evals]
    benches = [_loaded(b, "benchmark report") for b in benches]
    if len(evals) != len(benches) or not evals:
        raise UserInputError(f"report: {len(evals)} evaluations but {len(benches)} benchmarks; "
                             "give one of each per model")
    rows = [{**bench, **ev, "model": ev.get("model_name") or bench.get("model_name")}
            for ev, bench in zip(evals, benches, strict=True)]
    png = plot_latency_vs_map(rows, out_png).read_bytes()
    if out_html is not None:
        table = "".join(f"<tr><td>{r['model']}</td><td>{r.get('AP', 0):.4f}</td>"
                        f"<td>{r.get('AP50', 0):.4f}</td><td>{r.get('p50_ms', 0):.2f}</td></tr>"
                        for r in rows)
        write_text(out_html, (
            "<html><body><h3>DAMO-YOLO: latency vs mAP</h3>"
            f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"
            "<table border=1><tr><th>model</th><th>AP</th><th>AP50</th><th>p50 ms</th></tr>"
            f"{table}</table></body></html>"))
    return {"models": [r["model"] for r in rows], "format": "png", "chart": str(out_png)}


def _loaded(item: Mapping[str, Any] | str | Path, what: str) -> dict[str, Any]:
    if isinstance(item, str | Path):
        from damo_core.steps._common import read_json_file

        doc = read_json_file(item, what)
        if not isinstance(doc, dict):
            raise UserInputError(f"{item}: expected a JSON object ({what})")
        return doc
    return dict(item)
