"""KFP component: evaluate (a shell over damo_core.steps.evaluate.run)."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def evaluate(data: Input[Dataset], model: Input[Model], metrics: Output[Metrics],
             plots: Output[Artifact], page: Output[Markdown], run_id: str = "") -> float:
    """COCO AP, AP50, AP75, APs/m/l of a trained model on the val split, the confidence
    threshold with the best mean F1 (in the metrics' metadata), the confusion matrix and
    precision-recall and F1-confidence plots (plots), and a page with per-class AP (page).

    Args:
        run_id: the pipeline run, the label of the pushed metrics.
    Returns:
        AP50, the metric the gate checks.
    """
    from damo_core.steps.evaluate import METRICS, run

    result = run(model.path, data.path, run_id=run_id, out_dir=plots.path,
                 report_md=page.path)
    for key in METRICS:
        metrics.log_metric(key, result[key])
    metrics.metadata["model_name"] = result["model_name"]
    metrics.metadata["best_f1_threshold"] = result["best_f1_threshold"]
    return result["AP50"]
