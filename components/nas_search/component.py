from kfp import dsl
from kfp.dsl import Artifact, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def nas_search(model: str, budget_params_m: float, budget_gflops: float,
               model_config: Output[Artifact]):
    """Backbone structure for one model size, checked against params/GFLOPs budgets (0 = none).

    Args:
        model: zoo name (damoyolo_l ...) whose structure seeds the search.
    """
    from damo_core.steps import resolve_backbone

    meta = resolve_backbone(model, model_config.path, budget_params_m=budget_params_m,
                            budget_gflops=budget_gflops)
    model_config.metadata.update(meta)
