"""Grafana variable substitution used to run panel queries outside Grafana."""

from __future__ import annotations

import pytest

from damo_core.metrics import names
from damo_core.metrics.dashboards import DASHBOARDS, panel_queries, resolve_variables


def test_resolve_variables_like_grafana():
    expr = 'rate(x{model=~"$model", run=~"${run}"}[$__rate_interval])'
    assert resolve_variables(expr) == 'rate(x{model=~".*", run=~".*"}[1m])'
    assert resolve_variables(expr, {"model": "damoyolo_s"}, rate_interval="30s") == (
        'rate(x{model=~"damoyolo_s", run=~".*"}[30s])')
    with pytest.raises(ValueError, match="__interval"):
        resolve_variables("rate(x[$__interval])")


def test_queries_use_the_named_metrics_only():
    exprs = [q.expr for build in DASHBOARDS.values() for q in panel_queries(build())]
    known = {spec.name for spec in names.ALL_METRICS} | set(names.TRITON_COUNTERS)
    for expr in exprs:
        used = {word for word in known if word + "{" in expr}
        assert used, f"no project or Triton metric in {expr}"
    # Every pushed metric except the epoch counter appears on some panel.
    shown = {spec.name for spec in names.ALL_METRICS if any(spec.name + "{" in e for e in exprs)}
    assert {spec.name for spec in names.ALL_METRICS} - shown <= {
        names.TRAIN_EPOCH.name, names.EXPORT_THROUGHPUT.name}
