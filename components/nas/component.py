from kfp import dsl
from kfp.dsl import Artifact, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def nas(model: str, budget_params_m: float, budget_gflops: float, generations: int, seed: int,
        model_config: Output[Artifact]):
    """MAE-NAS backbone search for one model size under params/GFLOPs budgets, on CPU.

    Args:
        model: zoo name (damoyolo_l ...) whose published structure seeds the search.
        budget_params_m, budget_gflops: whole deploy model; 0 = the paper's for that model.
        generations: evolution rounds; 0 keeps the published structure (checked against the
            budgets given).
    """
    from damo_core.steps.nas import run

    model_config.metadata.update(run(model, model_config.path, budget_params_m=budget_params_m,
                                     budget_gflops=budget_gflops, generations=generations,
                                     seed=seed))
