"""Grafana dashboards as code: Triton serving latency and model quality (mAP vs latency).

Why generated: the PromQL here uses the metric names of ``damo_core.metrics.names``, so a
renamed metric changes the dashboards with it, and a test runs every panel's expression
against a real Prometheus. The JSON is Grafana's dashboard model (schemaVersion 39), written
to ``manifests/grafana/dashboards/`` where kustomize packs it into the ConfigMap that Grafana's
dashboard provisioning reads. Regenerate with ``damo dashboards --out
manifests/grafana/dashboards``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damo_core.atomic import atomic_write_text
from damo_core.metrics import names

DATASOURCE = {"type": "prometheus", "uid": "damo-prometheus"}  # provisioned in manifests/grafana
SCHEMA_VERSION = 39
RATE = "$__rate_interval"
ALL = ".*"
PANEL_WIDTH, PANEL_HEIGHT, GRID_COLUMNS = 12, 8, 24


@dataclass(frozen=True)
class Query:
    """One panel target: ``instant`` queries feed tables, bar gauges and the XY chart."""

    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str


def _target(query: Query, ref_id: str) -> dict[str, Any]:
    target: dict[str, Any] = {"refId": ref_id, "datasource": DATASOURCE, "expr": query.expr,
                              "legendFormat": query.legend or "__auto", "range": not query.instant,
                              "instant": query.instant}
    if query.instant:
        target["format"] = "table"
    return target


def _panel(title: str, kind: str, queries: list[Query], *, unit: str, description: str,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    panel = {"title": title, "type": kind, "description": description, "datasource": DATASOURCE,
             "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
             "targets": [_target(q, chr(ord("A") + i)) for i, q in enumerate(queries)]}
    panel.update(extra or {})
    return panel


def _variable(name: str, metric: str, label: str | None = None) -> dict[str, Any]:
    """A multi-select query variable over the values of ``label`` on ``metric`` (All = .*)."""
    query = f"label_values({metric}, {label or name})"
    return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"var-{name}"}, "definition": query,
            "includeAll": True, "multi": True, "allValue": ALL, "refresh": 2, "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


def _dashboard(uid: str, title: str, description: str, variables: list[dict[str, Any]],
               panels: list[dict[str, Any]]) -> dict[str, Any]:
    """Lay panels out two per row and number them; Grafana needs unique ids and gridPos."""
    per_row = GRID_COLUMNS // PANEL_WIDTH
    for i, panel in enumerate(panels):
        panel["id"] = i + 1
        panel["gridPos"] = {"h": PANEL_HEIGHT, "w": PANEL_WIDTH,
                            "x": (i % per_row) * PANEL_WIDTH, "y": (i // per_row) * PANEL_HEIGHT}
    return {"uid": uid, "title": title, "description": description,
            "tags": ["damo-yolo", "generated"], "timezone": "browser", "editable": True,
            "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"}, "annotations": {"list": []},
            "templating": {"list": variables}, "panels": panels}


def _triton_per_request(counter: str) -> str:
    """Mean microseconds per successful request: Triton exports cumulative counters."""
    sel = '{model=~"$model"}'
    return (f"sum by (model) (rate({counter}{sel}[{RATE}])) / "
            f"sum by (model) (rate({names.TRITON_REQUEST_SUCCESS}{sel}[{RATE}]))")


def _triton_rate(counter: str) -> str:
    return f'sum by (model) (rate({counter}{{model=~"$model"}}[{RATE}]))'


def latency_dashboard() -> dict[str, Any]:
    """Serving latency on Triton, per model: request, queue and compute time, rate, failures."""
    ts = "timeseries"
    panels = [
        _panel("Request latency per request", ts,
               [Query(_triton_per_request(names.TRITON_REQUEST_DURATION), "{{model}}")],
               unit="µs", description="End-to-end time inside Triton per successful request "
               "(nv_inference_request_duration_us / nv_inference_request_success)."),
        _panel("Queue time per request", ts,
               [Query(_triton_per_request(names.TRITON_QUEUE_DURATION), "{{model}}")],
               unit="µs", description="Time requests wait in the scheduler queue; growth "
               "here means the model needs more instances or batching."),
        _panel("Compute (infer) time per request", ts,
               [Query(_triton_per_request(names.TRITON_COMPUTE_INFER_DURATION), "{{model}}")],
               unit="µs", description="Time in the backend's inference call per request."),
        _panel("Request rate", ts, [Query(_triton_rate(names.TRITON_REQUEST_SUCCESS),
                                          "{{model}}")],
               unit="reqps", description="Successful inference requests per second."),
        _panel("Failures", ts, [Query(_triton_rate(names.TRITON_REQUEST_FAILURE), "{{model}}")],
               unit="reqps", description="Failed inference requests per second."),
        _panel("Average batch size", ts,
               [Query(f"{_triton_rate(names.TRITON_INFERENCE_COUNT)} / "
                      f"{_triton_rate(names.TRITON_EXEC_COUNT)}", "{{model}}")],
               unit="none", description="Inferences per model execution (dynamic batching)."),
    ]
    return _dashboard("damo-latency", "DAMO-YOLO serving latency (Triton)",
                      "Triton Inference Server metrics of the deployed detectors, per model.",
                      [_variable("model", names.TRITON_REQUEST_SUCCESS)], panels)


def _project(metric: names.MetricSpec, by: str, extra: str = "",
             filters: tuple[str, ...] = ("run", "model"), agg: str = "max") -> str:
    """``agg by`` over the series the dashboard's variables select. Evaluation and training
    series are filtered by run and model only: their format/device (pytorch on the training
    device) are not among the exported formats the format/device variables list."""
    labels = ", ".join(f'{label}=~"${label}"' for label in filters)
    return f"{agg} by ({by}) ({metric.name}{{{labels}{extra}}})"


def quality_dashboard() -> dict[str, Any]:
    """Model quality across runs and the paper's Figure 1: latency against mAP per model."""
    p50, p99 = (f', {names.QUANTILE_LABEL}="{q}"' for q in names.LATENCY_QUANTILES)
    by_fmt = "model, format, device"
    xy_options = {"options": {"seriesMapping": "auto", "dims": {"x": "latency p50 (ms)"},
                              "legend": {"showLegend": True, "displayMode": "list",
                                         "placement": "bottom"}},
                  "transformations": [
                      {"id": "joinByField", "options": {"byField": "model", "mode": "outer"}},
                      {"id": "organize", "options": {
                          "excludeByName": {"Time": True, "Time 1": True, "Time 2": True},
                          "renameByName": {"Value #A": "AP", "Value #B": "latency p50 (ms)"}}}]}
    panels = [
        _panel("AP per model across runs", "timeseries",
               [Query(_project(names.EVAL_AP, "model, run"), "{{model}} {{run}}")],
               unit="percentunit", description="COCO AP@[.5:.95] pushed by the evaluate step."),
        _panel("AP50 per model across runs", "timeseries",
               [Query(_project(names.EVAL_AP50, "model, run"), "{{model}} {{run}}")],
               unit="percentunit", description="COCO AP@.5 pushed by the evaluate step."),
        _panel("Latency vs AP per model (paper Figure 1)", "xychart",
               [Query(_project(names.EVAL_AP, "model"), instant=True),
                Query("1000 * " + _project(names.EXPORT_LATENCY, "model", p50,
                                           names.GROUPING_LABELS, agg="min"), instant=True)],
               unit="none", description="One point per model size: p50 latency (ms) of the "
               "selected format/device against AP; up and left is better.", extra=xy_options),
        _panel("Latest AP, AP50 per model and run", "table",
               [Query(_project(names.EVAL_AP, "model, run"), instant=True),
                Query(_project(names.EVAL_AP50, "model, run"), instant=True)],
               unit="percentunit", description="The last pushed evaluation of each run.",
               extra={"transformations": [{"id": "merge", "options": {}}]}),
        _panel("Latency p50 per model, format, device", "bargauge",
               [Query(_project(names.EXPORT_LATENCY, by_fmt, p50, names.GROUPING_LABELS),
                      "{{model}} {{format}} {{device}}", instant=True)],
               unit="s", description="Median latency pushed by the benchmark step."),
        _panel("Latency p99 per model, format, device", "bargauge",
               [Query(_project(names.EXPORT_LATENCY, by_fmt, p99, names.GROUPING_LABELS),
                      "{{model}} {{format}} {{device}}", instant=True)],
               unit="s", description="Tail latency pushed by the benchmark step."),
        _panel("Training loss", "timeseries",
               [Query(_project(names.TRAIN_LOSS, "model, run"), "{{model}} {{run}}")],
               unit="none", description="Mean loss of the last finished epoch."),
        _panel("Epoch time", "timeseries",
               [Query(_project(names.TRAIN_EPOCH_SECONDS, "model, run"), "{{model}} {{run}}")],
               unit="s", description="Wall-clock seconds per training epoch."),
        _panel("Parameters per model", "bargauge",
               [Query(_project(names.MODEL_PARAMS, "model"), "{{model}}", instant=True)],
               unit="none", description="Millions of parameters (the model size axis)."),
    ]
    variables = [_variable("run", names.EVAL_AP.name), _variable("model", names.EVAL_AP.name),
                 _variable("format", names.EXPORT_LATENCY.name),
                 _variable("device", names.EXPORT_LATENCY.name)]
    return _dashboard("damo-quality", "DAMO-YOLO model quality (mAP and latency)",
                      "Evaluation, benchmark and training metrics pushed by the pipeline.",
                      variables, panels)


DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "damo-latency": latency_dashboard, "damo-quality": quality_dashboard}


def write_dashboards(out_dir: str | Path) -> list[Path]:
    """Write every dashboard as ``<uid>.json`` into ``out_dir`` (atomically); return paths."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"dashboards output {out} exists and is not a directory")
    return [atomic_write_text(out / f"{uid}.json", json.dumps(build(), indent=2,
                                                              ensure_ascii=False) + "\n")
            for uid, build in DASHBOARDS.items()]


def panel_queries(dashboard: dict[str, Any]) -> Iterator[PanelQuery]:
    """Every PromQL expression of every panel (what a test runs against Prometheus)."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield PanelQuery(dashboard["uid"], panel["title"], target["refId"], target["expr"])


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def resolve_variables(expr: str, values: dict[str, str] | None = None,
                      rate_interval: str = "1m") -> str:
    """Substitute Grafana variables as Grafana would: ``$__rate_interval``, and a dashboard
    variable by its value (default: its All value ``.*``). Unknown built-ins raise."""
    chosen = {"__rate_interval": rate_interval, **(values or {})}

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in chosen:
            return chosen[name]
        if name.startswith("__"):
            raise ValueError(f"no value for Grafana built-in variable ${name} in {expr!r}")
        return ALL

    return _VARIABLE.sub(sub, expr)
