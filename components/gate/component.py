from kfp import dsl
from kfp.dsl import Artifact, Output

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def gate(model_name: str, ap50: float, latency_ms: float, map_floor: float,
         latency_budget_ms: float, verdict: Output[Artifact]) -> bool:
    """Pass a model on to deployment only if AP50 >= map_floor and latency <= budget.

    The decision is the single return value (``Output``), which ``dsl.If`` tests; the reason
    goes to the step's log and the ``verdict`` artifact's metadata. (A named output would read
    more nicely, but KFP's local runner resolves conditions only on ``Output``.)

    Returns:
        True when the model may be deployed.
    """
    from damo_core.steps import gate as check

    ok, why = check({"AP50": ap50}, latency_ms, map_floor=map_floor,
                    latency_budget_ms=latency_budget_ms)
    reason = f"{model_name}: {'PASS' if ok else 'FAIL'}: {why}"
    print(f"gate {reason}")
    verdict.metadata.update({"model_name": model_name, "passed": ok, "reason": reason})
    return ok
