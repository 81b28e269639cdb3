"""The compiled pipeline is valid KFP IR with the paper's DAG, images and resources set."""

from __future__ import annotations

import pytest
import yaml
from kfp import components

from pipelines.damo_pipeline import compile_pipeline
from pipelines.remote import walk_tasks


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ir") / "pipeline.yaml"
    compile_pipeline(str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    return path, docs[0], docs[1] if len(docs) > 1 else {}


def _producer(task: dict, artifact: str) -> str:
    return task["inputs"]["artifacts"][artifact]["taskOutputArtifact"]["producerTask"]


def _model_of(spec: dict, task_name: str) -> str:
    """The zoo model a training task trains: follow its model_config to the nas task."""
    tasks = spec["root"]["dag"]["tasks"]
    nas = tasks[_producer(tasks[task_name], "model_config")]
    return nas["inputs"]["parameters"]["model"]["componentInputParameter"]


def test_ir_loads_back_with_the_sdk(ir):
    path, spec, _ = ir
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "damo-yolo"
    assert spec["pipelineInfo"]["name"] == "damo-yolo"


def test_distillation_chain_edges(ir):
    _, spec, _ = ir
    tasks = spec["root"]["dag"]["tasks"]
    teacher_of = {
        _model_of(spec, name): _model_of(spec, _producer(task, "teacher"))
        for name, task in tasks.items() if name.startswith("distill")
    }
    assert teacher_of == {"model_m": "model_l", "model_s": "model_m", "model_t": "model_s"}
    size_of = {_model_of(spec, name): task["inputs"]["parameters"]["size"]["runtimeValue"][
        "constant"] for name, task in tasks.items() if name.startswith("distill")}
    assert size_of == {"model_m": "M", "model_s": "S", "model_t": "T"}
    assert _model_of(spec, "train") == "model_l"
    assert _producer(tasks["train"], "data") == "unify"


def test_control_is_the_last_student_alone_and_reaches_the_report(ir):
    """The control trains the distilled T's model with the students' settings, no teacher, and
    only the report reads it: it is never evaluated, gated or deployed as a model of the run."""
    _, spec, _ = ir
    tasks = spec["root"]["dag"]["tasks"]
    control = tasks["train-2"]
    assert _model_of(spec, "train-2") == "model_t"
    assert _model_of(spec, "train-2") == _model_of(spec, "distill-3")
    assert "teacher" not in control["inputs"].get("artifacts", {})
    params = control["inputs"]["parameters"]
    assert params["settings"] == {"componentInputParameter": "student_settings"}
    assert params["control"]["runtimeValue"]["constant"] is True
    # ... and the distillation's settings, whose gradient clip its twin trains with
    assert params["distill_settings"] == {"componentInputParameter": "distill_settings"}
    assert "distill_settings" not in tasks["train"]["inputs"]["parameters"]
    assert tasks["train"]["inputs"]["parameters"]["settings"] == {
        "componentInputParameter": "teacher_settings"}
    # the control trains with T's settings, per-size entry included, as its distilled twin
    for name in ("train-2", "distill-3"):
        size_params = tasks[name]["inputs"]["parameters"]
        assert size_params["size"]["runtimeValue"]["constant"] == "T"
        assert size_params["size_settings"] == {
            "componentInputParameter": "student_size_settings"}
    assert "size" not in tasks["train"]["inputs"]["parameters"]  # the teacher: none applies
    readers = [name for name, task in tasks.items()
               if any(a.get("taskOutputArtifact", {}).get("producerTask") == "train-2"
                      for a in task["inputs"].get("artifacts", {}).values())]
    assert readers == ["report"]


def test_every_model_is_evaluated_and_gated(ir):
    _, spec, _ = ir
    tasks = spec["root"]["dag"]["tasks"]
    evaluated = {_model_of(spec, _producer(t, "model")) for n, t in tasks.items()
                 if n.startswith("evaluate")}
    assert evaluated == {"model_l", "model_m", "model_s", "model_t"}
    gates = [t for n, t in tasks.items() if n.startswith("gate")]
    assert len(gates) == 4
    for g in gates:
        params = g["inputs"]["parameters"]
        ap50 = params["ap50"]["taskOutputParameter"]["producerTask"]
        latency = tasks[params["latency_ms"]["taskOutputParameter"]["producerTask"]]
        exported = tasks[_producer(latency, "exported")]
        assert ap50.startswith("evaluate")
        # the latency gated is that of the same model whose AP50 is gated
        assert _producer(exported, "model") == _producer(tasks[ap50], "model")


def test_images_resources_and_cluster_settings(ir):
    _, spec, platform = ir
    executors = spec["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"].startswith("ghcr.io/damo-pipeline/"), name
        resources = container["resources"]
        assert resources["resourceCpuLimit"] and resources["resourceMemoryLimit"], name
    for name in ("exec-train", "exec-distill"):  # GPUs: the gpus_per_node parameter
        accelerator = executors[name]["container"]["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu"
        assert "gpus_per_node" in accelerator["resourceCount"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-train"]["nodeSelector"]["labels"] == {
        "nvidia.com/gpu.present": "true"}
    assert all(int(e["activeDeadlineSeconds"]) > 0 for e in k8s.values())  # timeouts
    assert int(k8s["exec-distill"]["activeDeadlineSeconds"]) > int(
        k8s["exec-evaluate"]["activeDeadlineSeconds"])
    secret_env = k8s["exec-unify"]["secretAsEnv"][0]
    assert {e["envVar"] for e in secret_env["keyToEnv"]} == {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    steps = [t for _, t in walk_tasks(spec) if "dag" not in spec["components"][
        t["componentRef"]["name"]]]  # container steps, not the condition groups
    assert len(steps) == 31  # unify, 4 nas, teacher, 3 distill, control, 4 x (eval, export,
    #                          bench, gate, deploy), report
    assert all(t.get("cachingOptions", {}).get("enableCache") for t in steps)
    assert all(t.get("retryPolicy", {}).get("maxRetryCount") == 1 for t in steps)


def test_no_model_deploys_without_passing_its_gate(ir):
    """Each deploy sits in a condition triggered by one gate's ``passed``, and deploys the
    export of the very model that gate judged."""
    _, spec, _ = ir
    tasks = spec["root"]["dag"]["tasks"]
    deployed_models = set()
    for name, task in tasks.items():
        component = spec["components"][task["componentRef"]["name"]]
        if "dag" not in component:
            assert not name.startswith("deploy"), "a deploy outside any gate condition"
            continue
        inputs = task["inputs"]["parameters"]
        passed = [v["taskOutputParameter"]["producerTask"] for k, v in inputs.items()
                  if k.startswith("pipelinechannel--gate")]
        assert len(passed) == 1 and passed[0].startswith("gate")
        gate_name = passed[0]
        assert "== true" in task["triggerPolicy"]["condition"]
        [inner] = component["dag"]["tasks"].values()
        assert inner["componentRef"]["name"].startswith("comp-deploy")
        export_name = task["inputs"]["artifacts"]["pipelinechannel--" + inner["inputs"][
            "artifacts"]["exported"]["componentInputArtifact"].removeprefix(
            "pipelinechannel--")]["taskOutputArtifact"]["producerTask"]
        # the gate judged the latency of this export and the AP50 of the same model
        latency = tasks[tasks[gate_name]["inputs"]["parameters"]["latency_ms"][
            "taskOutputParameter"]["producerTask"]]
        assert _producer(latency, "exported") == export_name
        deployed_models.add(_model_of(spec, _producer(tasks[export_name], "model")))
    assert deployed_models == {"model_l", "model_m", "model_s", "model_t"}


def test_only_the_deploy_step_may_change_what_triton_serves(ir):
    """The deploy executor alone carries the pod label Triton's NetworkPolicy admits and the
    repository-API key from its Secret (manifests/base/triton*.yaml)."""
    _, _, platform = ir
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    deploy = k8s["exec-deploy"]
    assert deploy["podMetadata"]["labels"] == {"damo-yolo/triton-deployer": "true"}
    keyed = [s for s in deploy["secretAsEnv"] if s["secretName"] == "damo-triton-admin"]
    assert [e["envVar"] for e in keyed[0]["keyToEnv"]] == ["DAMO_TRITON_ADMIN_KEY"]
    for name, executor in k8s.items():
        if not name.startswith("exec-deploy"):
            assert "damo-yolo/triton-deployer" not in executor.get("podMetadata", {}).get(
                "labels", {}), name
            assert all(s["secretName"] != "damo-triton-admin"
                       for s in executor.get("secretAsEnv", [])), name
