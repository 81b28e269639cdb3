from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components._image import DAMO_GPU_IMAGE


@dsl.component(base_image=DAMO_GPU_IMAGE, install_kfp_package=False)
def train_teacher(data: Input[Dataset], model_config: Input[Artifact], preset: str,
                  settings: dict, model: Output[Model], metrics: Output[Metrics]) -> float:
    """Train the largest model from scratch; it teaches the first distillation link.

    Args:
        preset: training preset name (cpu_quick) or "" for the paper's settings.
        settings: training overrides (epochs, batch, img_size, ...).
    Returns:
        Validation AP50 of the best checkpoint.
    """
    from damo_core.steps import train_model

    meta = train_model(data.path, model.path, model=model_config.path, settings=settings,
                       preset=preset)
    model.metadata.update(meta)
    for key in ("AP", "AP50"):
        metrics.log_metric(key, meta[key])
    return meta["AP50"]
