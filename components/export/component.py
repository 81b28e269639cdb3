from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def export(model: Input[Model], data: Input[Dataset], fmt: str, exported: Output[Model],
           dynamic_batch: bool = False, precision: str = "fp32", run_id: str = "",
           mlflow_uri: str = "", mlflow_experiment: str = "damo-yolo"):
    """Reparameterise (fuse RepConv and BatchNorm) and export for deployment.

    Args:
        data: the unified dataset: calibrates INT8 (train split) and measures what BF16/INT8
            cost in val AP50 against FP32 (recorded in the export's metadata).
        fmt: onnx, openvino (CPU) or tensorrt (needs the GPU image and a GPU node).
        precision: fp32, int8, bf16 (openvino: FP32 weights run with the BF16 hint, for CPUs
            with AMX or AVX-512-BF16) or auto (openvino: every precision the export pod's CPU
            runs is exported, timed and evaluated; the fastest within the accuracy limits is
            kept).
        dynamic_batch: any batch size (Triton's native variant then batches requests).
        run_id: the pipeline run, by which (with the model's name) the MLflow run is found.
        mlflow_uri: MLflow tracking server whose run of this model gets the exported files
            ("" = no MLflow); a new run if the training logged none.
        mlflow_experiment: MLflow experiment of that run.
    """
    from damo_core.steps.export import run

    exported.metadata.update(run(model.path, exported.path, fmt=fmt, precision=precision,
                                 data=data.path if precision != "fp32" else None,
                                 dynamic_batch=dynamic_batch, run_id=run_id,
                                 mlflow_uri=mlflow_uri, mlflow_experiment=mlflow_experiment))
