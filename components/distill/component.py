from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components._image import DAMO_GPU_IMAGE


@dsl.component(base_image=DAMO_GPU_IMAGE, install_kfp_package=False)
def distill(data: Input[Dataset], model_config: Input[Artifact], teacher: Input[Model],
            preset: str, settings: dict, distill_settings: dict, model: Output[Model],
            metrics: Output[Metrics]) -> float:
    """Train a student with channel-wise feature distillation from ``teacher`` (paper 2.4).

    Args:
        distill_settings: CWD weight, temperature (see damo_core.train.distill.DistillConfig).
    Returns:
        Validation AP50 of the student's best checkpoint.
    """
    from damo_core.steps import train_model

    meta = train_model(data.path, model.path, model=model_config.path, settings=settings,
                       preset=preset, teacher_dir=teacher.path,
                       distill_settings=distill_settings)
    meta["teacher"] = teacher.metadata.get("model_name")
    model.metadata.update(meta)
    for key in ("AP", "AP50"):
        metrics.log_metric(key, meta[key])
    return meta["AP50"]
