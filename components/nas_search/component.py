from kfp import dsl
from kfp.dsl import Artifact, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def nas_search(model: str, budget_params_m: float, budget_gflops: float, generations: int,
               seed: int, model_config: Output[Artifact]):
    """MAE-NAS backbone search for one model size under params/GFLOPs budgets (0 = none), on CPU.

    Args:
        model: zoo name (damoyolo_l ...) whose published structure seeds the search.
        generations: evolution rounds; 0 keeps the published structure (budget-checked).
    """
    from damo_core.steps import nas_step

    meta = nas_step(model, model_config.path, budget_params_m=budget_params_m,
                    budget_gflops=budget_gflops, generations=generations, seed=seed)
    model_config.metadata.update(meta)
