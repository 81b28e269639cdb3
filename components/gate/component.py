from kfp import dsl
from kfp.dsl import Artifact, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def gate(model_name: str, ap50: float, latency_ms: float, map_floor: float,
         latency_budget_ms: float, verdict: Output[Artifact], run_id: str = "",
         mlflow_uri: str = "", mlflow_experiment: str = "damo-yolo") -> bool:
    """Pass a model on to deployment only if AP50 >= map_floor and latency <= budget.

    NaN or infinite AP50 or latency is a FAIL; a map_floor outside [0, 1] or a
    latency_budget_ms that is not a finite number > 0 fails the step (before any deploy).

    The decision is the single return value (``Output``), which ``dsl.If`` tests; the reason
    goes to the step's log and the ``verdict`` artifact's metadata. (A named output would read
    more nicely, but KFP's local runner resolves conditions only on ``Output``.)

    Args:
        run_id: the pipeline run, by which (with model_name) the MLflow run is found.
        mlflow_uri: MLflow tracking server whose run of this model gets the verdict as the
            tags damo.gate (pass or fail) and damo.gate.reason ("" = no MLflow).
        mlflow_experiment: MLflow experiment of that run.
    Returns:
        True when the model may be deployed.
    """
    from damo_core.steps.gate import run

    result = run({"AP50": ap50}, latency_ms, map_floor=map_floor,
                 latency_budget_ms=latency_budget_ms, model_name=model_name, run_id=run_id,
                 mlflow_uri=mlflow_uri, mlflow_experiment=mlflow_experiment)
    print(f"gate {result['reason']}")
    verdict.metadata.update(result)
    return result["passed"]
