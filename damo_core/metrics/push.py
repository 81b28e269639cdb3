"""Push the pipeline's metrics (names in ``names``) to a Prometheus Pushgateway.

Why a Pushgateway: pipeline steps are short-lived pods that are gone before Prometheus' next
scrape, so each step pushes its numbers once and Prometheus scrapes the gateway. The gateway
URL comes from ``DAMO_PUSHGATEWAY`` (set by the cluster manifests); when it is unset, e.g. on a
laptop or in CI, pushing is a no-op that says so in one log line, so the same step code runs
everywhere.

Each push uses ``pushadd`` (HTTP POST) under the grouping key ``job, run, model, format,
device``: it replaces only the metric names it sends within that group, so the evaluation,
benchmark and training steps of one model never erase each other's series.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from damo_core.errors import UnavailableError, UserInputError
from damo_core.metrics import names

ENV_GATEWAY = "DAMO_PUSHGATEWAY"
ENV_RUN = "DAMO_RUN_ID"  # set by the pipeline (KFP job name); the trainer reads it
LOCAL_RUN = "local"
PUSH_TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


class MetricsPushError(UnavailableError):
    """The gateway was configured but did not accept the push (only raised when strict)."""


@dataclass(frozen=True)
class MetricLabels:
    """The grouping labels every project series carries; all must be non-empty."""

    run: str
    model: str
    format: str
    device: str

    def __post_init__(self) -> None:
        for label in names.GROUPING_LABELS:
            value = getattr(self, label)
            if not isinstance(value, str) or not value.strip():
                raise UserInputError(f"metric label {label!r} must be a non-empty string, "
                                     f"got {value!r}")

    def grouping_key(self) -> dict[str, str]:
        return {label: getattr(self, label) for label in names.GROUPING_LABELS}


def run_id() -> str:
    """The ``run`` label: ``$DAMO_RUN_ID`` (the pipeline run), else ``local``."""
    return os.environ.get(ENV_RUN, "").strip() or LOCAL_RUN


def gateway_url(url: str | None = None) -> str | None:
    """The explicit ``url``, else ``$DAMO_PUSHGATEWAY``, else ``None`` (pushing disabled)."""
    chosen = url if url is not None else os.environ.get(ENV_GATEWAY, "")
    return chosen.strip() or None


def _number(values: Mapping[str, Any], key: str, what: str) -> float:
    if key not in values or values[key] is None:
        raise UserInputError(f"{what}: missing {key!r} (have {sorted(values)})")
    try:
        return float(values[key])
    except (TypeError, ValueError):
        raise UserInputError(f"{what}: {key!r} must be a number, got {values[key]!r}") from None


def push_samples(samples: Mapping[names.MetricSpec, list[tuple[dict[str, str], float]]],
                 labels: MetricLabels, *, url: str | None = None, strict: bool = False) -> bool:
    """Push gauges ``{spec: [(extra_labels, value), ...]}`` for one group; True if pushed.

    Not strict (the pipeline's default): a gateway that is down is logged, not raised, because
    monitoring must not fail a training run. Strict (tests, ``damo metrics push``): raise.
    """
    gateway = gateway_url(url)
    metric_names = ", ".join(spec.name for spec in samples)
    if gateway is None:
        log.info("metrics: %s is not set; not pushing %s for %s", ENV_GATEWAY, metric_names,
                 labels.grouping_key())
        return False
    registry = CollectorRegistry()
    for spec, rows in samples.items():
        gauge = Gauge(spec.name, spec.help, spec.labels, registry=registry)
        for extra, value in rows:
            (gauge.labels(**extra) if spec.labels else gauge).set(value)
    try:
        pushadd_to_gateway(gateway, job=names.JOB, registry=registry,
                           grouping_key=labels.grouping_key(), timeout=PUSH_TIMEOUT_S)
    except OSError as err:  # URLError, connection refused, timeouts
        if strict:
            raise MetricsPushError(f"push of {metric_names} to {gateway} failed: {err}") from err
        log.warning("metrics: push of %s to %s failed: %s", metric_names, gateway, err)
        return False
    log.info("metrics: pushed %s for %s to %s", metric_names, labels.grouping_key(), gateway)
    return True


def push_eval(metrics: Mapping[str, Any], labels: MetricLabels, *,
              params_m: float | None = None, url: str | None = None,
              strict: bool = False) -> bool:
    """Push what ``damo_core.steps.evaluate.run`` returns (AP, AP50) for one model and run."""
    what = f"eval metrics of {labels.model}"
    samples = {names.EVAL_AP: [({}, _number(metrics, "AP", what))],
               names.EVAL_AP50: [({}, _number(metrics, "AP50", what))]}
    if params_m is not None:
        samples[names.MODEL_PARAMS] = [({}, float(params_m))]
    return push_samples(samples, labels, url=url, strict=strict)


def push_latency(bench: Mapping[str, Any], labels: MetricLabels, *, url: str | None = None,
                 strict: bool = False) -> bool:
    """Push a row of ``damo_core.steps.benchmark.run``'s report (p50_ms, p99_ms, throughput)."""
    what = f"latency of {labels.model} ({labels.format}, {labels.device})"
    quantiles = [({names.QUANTILE_LABEL: q}, _number(bench, key, what) / 1000.0)
                 for q, key in names.LATENCY_QUANTILES.items()]
    samples = {names.EXPORT_LATENCY: quantiles,
               names.EXPORT_THROUGHPUT: [({}, _number(bench, "throughput", what))]}
    return push_samples(samples, labels, url=url, strict=strict)


def push_train_epoch(row: Mapping[str, Any], labels: MetricLabels, *, url: str | None = None,
                     strict: bool = False) -> bool:
    """Push one row of the trainer's results.csv (epoch, loss, epoch_time_s)."""
    what = f"training epoch of {labels.model}"
    samples = {names.TRAIN_EPOCH: [({}, _number(row, "epoch", what))],
               names.TRAIN_LOSS: [({}, _number(row, "loss", what))],
               names.TRAIN_EPOCH_SECONDS: [({}, _number(row, "epoch_time_s", what))]}
    return push_samples(samples, labels, url=url, strict=strict)
