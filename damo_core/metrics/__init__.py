"""Prometheus metrics of the pipeline: names (``names``), pushing (``push``), Grafana
dashboards as code (``dashboards``) and a PNG of latency vs mAP for people without Grafana
(``report``)."""

from damo_core.metrics.push import (
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

__all__ = ["ENV_GATEWAY", "ENV_RUN", "MetricLabels", "MetricsPushError", "gateway_url",
           "push_eval", "push_latency", "push_train_epoch", "run_id"]
