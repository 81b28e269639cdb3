from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def evaluate(data: Input[Dataset], model: Input[Model], metrics: Output[Metrics],
             run_id: str = "") -> float:
    """COCO AP, AP50, AP75, APs/m/l of a trained model on the val split.

    Args:
        run_id: the pipeline run, the label of the pushed metrics.
    Returns:
        AP50, the metric the gate checks.
    """
    from damo_core.steps.evaluate import METRICS, run

    result = run(model.path, data.path, run_id=run_id)
    for key in METRICS:
        metrics.log_metric(key, result[key])
    metrics.metadata["model_name"] = result["model_name"]
    return result["AP50"]
