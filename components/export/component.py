from kfp import dsl
from kfp.dsl import Input, Model, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def export(model: Input[Model], fmt: str, exported: Output[Model], dynamic_batch: bool = False,
           run_id: str = "", mlflow_uri: str = "", mlflow_experiment: str = "damo-yolo"):
    """Reparameterise (fuse RepConv and BatchNorm) and export for deployment.

    Args:
        fmt: onnx, openvino (CPU) or tensorrt (needs the GPU image and a GPU node).
        dynamic_batch: any batch size (Triton's native variant then batches requests).
        run_id: the pipeline run, by which (with the model's name) the MLflow run is found.
        mlflow_uri: MLflow tracking server whose run of this model gets the exported files
            ("" = no MLflow); a new run if the training logged none.
        mlflow_experiment: MLflow experiment of that run.
    """
    from damo_core.steps.export import run

    exported.metadata.update(run(model.path, exported.path, fmt=fmt,
                                 dynamic_batch=dynamic_batch, run_id=run_id,
                                 mlflow_uri=mlflow_uri, mlflow_experiment=mlflow_experiment))
