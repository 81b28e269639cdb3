"""Pushing without a gateway is a logged no-op; bad input and a refused push are clear errors.
(The pushes that reach a real Pushgateway are in test_dashboards_live.)"""

from __future__ import annotations

import logging

import pytest

from damo_core.metrics import (
    ENV_GATEWAY,
    ENV_RUN,
    MetricLabels,
    MetricsPushError,
    gateway_url,
    push_eval,
    push_latency,
    push_train_epoch,
    run_id,
)
from tests.servers import free_port

LABELS = MetricLabels(run="r1", model="damoyolo_s", format="onnx", device="cpu")


def test_no_gateway_is_a_logged_no_op(monkeypatch, caplog):
    monkeypatch.delenv(ENV_GATEWAY, raising=False)
    with caplog.at_level(logging.INFO, logger="damo_core.metrics.push"):
        assert push_eval({"AP": 0.3, "AP50": 0.5}, LABELS) is False
    assert f"{ENV_GATEWAY} is not set" in caplog.text and "damo_eval_ap" in caplog.text


def test_gateway_url_from_env(monkeypatch):
    monkeypatch.setenv(ENV_GATEWAY, " http://pushgateway:9091 ")
    assert gateway_url() == "http://pushgateway:9091"
    assert gateway_url("") is None  # an explicit empty URL disables pushing


@pytest.mark.parametrize(("push", "values", "missing"), [
    (push_eval, {"AP": 0.3}, "AP50"),
    (push_latency, {"p50_ms": 1.0, "throughput": 5.0}, "p99_ms"),
    (push_train_epoch, {"epoch": 1, "loss": "nan?", "epoch_time_s": 2}, "loss"),
])
def test_bad_values_name_the_key(push, values, missing):
    with pytest.raises(ValueError, match=missing):
        push(values, LABELS, url="http://127.0.0.1:1")


def test_empty_label_is_rejected():
    with pytest.raises(ValueError, match="'device'"):
        MetricLabels(run="r", model="m", format="onnx", device=" ")


def test_refused_push_raises_when_strict_and_logs_otherwise(caplog):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    bench = {"p50_ms": 1.0, "p99_ms": 2.0, "throughput": 900.0}
    with pytest.raises(MetricsPushError, match="damo_export_latency_seconds"):
        push_latency(bench, LABELS, url=url, strict=True)
    with caplog.at_level(logging.WARNING, logger="damo_core.metrics.push"):
        assert push_latency(bench, LABELS, url=url) is False
    assert "failed" in caplog.text


def test_run_id_from_env(monkeypatch):
    monkeypatch.delenv(ENV_RUN, raising=False)
    assert run_id() == "local"
    monkeypatch.setenv(ENV_RUN, "damo-yolo-abc12")
    assert run_id() == "damo-yolo-abc12"
