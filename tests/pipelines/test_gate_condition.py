"""The gate really stops deployment at run time: the project's gate component feeding a
``dsl.If`` exactly as in the DAG, run by KFP's local runner with a floor the model misses and
one it meets."""

import json

import pytest
from kfp import dsl, local
from kfp.dsl import Artifact, Output

from components.gate.component import gate


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def stand_in_deploy(out: Output[Artifact]):
    """Marks that the guarded branch ran (the real deploy needs a server; see test_local_run)."""
    with open(out.path, "w") as f:
        f.write("deployed")


@dsl.pipeline(name="gate-check")
def gated(map_floor: float):
    verdict = gate(model_name="damoyolo_t", ap50=0.4, latency_ms=5.0, map_floor=map_floor,
                   latency_budget_ms=10.0)
    with dsl.If(verdict.outputs["Output"] == True):  # noqa: E712 - as in damo_pipeline
        stand_in_deploy()


@pytest.mark.parametrize(("floor", "deployed"), [(0.5, False), (0.3, True)])
def test_deploy_runs_only_when_the_gate_passes(tmp_path, floor, deployed):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path),
               raise_on_error=True)
    gated(map_floor=floor)
    [run] = [p for p in tmp_path.iterdir() if p.is_dir()]
    verdict = json.loads((run / "gate" / "executor_output.json").read_text())
    meta = verdict["artifacts"]["verdict"]["artifacts"][0]["metadata"]
    assert meta["passed"] is deployed
    assert meta["reason"].startswith(f"damoyolo_t: {'PASS' if deployed else 'FAIL'}")
    assert any(run.rglob("stand-in-deploy/out")) is deployed
