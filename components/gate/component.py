from typing import NamedTuple

from kfp import dsl

from components._image import DAMO_IMAGE


@dsl.component(base_image=DAMO_IMAGE, install_kfp_package=False)
def gate(model_name: str, ap50: float, latency_ms: float, map_floor: float,
         latency_budget_ms: float) -> NamedTuple("GateOutputs", passed=bool, reason=str):
    """Pass a model on to deployment only if AP50 >= map_floor and latency <= budget.

    Returns:
        passed: True when the model may be deployed.
        reason: "<model>: why", also printed to the step's log.
    """
    from collections import namedtuple

    from damo_core.steps import gate as check

    ok, why = check({"AP50": ap50}, latency_ms, map_floor=map_floor,
                    latency_budget_ms=latency_budget_ms)
    reason = f"{model_name}: {'PASS' if ok else 'FAIL'}: {why}"
    print(f"gate {reason}")
    return namedtuple("GateOutputs", ["passed", "reason"])(ok, reason)
