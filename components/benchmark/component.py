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
    from damo_core.steps.benchmark import run

    report = run(exported.path, runs=runs, run_id=run_id)
    for key in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "throughput"):
        metrics.log_metric(key, report[key])
    metrics.metadata.update({k: report[k] for k in ("format", "model_name", "cpu")})
    return report["p50_ms"]
