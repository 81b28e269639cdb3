from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def evaluate(data: Input[Dataset], model: Input[Model], metrics: Output[Metrics]) -> float:
    """COCO AP, AP50, AP75, APs/m/l of a trained model on the val split.

    Returns:
        AP50, the metric the gate checks.
    """
    from damo_core.steps import evaluate_model

    result = evaluate_model(model.path, data.path)
    for key, value in result.items():
        metrics.log_metric(key, value)
    metrics.metadata["model_name"] = model.metadata.get("model_name")
    return result["AP50"]
