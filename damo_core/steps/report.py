"""The report step: latency against mAP of every model of a run (the paper's Figure 1 for
this run), as a PNG and an HTML page embedding it, for people without Grafana."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from damo_core.errors import UserInputError


def run(evals: Sequence[Mapping[str, Any]], benches: Sequence[Mapping[str, Any]],
        out_png: str | Path, out_html: str | Path | None = None, *,
        control: Mapping[str, Any] | str | Path | None = None) -> dict[str, Any]:
    """Chart each model's evaluate and benchmark results (paired by position: one of each per
    model, in distillation order, each model teaching the next; the evaluate step's metrics and
    the benchmark step's report, as returned or as their JSON files).

    ``control``: the evaluation of one student trained alone for the same settings; it is set
    beside the distilled model of the same name, so the report states what distillation bought
    instead of leaving the teacher's help to faith."""
    from damo_core.metrics.report import plot_latency_vs_map
    from damo_core.steps._common import write_text

    evals = [_loaded(e, "evaluation metrics") for e in evals]
    benches = [_loaded(b, "benchmark report") for b in benches]
    if len(evals) != len(benches) or not evals:
        raise UserInputError(f"report: {len(evals)} evaluations but {len(benches)} benchmarks; "
                             "give one of each per model")
    rows = [{**bench, **ev, "model": ev.get("model_name") or bench.get("model_name")}
            for ev, bench in zip(evals, benches, strict=True)]
    links = distillation_links(rows)
    versus = None if control is None else control_row(
        rows, _loaded(control, "control evaluation metrics"))
    png = plot_latency_vs_map(rows, out_png).read_bytes()
    if out_html is not None:
        write_text(out_html, _page(rows, links, versus, png))
    return {"models": [r["model"] for r in rows], "format": "png", "chart": str(out_png),
            "links": links, "control": versus}


def distillation_links(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Teacher against student for each consecutive pair of ``rows`` (distillation order)."""
    return [{"teacher": t["model"], "student": s["model"],
             **{f"teacher_{k}": _number(t, k) for k in _METRICS},
             **{f"student_{k}": _number(s, k) for k in _METRICS}}
            for t, s in zip(rows, rows[1:], strict=False)]


def control_row(rows: Sequence[Mapping[str, Any]],
                alone: Mapping[str, Any]) -> dict[str, Any]:
    """The distilled model named like ``alone`` against ``alone``: AP, AP50 and their gains.
    Of several distilled models with that name, the last: the pipeline's control is its last
    student's twin."""
    name = alone.get("model_name") or alone.get("model")
    distilled = [r for r in rows[1:] if r["model"] == name]  # rows[0] is the teacher: no link
    if not distilled:
        raise UserInputError(f"report: the control model {name!r} is none of the distilled "
                             f"students {[r['model'] for r in rows[1:]]}")
    out: dict[str, Any] = {"model": name}
    for key in _METRICS:
        with_teacher, without = _number(distilled[-1], key), _number(alone, key)
        out |= {f"distilled_{key}": with_teacher, f"alone_{key}": without,
                f"gain_{key}": round(with_teacher - without, 4)}
    return out


_METRICS = ("AP", "AP50")


def _number(row: Mapping[str, Any], key: str) -> float:
    value = row.get(key)
    if not isinstance(value, int | float) or value != value:  # NaN is no number
        raise UserInputError(f"report: metrics of {row.get('model') or row.get('model_name')!r}"
                             f" field {key!r} must be a number, got {value!r}")
    return float(value)


def _page(rows: Sequence[Mapping[str, Any]], links: Sequence[Mapping[str, Any]],
          versus: Mapping[str, Any] | None, png: bytes) -> str:
    """The HTML page the KFP UI shows: chart, per-model table, links, control."""
    def table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
        cells = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in line) + "</tr>"
                        for line in body)
        head = "".join(f"<th>{h}</th>" for h in header)
        return f"<table border=1><tr>{head}</tr>{cells}</table>"

    parts = ["<html><body><h3>DAMO-YOLO: latency vs mAP</h3>",
             f"<img src='data:image/png;base64,{base64.b64encode(png).decode()}'/>",
             table(("model", "AP", "AP50", "p50 ms"),
                   [(r["model"], r.get("AP"), r.get("AP50"), r.get("p50_ms")) for r in rows])]
    if links:
        parts += ["<h3>Distillation: teacher vs student</h3>", table(
            ("teacher", "student", "teacher AP50", "student AP50", "teacher AP", "student AP"),
            [(x["teacher"], x["student"], x["teacher_AP50"], x["student_AP50"], x["teacher_AP"],
              x["student_AP"]) for x in links])]
    if versus is not None:
        parts += ["<h3>Distilled vs trained alone (same settings)</h3>", table(
            ("model", "AP50 distilled", "AP50 alone", "gain AP50", "AP distilled", "AP alone",
             "gain AP"),
            [(versus["model"], versus["distilled_AP50"], versus["alone_AP50"],
              versus["gain_AP50"], versus["distilled_AP"], versus["alone_AP"],
              versus["gain_AP"])])]
    return "".join(parts) + "</body></html>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _loaded(item: Mapping[str, Any] | str | Path, what: str) -> dict[str, Any]:
    if isinstance(item, str | Path):
        from damo_core.steps._common import read_json_file

        doc = read_json_file(item, what)
        if not isinstance(doc, dict):
            raise UserInputError(f"{item}: expected a JSON object ({what})")
        return doc
    return dict(item)
