from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components._image import DAMO_GPU_IMAGE


@dsl.component(base_image=DAMO_GPU_IMAGE, install_kfp_package=False)
def train(data: Input[Dataset], model_config: Input[Artifact], preset: str, settings: dict,
          model: Output[Model], metrics: Output[Metrics], curves: Output[HTML], run_id: str = "",
          nodes: int = 1, gpus_per_node: int = 1, workspace_pvc: str = "",
          job_kind: str = "pytorchjob", mlflow_uri: str = "",
          mlflow_experiment: str = "damo-yolo", control: bool = False, size: str = "",
          size_settings: dict = {},  # noqa: B006 - KFP declares defaults as literals
          distill_settings: dict = {}) -> float:  # noqa: B006
    """Train a model from scratch: the largest, which teaches the first distillation link, or
    (``control``) a student alone with the distilled students' settings, so the report can set
    it beside its distilled twin.

    The run's TensorBoard event files stay in the model artifact (its tensorboard/ folder, for
    ``tensorboard --logdir``). KFP v2 has no TensorBoard output type, so ``curves`` is an HTML
    page rendered from those files (loss, learning-rate and AP curves, a per-epoch table, the
    latest sample predictions), which the KFP UI shows.

    Args:
        preset: training preset name (cpu_quick) or "" for the paper's settings.
        settings: training overrides (epochs, batch, img_size, augment: {...}, ...).
        run_id: the pipeline run, the label of the training's pushed metrics.
        nodes: 1 trains in this pod; N > 1 runs a job of N pods (``job_kind``).
        gpus_per_node: ranks per pod (torchrun when > 1).
        workspace_pvc: ReadWriteMany PVC shared with the job (mounted at /workspace).
        job_kind: "pytorchjob" (Training Operator v1) or "trainjob" (Kubeflow Trainer v2).
        mlflow_uri: MLflow tracking server to log the training to as well ("" = no MLflow);
            the run is tagged with run_id and the model's name, and its id and page go into
            the model's metadata.
        mlflow_experiment: MLflow experiment of that run.
        control: this is the control training; its run id gets "-control" appended (metric
            pushes, MLflow tags), since the model has the distilled student's name.
        size: "" for the teacher; for the control, the student size it trains alone (T),
            whose entry of ``size_settings`` applies as it does to its distilled twin.
        size_settings: per student size, training settings laid over ``settings`` (e.g.
            {"M": {"epochs": 10}}); {} = every size trains with ``settings``.
        distill_settings: for the control, its distilled twin's distillation settings: it
            takes their gradient clip (the reference's 30 by default) unless ``settings`` or
            the preset set one, so it differs from the twin only by the teacher. Unused
            otherwise.
    Returns:
        Validation AP50 of the best checkpoint.
    """
    from components._image import DAMO_GPU_IMAGE
    from damo_core.steps._training import Placement
    from damo_core.steps.train import run

    meta = run(data.path, model.path, model=model_config.path, settings=settings, preset=preset,
               run_id=run_id, placement=Placement(nodes, gpus_per_node, workspace_pvc,
                                                  DAMO_GPU_IMAGE, job_kind),
               page=curves.path, mlflow_uri=mlflow_uri, mlflow_experiment=mlflow_experiment,
               control=control, size=size, size_settings=size_settings,
               distill_settings=distill_settings)
    model.metadata.update(meta)
    for key in ("AP", "AP50"):
        metrics.log_metric(key, meta[key])
    return meta["AP50"]
