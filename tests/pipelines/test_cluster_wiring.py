"""The compiled pipeline wires the cluster pieces: training placement parameters reach the
training steps, which mount the workspace PVC named by a parameter where a PyTorchJob's pods
mount it too; every step reads the Pushgateway from the ConfigMap; every step that pushes
metrics gets the KFP run name as its run id."""

from __future__ import annotations

import pytest
import yaml
from kfp import dsl

from damo_core.cluster.placement import WORKSPACE
from pipelines.damo_pipeline import PIPELINE_ENV, compile_pipeline
from pipelines.remote import walk_tasks

TRAINING = ("train", "distill", "distill-2", "distill-3", "train-2")  # train-2: the control
PUSHING_PREFIXES = ("train", "distill", "evaluate", "benchmark")


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ir") / "pipeline.yaml"
    compile_pipeline(str(path))
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _executor(spec: dict, task: dict) -> str:
    return spec["components"][task["componentRef"]["name"]]["executorLabel"]


def _container_tasks(spec: dict) -> dict[str, dict]:
    return {path[-1]: task for path, task in walk_tasks(spec)
            if "executorLabel" in spec["components"][task["componentRef"]["name"]]}


def test_placement_parameters_are_declared(ir):
    spec, _ = ir
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["train_nodes"] == {"defaultValue": 1, "isOptional": True,
                                     "parameterType": "NUMBER_INTEGER"}
    assert params["gpus_per_node"]["defaultValue"] == 1
    assert params["workspace_pvc"]["defaultValue"] == "damo-workspace"


def test_training_steps_get_the_placement_and_mount_the_workspace(ir):
    spec, k8s = ir
    tasks = spec["root"]["dag"]["tasks"]
    for name in TRAINING:
        inputs = tasks[name]["inputs"]["parameters"]
        assert inputs["nodes"] == {"componentInputParameter": "train_nodes"}, name
        assert inputs["gpus_per_node"] == {"componentInputParameter": "gpus_per_node"}, name
        assert inputs["workspace_pvc"] == {"componentInputParameter": "workspace_pvc"}, name
        executor = _executor(spec, tasks[name])
        (mount,) = k8s[executor]["pvcMount"]
        assert mount["mountPath"] == WORKSPACE
        assert mount["pvcNameParameter"] == {"componentInputParameter": "workspace_pvc"}
        # the pod gets the GPUs torchrun starts ranks on
        gpus = spec["deploymentSpec"]["executors"][executor]["container"]["resources"][
            "accelerator"]["resourceCount"]
        channel = gpus.split("'")[1]
        assert inputs[channel] == {"componentInputParameter": "gpus_per_node"}
    # nothing else mounts the workspace
    mounted = {label for label, e in k8s.items() if "pvcMount" in e}
    assert mounted == {_executor(spec, tasks[name]) for name in TRAINING}


def test_every_step_reads_the_pushgateway_from_the_configmap(ir):
    spec, k8s = ir
    steps = _container_tasks(spec)
    assert len(steps) == 31
    for name, task in steps.items():
        (env,) = k8s[_executor(spec, task)]["configMapAsEnv"]
        assert env["configMapName"] == PIPELINE_ENV, name
        assert env["keyToEnv"] == [{"configMapKey": "pushgateway",
                                    "envVar": "DAMO_PUSHGATEWAY"}], name
        assert env["optional"] is True, name  # a cluster without monitoring still runs


def test_pushing_steps_get_the_run_name_as_run_id(ir):
    spec, _ = ir
    pushing = {name: task for name, task in _container_tasks(spec).items()
               if name.startswith(PUSHING_PREFIXES)}
    # teacher, 3 distillations, the control (its step appends "-control"), 4 evaluations,
    # 4 benchmarks
    assert len(pushing) == 13
    for name, task in pushing.items():
        run_id = task["inputs"]["parameters"]["run_id"]
        assert run_id == {"runtimeValue": {"constant": dsl.PIPELINE_JOB_NAME_PLACEHOLDER}}, name
    assert dsl.PIPELINE_JOB_NAME_PLACEHOLDER == "{{$.pipeline_job_name}}"
