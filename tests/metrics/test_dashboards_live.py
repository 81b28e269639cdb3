"""Every PromQL expression of every generated dashboard panel runs against a REAL Prometheus
that scrapes a REAL Pushgateway (fed through damo_core.metrics by a small local run) and
the local Triton server's own /metrics (a deployed model that answered requests): each must
return data and none may error."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from damo_core.metrics import MetricLabels, names, push_eval, push_latency, push_train_epoch
from damo_core.metrics.dashboards import DASHBOARDS, panel_queries, resolve_variables

RUN = "run-test"
MODEL = "damoyolo_ns"
SIZE = 64
SCRAPE_WAIT_S = 45.0


def _local_run(tmp: Path) -> tuple[dict[str, float], dict[str, Any], float]:
    """Evaluate, export and benchmark a random-init nano model on a tiny synthetic set: the
    numbers are real outputs of the pipeline's functions, just of an untrained model."""
    from damo_core.data.synth import generate
    from damo_core.eval import evaluate
    from damo_core.export.formats import export_model
    from damo_core.models import build_model
    from damo_core.models.profile import count_params
    from damo_core.steps import benchmark

    torch.manual_seed(0)
    model = build_model(MODEL, num_classes=2).eval()
    data = generate(tmp / "data", num_classes=2, num_images=8, image_size=SIZE, seed=0)
    result = evaluate(model, data, split="val", image_size=SIZE, progress=False, workers=0)
    metrics = {k: float(getattr(result, k)) for k in ("AP", "AP50")}
    export_model(model.fuse(), "onnx", tmp / "onnx", image_size=SIZE)
    bench = benchmark.run(tmp / "onnx", warmup=2, runs=5, threads=1)
    return metrics, bench, count_params(model) / 1e6


def _wait_for_data(prometheus: Any, exprs: list[str]) -> dict[str, dict[str, Any]]:
    """Poll until every expression returns samples (rates need two scrapes), bounded."""
    deadline = time.monotonic() + SCRAPE_WAIT_S
    while True:
        answers = {expr: prometheus.query(expr) for expr in exprs}
        empty = [e for e, a in answers.items()
                 if a.get("status") == "success" and not a["data"]["result"]]
        if not empty or time.monotonic() > deadline:
            return answers
        time.sleep(1.0)


def test_every_dashboard_query_returns_data(prometheus, pushgateway, tmp_path):
    metrics, bench, params_m = _local_run(tmp_path)
    labels = MetricLabels(run=RUN, model=MODEL, format="onnx", device="cpu")
    eval_labels = MetricLabels(run=RUN, model=MODEL, format="pytorch", device="cpu")
    assert push_eval(metrics, eval_labels, params_m=params_m, url=pushgateway, strict=True)
    assert push_latency(bench, labels, url=pushgateway, strict=True)
    for epoch, loss in ((1, 3.5), (2, 2.75)):
        assert push_train_epoch({"epoch": epoch, "loss": loss, "epoch_time_s": 1.25},
                                eval_labels, url=pushgateway, strict=True)

    queries = [q for build in DASHBOARDS.values() for q in panel_queries(build())]
    assert len(queries) >= 15
    answers = _wait_for_data(prometheus, [resolve_variables(q.expr) for q in queries])
    for q in queries:
        answer = answers[resolve_variables(q.expr)]
        where = f"{q.dashboard} / {q.panel} / {q.ref_id}: {q.expr}"
        assert answer.get("status") == "success", f"{where} errored: {answer}"
        assert answer["data"]["result"], f"{where} returned no data"

    # The numbers survive the round trip push -> gateway -> scrape -> PromQL.
    ap = answers[resolve_variables(next(q.expr for q in queries
                                        if q.panel.startswith("AP per model")))]
    assert {r["metric"]["model"] for r in ap["data"]["result"]} == {MODEL}
    assert float(ap["data"]["result"][0]["value"][1]) == pytest.approx(metrics["AP"])
    p50 = prometheus.query(f'{names.EXPORT_LATENCY.name}{{model="{MODEL}",quantile="0.5"}}')
    sample = p50["data"]["result"][0]
    assert float(sample["value"][1]) == pytest.approx(bench["p50_ms"] / 1000)
    assert {k: sample["metric"][k] for k in names.GROUPING_LABELS} == labels.grouping_key()
    rate = answers[resolve_variables(next(q.expr for q in queries if q.panel == "Request rate"))]
    # Triton's own series: the deployed ensemble and its parts answered the requests
    assert MODEL in {r["metric"]["model"] for r in rate["data"]["result"]}


def test_every_dashboard_variable_has_values(prometheus, pushgateway):
    """Grafana's label_values(metric, label) variables, asked of the same Prometheus."""
    push_eval({"AP": 0.25, "AP50": 0.5}, MetricLabels("run-var", "damoyolo_t", "pytorch", "cpu"),
              url=pushgateway, strict=True)
    push_latency({"p50_ms": 2.0, "p99_ms": 3.0, "throughput": 500.0},
                 MetricLabels("run-var", "damoyolo_t", "openvino", "cpu"), url=pushgateway,
                 strict=True)
    deadline = time.monotonic() + SCRAPE_WAIT_S
    for build in DASHBOARDS.values():
        for var in build()["templating"]["list"]:
            metric, label = var["definition"].removeprefix("label_values(").rstrip(")").split(
                ", ")
            values = prometheus.label_values(label, metric)
            while not values and time.monotonic() < deadline:
                time.sleep(1.0)
                values = prometheus.label_values(label, metric)
            assert values, f"variable {var['name']} ({var['definition']}) has no values"


def test_training_step_pushes_each_epoch(pushgateway, tmp_path, monkeypatch):
    """The pipeline's training step, in process, with the env a pipeline pod gets: every
    finished epoch reaches the Pushgateway labelled with the run, its loss = results.csv's."""
    import csv
    import urllib.request

    from damo_core.data.synth import generate
    from damo_core.steps import train

    data = tmp_path / "data"
    generate(data, num_classes=2, num_images=8, image_size=64, seed=1)
    monkeypatch.setenv("DAMO_PUSHGATEWAY", pushgateway)
    tiny = {"epochs": 2, "batch": 4, "img_size": 64, "warmup_epochs": 0, "no_aug_epochs": 0,
            "workers": 0, "precise_bn_batches": 0, "augment": {"mosaic_prob": 0.0}}
    train.run(data, tmp_path / "model", model="damoyolo_ns", settings=tiny,
                run_id="run-train")
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    pushed = {line.split("{")[0]: (line.split("{")[1].split("}")[0], float(line.split()[-1]))
              for line in text.splitlines()
              if line.startswith(("damo_train_loss{", "damo_train_epoch{")) and
              'run="run-train"' in line}
    assert set(pushed) == {"damo_train_loss", "damo_train_epoch"}, text
    assert 'model="damoyolo_ns"' in pushed["damo_train_loss"][0]
    rows = list(csv.DictReader((tmp_path / "model" / "results.csv").open()))
    assert pushed["damo_train_epoch"][1] == 2.0  # the last finished epoch
    assert pushed["damo_train_loss"][1] == pytest.approx(float(rows[-1]["loss"]))
