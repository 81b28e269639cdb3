from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def benchmark(exported: Input[Model], runs: int, metrics: Output[Metrics],
              run_id: str = "") -> float:
    """Batch-1 latency of the exported model (warm-up, then timed runs; no postprocessing).

    Args:
        run_id: the pipeline run, the label of the pushed metrics.
    Returns:
        The median latency in milliseconds, which the gate checks against the budget.
    """
    from damo_core.steps import benchmark_step

    stats = benchmark_step(exported.path, fmt=exported.metadata["format"],
                           image_size=exported.metadata["image_size"], runs=runs,
                           model_name=exported.metadata["model_name"], run_id=run_id)
    for key in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "throughput"):
        metrics.log_metric(key, stats[key])
    metrics.metadata.update({k: stats[k] for k in ("format",)})
    metrics.metadata["model_name"] = exported.metadata["model_name"]
    return stats["p50_ms"]
