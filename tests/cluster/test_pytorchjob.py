"""The PyTorchJob the training step builds validates against the Training Operator's CRD
schema kept in manifests/crds (openAPIV3Schema, checked with jsonschema), and its pod template
against Kubernetes' own PodTemplate schema; bad input fails with a message naming the field."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml

from damo_core.cli.app import app
from damo_core.cluster import build_pytorchjob, train_job_spec

CRD = Path(__file__).parents[2] / "manifests/crds/kubeflow.org_pytorchjobs.yaml"
ARGS = ("train", "--model", "damoyolo_s", "--data", "/workspace/data/dataset.yaml",
        "--out", "/workspace/runs/s")
SECRETS = {"AWS_ACCESS_KEY_ID": ("damo-minio", "accesskey"),
           "AWS_SECRET_ACCESS_KEY": ("damo-minio", "secretkey")}


@functools.cache
def crd_validator() -> jsonschema.Draft7Validator:
    """jsonschema over the CRD's openAPIV3Schema (x-kubernetes-* keys are ignored)."""
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(version["schema"]["openAPIV3Schema"])


def job(**options: Any) -> dict[str, Any]:
    return build_pytorchjob(train_job_spec("damo-teacher-l", "ghcr.io/damo/gpu:0.1.0", ARGS,
                                           secret_env=SECRETS, volume_claim="damo-workspace",
                                           **options))


@pytest.mark.parametrize("nodes", [1, 3])
def test_job_validates_against_crd_schema(nodes):
    body = job(nodes=nodes, gpus_per_node=2, env={"NCCL_DEBUG": "WARN"})
    crd_validator().validate(body)
    replicas = body["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1
    assert replicas.get("Worker", {}).get("replicas", 0) == nodes - 1
    assert body["spec"]["nprocPerNode"] == "2"


def test_crd_schema_rejects_a_broken_job():
    body = job(nodes=2)
    broken = copy.deepcopy(body)
    broken["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        crd_validator().validate(broken)
    broken = copy.deepcopy(body)
    del broken["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0][
        "name"]
    with pytest.raises(jsonschema.ValidationError, match="'name' is a required property"):
        crd_validator().validate(broken)
    del broken["spec"]["pytorchReplicaSpecs"]
    with pytest.raises(jsonschema.ValidationError, match="pytorchReplicaSpecs"):
        crd_validator().validate(broken)


def test_pod_template_validates_against_kubernetes_schema():
    import kubernetes_validate

    template = job(nodes=2)["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate",
                                  "metadata": {"name": "worker"}, "template": template},
                                 "1.31.0", strict=True)


def test_container_runs_torchrun_on_an_existing_damo_command_with_secret_env():
    body = job(nodes=2, gpus_per_node=4)
    pod = body["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "pytorch"  # the operator's contract
    command = container["command"]
    assert command[:3] == ["torchrun", "--no-python", "--nproc-per-node=4"]
    assert command[3] == "damo" and command[4] in typer.main.get_command(app).commands
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert container["resources"]["requests"] == container["resources"]["limits"]
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "damo-minio", "key": "secretkey"}
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == ["damo-workspace"]


@pytest.mark.parametrize(("options", "field"), [
    ({"name": "Damo_Teacher"}, "name"),
    ({"nodes": 0}, "nodes"),
    ({"gpus_per_node": -1}, "gpus_per_node"),
    ({"memory": "lots"}, "memory"),
    ({"image": ""}, "image"),
])
def test_bad_input_names_the_field(options, field):
    kwargs = {"name": "ok", "image": "img:1", "damo_args": ARGS, **options}
    name, image, args = kwargs.pop("name"), kwargs.pop("image"), kwargs.pop("damo_args")
    with pytest.raises(ValueError, match=field):
        train_job_spec(name, image, args, **kwargs)
