"""Generated Grafana dashboards: valid against the (minimal) dashboard schema kept in the repo,
laid out without overlaps, and identical to the committed files Grafana provisions."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from damo_core.metrics.dashboards import DASHBOARDS, DATASOURCE, write_dashboards

ROOT = Path(__file__).parents[2]
SCHEMA = json.loads((ROOT / "manifests/grafana/dashboard.schema.json").read_text())
COMMITTED = ROOT / "manifests/grafana/dashboards"


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_dashboard_validates_against_schema(uid):
    dashboard = DASHBOARDS[uid]()
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(dashboard, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert dashboard["uid"] == uid


@pytest.mark.parametrize("mutate", [
    lambda d: d["panels"][0].pop("gridPos"),
    lambda d: d["panels"][0]["targets"][0].update(expr=""),
    lambda d: d["panels"][0].update(type="no-such-panel"),
    lambda d: d["panels"][0]["gridPos"].update(w=30),
])
def test_schema_rejects_broken_dashboards(mutate):
    dashboard = copy.deepcopy(DASHBOARDS["damo-latency"]())
    mutate(dashboard)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dashboard, SCHEMA, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_panels_do_not_overlap_and_use_the_provisioned_datasource(uid):
    dashboard = DASHBOARDS[uid]()
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area
        assert panel["datasource"] == DATASOURCE
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_latency_dashboard_covers_triton_latency_queue_rate_failures():
    exprs = " ".join(t["expr"] for p in DASHBOARDS["damo-latency"]()["panels"]
                     for t in p["targets"])
    for metric in ("nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                   "nv_inference_request_success", "nv_inference_request_failure"):
        assert metric in exprs
    assert "by (model)" in exprs


def test_quality_dashboard_has_latency_vs_map_xy_chart():
    panels = {p["title"]: p for p in DASHBOARDS["damo-quality"]()["panels"]}
    xy = next(p for p in panels.values() if p["type"] == "xychart")
    exprs = [t["expr"] for t in xy["targets"]]
    assert "damo_eval_ap{" in exprs[0] and "damo_export_latency_seconds" in exprs[1]
    assert all(t["instant"] and t["format"] == "table" for t in xy["targets"])


def test_committed_dashboards_are_up_to_date(tmp_path):
    """manifests/grafana/dashboards is what Grafana provisions: regenerate after editing."""
    for path in write_dashboards(tmp_path):
        committed = COMMITTED / path.name
        assert committed.is_file(), f"{committed} missing: run damo dashboards"
        assert json.loads(committed.read_text()) == json.loads(path.read_text()), (
            f"{committed} is stale: run `damo dashboards --out {COMMITTED}`")
