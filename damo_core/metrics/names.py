"""The one list of the project's Prometheus metrics: names, help, and the labels they carry.

Why one place: pipeline steps push these, Grafana dashboards query them and tests check both
against a real Prometheus. If a name were spelled in three places, a rename would silently
empty a dashboard panel; here the dashboards import the same constants the pushers use.

Every project series is identified by the grouping labels ``run``, ``model``, ``format`` and
``device`` (``GROUPING_LABELS``). They are attached by the Pushgateway from the push's
grouping key, not set per sample, so one step's push never overwrites another step's.
Latencies are in seconds (Prometheus' base unit); dashboards display them as milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

JOB = "damo_pipeline"
GROUPING_LABELS = ("run", "model", "format", "device")
QUANTILE_LABEL = "quantile"
LATENCY_QUANTILES = {"0.5": "p50_ms", "0.99": "p99_ms"}  # label value -> benchmark report key


@dataclass(frozen=True)
class MetricSpec:
    """One gauge: its full name, the help text Prometheus shows, and its own extra labels."""

    name: str
    help: str
    labels: tuple[str, ...] = ()


EVAL_AP = MetricSpec("damo_eval_ap", "COCO AP@[.5:.95] of a model on the validation split")
EVAL_AP50 = MetricSpec("damo_eval_ap50", "COCO AP@.5 of a model on the validation split")
EXPORT_LATENCY = MetricSpec(
    "damo_export_latency_seconds",
    "Per-call latency of an exported model (deploy graph, no NMS) by quantile",
    (QUANTILE_LABEL,))
EXPORT_THROUGHPUT = MetricSpec(
    "damo_export_throughput_images_per_second",
    "Images per second of an exported model at its mean latency")
MODEL_PARAMS = MetricSpec("damo_model_params_millions", "Parameters of the model, millions")
TRAIN_LOSS = MetricSpec("damo_train_loss", "Mean training loss of the last finished epoch")
TRAIN_EPOCH = MetricSpec("damo_train_epoch", "Number of the last finished training epoch")
TRAIN_EPOCH_SECONDS = MetricSpec("damo_train_epoch_seconds",
                                 "Wall-clock seconds of the last finished training epoch")

ALL_METRICS = (EVAL_AP, EVAL_AP50, EXPORT_LATENCY, EXPORT_THROUGHPUT, MODEL_PARAMS, TRAIN_LOSS,
               TRAIN_EPOCH, TRAIN_EPOCH_SECONDS)

# Series Triton Inference Server exposes on :8002/metrics (counters, microseconds), which the
# latency dashboard reads; named here so tests and dashboards agree on them.
TRITON_REQUEST_SUCCESS = "nv_inference_request_success"
TRITON_REQUEST_FAILURE = "nv_inference_request_failure"
TRITON_INFERENCE_COUNT = "nv_inference_count"
TRITON_EXEC_COUNT = "nv_inference_exec_count"
TRITON_REQUEST_DURATION = "nv_inference_request_duration_us"
TRITON_QUEUE_DURATION = "nv_inference_queue_duration_us"
TRITON_COMPUTE_INFER_DURATION = "nv_inference_compute_infer_duration_us"
TRITON_COUNTERS = (TRITON_REQUEST_SUCCESS, TRITON_REQUEST_FAILURE, TRITON_INFERENCE_COUNT,
                   TRITON_EXEC_COUNT, TRITON_REQUEST_DURATION, TRITON_QUEUE_DURATION,
                   TRITON_COMPUTE_INFER_DURATION)
