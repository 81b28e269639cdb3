from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components._image import DAMO_GPU_IMAGE


@dsl.component(base_image=DAMO_GPU_IMAGE, install_kfp_package=False)
def distill(data: Input[Dataset], model_config: Input[Artifact], teacher: Input[Model],
            preset: str, settings: dict, distill_settings: dict, model: Output[Model],
            metrics: Output[Metrics], curves: Output[HTML], run_id: str = "", nodes: int = 1,
            gpus_per_node: int = 1, workspace_pvc: str = "",
            job_kind: str = "pytorchjob", mlflow_uri: str = "",
            mlflow_experiment: str = "damo-yolo", size: str = "",
            size_settings: dict = {}) -> float:  # noqa: B006 - KFP declares defaults as literals
    """Train a student with channel-wise feature distillation from ``teacher`` (paper 2.4).

    The run's TensorBoard event files stay in the model artifact (its tensorboard/ folder, for
    ``tensorboard --logdir``). KFP v2 has no TensorBoard output type, so ``curves`` is an HTML
    page rendered from those files (loss, learning-rate, distillation-weight and AP curves, a
    per-epoch table, the latest sample predictions), which the KFP UI shows.

    Args:
        distill_settings: CWD weight, temperature (see damo_core.train.distill.DistillConfig).
        run_id: the pipeline run, the label of the training's pushed metrics.
        nodes: 1 trains in this pod; N > 1 runs a job of N pods (``job_kind``).
        gpus_per_node: ranks per pod (torchrun when > 1).
        workspace_pvc: ReadWriteMany PVC shared with the job (mounted at /workspace).
        job_kind: "pytorchjob" (Training Operator v1) or "trainjob" (Kubeflow Trainer v2).
        mlflow_uri: MLflow tracking server to log the training to as well ("" = no MLflow);
            the run is tagged with run_id and the student's name and also records the teacher
            and the distillation settings; its id and page go into the model's metadata.
        mlflow_experiment: MLflow experiment of that run.
        size: the size this student is (M, S or T), whose entry of ``size_settings`` applies.
        size_settings: per student size, training settings laid over ``settings`` (e.g.
            {"M": {"epochs": 10}}); {} = every size trains with ``settings``.
    Returns:
        Validation AP50 of the student's best checkpoint.
    """
    from components._image import DAMO_GPU_IMAGE
    from damo_core.steps._training import Placement
    from damo_core.steps.distill import run

    meta = run(data.path, model.path, model=model_config.path, teacher=teacher.path,
               settings=settings, distill_settings=distill_settings, preset=preset,
               run_id=run_id, placement=Placement(nodes, gpus_per_node, workspace_pvc,
                                                  DAMO_GPU_IMAGE, job_kind),
               page=curves.path, mlflow_uri=mlflow_uri, mlflow_experiment=mlflow_experiment,
               size=size, size_settings=size_settings)
    model.metadata.update(meta)
    for key in ("AP", "AP50"):
        metrics.log_metric(key, meta[key])
    return meta["AP50"]
