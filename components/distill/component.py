from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components._image import DAMO_GPU_IMAGE


@dsl.component(base_image=DAMO_GPU_IMAGE, install_kfp_package=False)
def distill(data: Input[Dataset], model_config: Input[Artifact], teacher: Input[Model],
            preset: str, settings: dict, distill_settings: dict, model: Output[Model],
            metrics: Output[Metrics], run_id: str = "", nodes: int = 1, gpus_per_node: int = 1,
            workspace_pvc: str = "") -> float:
    """Train a student with channel-wise feature distillation from ``teacher`` (paper 2.4).

    Args:
        distill_settings: CWD weight, temperature (see damo_core.train.distill.DistillConfig).
        run_id: the pipeline run, the label of the training's pushed metrics.
        nodes: 1 trains in this pod; N > 1 runs a PyTorchJob of N pods.
        gpus_per_node: ranks per pod (torchrun when > 1).
        workspace_pvc: ReadWriteMany PVC shared with the PyTorchJob (mounted at /workspace).
    Returns:
        Validation AP50 of the student's best checkpoint.
    """
    from components._image import DAMO_GPU_IMAGE
    from damo_core.steps._training import Placement
    from damo_core.steps.distill import run

    meta = run(data.path, model.path, model=model_config.path, teacher=teacher.path,
               settings=settings, distill_settings=distill_settings, preset=preset,
               run_id=run_id, placement=Placement(nodes, gpus_per_node, workspace_pvc,
                                                  DAMO_GPU_IMAGE))
    model.metadata.update(meta)
    for key in ("AP", "AP50"):
        metrics.log_metric(key, meta[key])
    return meta["AP50"]
