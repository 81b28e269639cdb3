"""The Kubeflow Trainer v2 path: the TrainJob the training step builds validates, strictly (an
unknown field is an error, as with kubectl's default server-side validation), against the
Trainer's CRD schema kept in manifests/crds; so does the ClusterTrainingRuntime it names
(manifests/trainer-v2), whose pod, with the TrainJob's fields and patch on it, is a valid Pod.
The same three placements as the PyTorchJob path run with ``job_kind="trainjob"``: in process,
torchrun in the step's pod, and a TrainJob of N nodes whose stand-in runs the job's own ``damo``
command on the "shared volume". The TrainJob's life cycle is checked against stand-in APIs."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from components._image import DAMO_GPU_IMAGE
from damo_core.cli.app import app
from damo_core.cluster import JobOutcome, TrainingJobError, build_trainjob, placement, trainjob
from damo_core.cluster import jobs as jobs_module
from damo_core.cluster.placement import Mode, PlacementError, TrainPlacement, job_name
from damo_core.cluster.pytorchjob import (
    CONTAINER_SECURITY,
    GPU_TOLERATION,
    PIPELINE_SERVICE_ACCOUNT,
    TrainJobSpec,
    train_job_spec,
)
from damo_core.cluster.trainjob import (
    NODE,
    PATCH_MANAGER,
    RUNTIME,
    TrainJobNameError,
    max_name_length,
    run_trainjob,
)
from damo_core.data.synth import generate
from damo_core.errors import UserInputError
from damo_core.metrics.push import ENV_GATEWAY, ENV_RUN
from damo_core.steps import train
from damo_core.steps._training import Placement
from tests.cluster.test_jobs import Clock, FakeApis
from tests.cluster.test_placement import META_KEYS, RUN, TINY
from tests.manifests.test_kustomize import K8S_VERSIONS, find, kubectl, render

ROOT = Path(__file__).parents[2]
CRDS = ROOT / "manifests/crds"
ARGS = ("train", "--model", "damoyolo_s", "--data", "/workspace/data/dataset.yaml",
        "--out", "/workspace/runs/s")
SECRETS = {"AWS_ACCESS_KEY_ID": ("damo-minio", "accesskey"),
           "AWS_SECRET_ACCESS_KEY": ("damo-minio", "secretkey")}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that declares its
    properties (and does not preserve unknown fields): what strict field validation enforces."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: ({name: strict(s) for name, s in v.items()} if k == "properties" else strict(v))
           for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd(plural: str) -> dict[str, Any]:
    return yaml.load((CRDS / f"trainer.kubeflow.org_{plural}.yaml").read_text(), Loader=_LOADER)


@functools.cache
def validator(plural: str) -> jsonschema.Draft7Validator:
    """jsonschema over the CRD's v1alpha1 openAPIV3Schema, strict (x-kubernetes-* ignored)."""
    (version,) = [v for v in crd(plural)["spec"]["versions"] if v["name"] == "v1alpha1"]
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def job(name: str = "damo-teacher-l", **options: Any) -> dict[str, Any]:
    return build_trainjob(train_job_spec(name, "ghcr.io/damo/gpu:0.1.0", ARGS,
                                         secret_env=SECRETS, volume_claim="damo-workspace",
                                         **options))


def pod_patch(body: dict[str, Any]) -> dict[str, Any]:
    (patch,) = body["spec"]["runtimePatches"]
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == NODE
    return replicated["template"]["spec"]["template"]


@functools.cache
def runtime() -> dict[str, Any]:
    out = subprocess.run([kubectl(), "kustomize", str(ROOT / "manifests/trainer-v2")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (doc,) = [d for d in yaml.safe_load_all(out.stdout) if d]
    return doc


def runtime_node_job() -> dict[str, Any]:
    (node,) = [j for j in runtime()["spec"]["template"]["spec"]["replicatedJobs"]
               if j["name"] == NODE]
    return node


# --- the TrainJob object against the CRD ---------------------------------------------------


@pytest.mark.parametrize("nodes", [1, 3])
def test_trainjob_validates_against_crd_schema(nodes):
    body = job(nodes=nodes, gpus_per_node=2, env={"NCCL_DEBUG": "WARN"},
               labels={"damo.run": "run-7"}, node_selector={"pool": "gpu"})
    validator("trainjobs").validate(body)
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainJob"
    assert body["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org",
                                          "kind": "ClusterTrainingRuntime", "name": RUNTIME}
    trainer = body["spec"]["trainer"]
    assert trainer["numNodes"] == nodes and trainer["numProcPerNode"] == 2
    assert trainer["command"][:4] == ["torchrun", "--no-python", "--nproc-per-node=2", "damo"]
    assert trainer["command"][4:] == list(ARGS)
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "2"
    assert trainer["resourcesPerNode"]["requests"] == trainer["resourcesPerNode"]["limits"]
    env = {e["name"]: e for e in trainer["env"]}
    assert env["NCCL_DEBUG"]["value"] == "WARN"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "damo-minio", "key": "secretkey"}
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    pod = pod_patch(body)
    assert pod["metadata"]["labels"] == {"damo.run": "run-7"}
    assert body["metadata"]["labels"]["damo.run"] == "run-7"
    spec = pod["spec"]
    assert spec["serviceAccountName"] == PIPELINE_SERVICE_ACCOUNT
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "damo-workspace"}} in (
        spec["volumes"])
    (container,) = spec["containers"]
    assert container["name"] == NODE
    assert {"name": "workspace", "mountPath": "/workspace"} in container["volumeMounts"]


def test_strict_crd_schema_rejects_a_broken_trainjob():
    body = job(nodes=2)
    broken = copy.deepcopy(body)
    broken["spec"]["trainer"]["numNode"] = 2  # a typo the API server would refuse
    with pytest.raises(jsonschema.ValidationError, match="'numNode' was unexpected"):
        validator("trainjobs").validate(broken)
    broken = copy.deepcopy(body)
    broken["spec"]["trainer"]["numNodes"] = "2"
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        validator("trainjobs").validate(broken)
    broken = copy.deepcopy(body)
    del broken["spec"]["runtimeRef"]
    with pytest.raises(jsonschema.ValidationError, match="'runtimeRef' is a required property"):
        validator("trainjobs").validate(broken)


def test_names_follow_the_crd_rule_and_fit_jobsets_pod_names():
    rules = [r["rule"] for r in crd("trainjobs")["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"]["x-kubernetes-validations"]]
    (pattern,) = [re.search(r"matches\('(.+)'\)", r).group(1) for r in rules if "matches" in r]
    longest = "t" + "x" * (max_name_length(12) - 1)
    assert re.match(pattern, job(longest, nodes=12)["metadata"]["name"])
    # JobSet's longest pod name: <name>-node-<job index>-<pod index>-<5 random>, a DNS label
    assert len(f"{longest}-{NODE}-0-11-abcde") == 63
    with pytest.raises(TrainJobNameError, match="with 12 nodes JobSet's pod names allow 47"):
        job(longest + "x", nodes=12)
    with pytest.raises(TrainJobNameError, match="must start with a letter"):
        job("7-teacher")  # a valid PyTorchJob name, not a valid TrainJob name
    assert not re.match(pattern, "7-teacher")


def test_reserved_torchrun_env_is_refused():
    with pytest.raises(UserInputError, match=r"must not set \['PET_MASTER_ADDR'\]"):
        job(env={"PET_MASTER_ADDR": "elsewhere"})


@pytest.mark.parametrize(("options", "message"), [
    ({"backoff_limit": 3}, "TrainJob has no backoff_limit: the runtime damo-torch-distributed "
                           "sets 1, got 3"),
    ({"ttl_seconds_after_finished": 60}, "TrainJob has no ttl_seconds_after_finished"),
])
def test_run_policy_a_trainjob_cannot_express_is_refused(options, message):
    with pytest.raises(UserInputError, match=message):
        job(**options)


# --- the ClusterTrainingRuntime in manifests/trainer-v2 -------------------------------------


def test_runtime_validates_against_its_crd_and_is_what_the_trainjob_names():
    doc = runtime()
    validator("clustertrainingruntimes").validate(doc)
    assert crd("clustertrainingruntimes")["spec"]["scope"] == "Cluster"
    assert doc["kind"] == "ClusterTrainingRuntime" and "namespace" not in doc["metadata"]
    assert doc["metadata"]["name"] == RUNTIME
    assert "torch" in doc["spec"]["mlPolicy"]  # the Trainer's torch plugin sets PET_*
    node = runtime_node_job()
    assert node["template"]["metadata"]["labels"] == {
        "trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
    pod = node["template"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == NODE and container["image"] == DAMO_GPU_IMAGE
    # the same frame as the PyTorchJob's pods
    assert container["securityContext"] == CONTAINER_SECURITY
    assert GPU_TOLERATION in pod["tolerations"] and pod["restartPolicy"] == "OnFailure"
    default_backoff = TrainJobSpec.__dataclass_fields__["backoff_limit"].default
    assert node["template"]["spec"]["backoffLimit"] == default_backoff


def test_patch_obeys_the_trainers_webhook_rules():
    """Only containers the runtime's job has, no env on them, a domain-prefixed manager."""
    body = job(nodes=2)
    runtime_containers = {c["name"] for c in runtime_node_job()["template"]["spec"]["template"][
        "spec"]["containers"]}
    for container in pod_patch(body)["spec"]["containers"]:
        assert container["name"] in runtime_containers and "env" not in container
    (patch,) = body["spec"]["runtimePatches"]
    assert patch["manager"] == PATCH_MANAGER
    host, path = PATCH_MANAGER.split("/", 1)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
                        host) and path


def merged_pod(body: dict[str, Any]) -> dict[str, Any]:
    """The runtime's pod template with the TrainJob on it: the trainer fields in container
    ``node``, the patch's lists merged by name (as a strategic merge patch does)."""
    template = copy.deepcopy(runtime_node_job()["template"]["spec"]["template"])
    patch = pod_patch(body)
    spec = template["spec"]
    template.setdefault("metadata", {}).setdefault("labels", {}).update(
        patch["metadata"]["labels"])
    for key, value in patch["spec"].items():
        if key == "containers":
            continue
        spec[key] = spec.get(key, []) + value if isinstance(value, list) else value
    (container,) = spec["containers"]
    (patched,) = patch["spec"]["containers"]
    trainer = body["spec"]["trainer"]
    container.update(image=trainer["image"], command=trainer["command"], env=trainer["env"],
                     resources=trainer["resourcesPerNode"],
                     volumeMounts=container.get("volumeMounts", []) + patched["volumeMounts"])
    return template


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_pods_the_trainer_makes_are_valid_pods(version):
    import kubernetes_validate

    template = merged_pod(job(nodes=3, gpus_per_node=2, labels={"damo.run": "r"}))
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate",
                                  "metadata": {"name": NODE}, "template": template},
                                 version, strict=True)
    volumes = {v["name"] for v in template["spec"]["volumes"]}
    mounts = {m["name"] for m in template["spec"]["containers"][0]["volumeMounts"]}
    assert mounts == volumes == {"dshm", "workspace"}


@pytest.mark.parametrize("plural", ["trainjobs", "clustertrainingruntimes"])
def test_crds_kept_in_repo_validate(plural):
    import kubernetes_validate

    kubernetes_validate.validate(crd(plural), K8S_VERSIONS[0], strict=True)
    assert crd(plural)["spec"]["group"] == trainjob.GROUP


def test_pipeline_service_account_may_drive_trainjobs():
    rules = find(render("dev"), "Role", PIPELINE_SERVICE_ACCOUNT)["rules"]
    verbs = {(r["apiGroups"][0], res): set(r["verbs"]) for r in rules for res in r["resources"]}
    assert {"create", "get", "watch", "delete"} <= verbs[(trainjob.GROUP, trainjob.PLURAL)]
    assert "get" in verbs[(trainjob.GROUP, f"{trainjob.PLURAL}/status")]


# --- life cycle: create, wait for the node pods, stream rank 0, delete ----------------------


class TrainerApis(FakeApis):
    """A TrainJob's status: no Running condition; ``jobsStatus`` says when the pods run."""

    def get_namespaced_custom_object(self, **kw: Any) -> dict[str, Any]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        self.calls.append(("get", kw["name"]))
        ready = int(state != "Pending")
        status: dict[str, Any] = {"jobsStatus": [{"name": NODE, "ready": ready, "active": 1}]}
        if state in ("Complete", "Failed"):
            status["conditions"] = [{"type": state, "status": "True", "message": self.message}]
        return {"status": status}

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> Any:
        assert kw["container"] == NODE
        return super().read_namespaced_pod_log(name, namespace, **{**kw, "container": "pytorch"})


def test_trainjob_life_cycle_streams_rank0_and_deletes():
    apis, lines, clock = TrainerApis(["Pending", "Pending", "Running", "Complete"]), [], Clock()
    outcome = run_trainjob(job(nodes=2), apis=(apis, apis), sink=lines.append, poll_s=5,
                           clock=clock, sleep=clock.sleep)
    assert outcome.state == "Complete" and outcome.seconds == 15
    assert lines == ["epoch 1 loss 3.2", "epoch 2 loss 2.9", "done"]
    assert apis.calls[0] == ("create", "damo", "trainjobs", "TrainJob")
    assert apis.calls[-1] == ("delete", "damo-teacher-l")
    pods = [c for c in apis.calls if c[0] == "pods"]
    assert pods == [("pods", "jobset.sigs.k8s.io/jobset-name=damo-teacher-l,"
                             "jobset.sigs.k8s.io/replicatedjob-name=node,"
                             "batch.kubernetes.io/job-completion-index=0")]
    assert apis.calls.index(pods[0]) > 3  # not before the node pods were ready


def test_failed_trainjob_raises_with_its_message_and_still_deletes():
    apis, clock = TrainerApis(["Running", "Failed"], message="node-0 exited 1"), Clock()
    with pytest.raises(TrainingJobError, match="TrainJob damo/damo-teacher-l failed: node-0"):
        run_trainjob(job(nodes=2), apis=(apis, apis), sink=lambda _: None, clock=clock,
                     sleep=clock.sleep)
    assert apis.calls[-1] == ("delete", "damo-teacher-l")


# --- the three placements with job_kind="trainjob" ------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trainjob") / "data"
    generate(root, num_classes=2, num_images=12, image_size=64, seed=3)
    return root


def forbid_jobs(mp: pytest.MonkeyPatch) -> None:
    """Neither job kind may be created unless a test replaces its runner."""
    for runner in ("run_trainjob", "run_pytorchjob"):
        mp.setattr(placement, runner, lambda job, runner=runner: pytest.fail(f"{runner} called"))


@pytest.fixture
def no_jobs(monkeypatch) -> None:
    forbid_jobs(monkeypatch)


def run_step(data: Path, out: Path, **where: Any) -> dict[str, Any]:
    """The train component's call, with the pipeline's train_job_kind=trainjob."""
    return train.run(data, out, model="damoyolo_ns", settings=TINY, run_id=RUN,
                     placement=Placement(**where, job_kind="trainjob"))


def invoke_damo(command: list[str]) -> None:
    """Run the damo command after ``torchrun ... damo`` here, as rank 0 would."""
    result = CliRunner().invoke(app, command[command.index("damo") + 1:])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def in_process(data_dir, tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    """One node, one GPU: this process trains, with no subprocess and no job."""
    out = tmp_path_factory.mktemp("in_process") / "model"
    with pytest.MonkeyPatch.context() as mp:
        forbid_jobs(mp)
        mp.setattr(placement.subprocess, "run", lambda *a, **k: pytest.fail("subprocess"))
        meta = run_step(data_dir, out, nodes=1, gpus_per_node=1)
    return out, meta


def test_modes_with_trainjob():
    assert TrainPlacement(job_kind="trainjob").mode is Mode.IN_PROCESS
    assert TrainPlacement(1, 4, job_kind="trainjob").mode is Mode.TORCHRUN
    assert TrainPlacement(2.0, 8, "pvc", job_kind="trainjob").mode is Mode.TRAINJOB
    assert TrainPlacement(2, 8, "pvc").mode is Mode.PYTORCHJOB  # the default kind
    with pytest.raises(PlacementError, match="train_job_kind must be one of "
                                             r"\['pytorchjob', 'trainjob'\], got 'tfjob'"):
        TrainPlacement(2, 1, "pvc", job_kind="tfjob")


def test_in_process_with_trainjob_trains_here(in_process):
    out, meta = in_process
    assert (out / "best.pt").is_file() and set(meta) == META_KEYS
    assert meta["model_name"] == "damoyolo_ns" and meta["epochs"] == 1


def test_torchrun_in_the_pod_with_trainjob_creates_no_job(in_process, data_dir, tmp_path,
                                                            monkeypatch, no_jobs):
    """One pod of 2 ranks: torchrun in this pod (test_placement runs its two ranks for real);
    the stand-in leaves the run directory rank 0 would."""
    commands = []

    def torchrun(command: list[str], *, env: dict[str, str], check: bool):
        commands.append(command)
        shutil.copytree(in_process[0], command[command.index("--out") + 1])
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(placement.subprocess, "run", torchrun)
    out = tmp_path / "model"
    meta = run_step(data_dir, out, nodes=1, gpus_per_node=2)
    ((command),) = commands
    assert command[command.index("--nproc-per-node") + 1] == "2"
    assert command[command.index("-m", 3) + 1:][:2] == ["damo_core.cli", "train"]
    assert (out / "best.pt").is_file() and meta == in_process[1]


def test_trainjob_of_three_nodes_trains_on_the_shared_volume(in_process, data_dir, tmp_path,
                                                             monkeypatch, no_jobs):
    """Three nodes: a TrainJob; the stand-in runs the job's own damo command as rank 0."""
    workspace, created = tmp_path / "pvc", []
    workspace.mkdir()

    def run_job(body: dict[str, Any]) -> JobOutcome:
        created.append(body)
        invoke_damo(body["spec"]["trainer"]["command"])  # rank 0 on the shared volume
        return JobOutcome(body["metadata"]["name"], "Complete", 1.0, [])

    monkeypatch.setattr(placement, "run_trainjob", run_job)
    monkeypatch.setenv("DAMO_WORKSPACE", str(workspace))
    monkeypatch.setenv("DAMO_NAMESPACE", "team-a")
    monkeypatch.setenv(ENV_GATEWAY, "http://pushgateway.damo.svc.cluster.local:9091")
    monkeypatch.delenv("DAMO_TRAIN_IMAGE", raising=False)
    out = tmp_path / "model"
    meta = train.run(data_dir, out, model="damoyolo_ns", settings=TINY, run_id=RUN,
                     placement=Placement(3, 1, "damo-workspace", "registry/damo-gpu:1",
                                         job_kind="trainjob"))
    (body,) = created
    validator("trainjobs").validate(body)  # with the step's env, labels and volume
    name = body["metadata"]["name"]
    assert name == job_name(RUN, "damoyolo_ns", max_name_length(3))
    assert body["metadata"]["namespace"] == "team-a"
    trainer = body["spec"]["trainer"]
    assert trainer["numNodes"] == 3 and trainer["image"] == "registry/damo-gpu:1"
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    assert env[ENV_RUN] == RUN
    assert env[ENV_GATEWAY] == "http://pushgateway.damo.svc.cluster.local:9091"
    spec = pod_patch(body)["spec"]
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "damo-workspace"}} in (
        spec["volumes"])
    assert {"name": "workspace", "mountPath": str(workspace)} in (
        spec["containers"][0]["volumeMounts"])
    assert trainer["command"][trainer["command"].index("--out") + 1] == str(
        workspace / name / "run")
    assert (out / "best.pt").is_file() and set(meta) == set(in_process[1])
    assert meta["model_name"] == in_process[1]["model_name"]
    assert not (workspace / name).exists()  # staging removed once copied back


def test_a_trainjob_that_wrote_nothing_names_its_kind(data_dir, tmp_path, monkeypatch, no_jobs):
    monkeypatch.setattr(placement, "run_trainjob",
                        lambda body: JobOutcome(body["metadata"]["name"], "Complete", 1.0, []))
    monkeypatch.setenv("DAMO_WORKSPACE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="TrainJob .* finished but wrote no"):
        run_step(data_dir, tmp_path / "m", nodes=2, gpus_per_node=1, workspace_pvc="w",
                 image="i:1")


def test_job_kinds_share_one_runner():
    """Both kinds go through jobs.run_job; only their JobKind differs."""
    assert jobs_module.PYTORCHJOB.plural == "pytorchjobs"
    assert trainjob.TRAINJOB.plural == "trainjobs" and trainjob.TRAINJOB.succeeded == "Complete"
    assert trainjob.TRAINJOB.ref("ns") == {"group": "trainer.kubeflow.org",
                                          "version": "v1alpha1", "namespace": "ns",
                                          "plural": "trainjobs"}


# --- the pipeline parameter ----------------------------------------------------------------


def test_pipeline_parameter_reaches_every_training_step():
    """In the pipeline spec KFP builds at import (what `damo pipeline compile` writes out)."""
    from google.protobuf.json_format import MessageToDict

    from pipelines.damo_pipeline import damo_pipeline

    ir = MessageToDict(damo_pipeline.pipeline_spec)
    param = ir["root"]["inputDefinitions"]["parameters"]["train_job_kind"]
    assert param == {"defaultValue": "pytorchjob", "isOptional": True,
                     "parameterType": "STRING"}
    tasks = ir["root"]["dag"]["tasks"]
    training = [n for n in tasks if n == "train" or n.startswith("distill")]
    assert len(training) == 4
    for name in training:
        assert tasks[name]["inputs"]["parameters"]["job_kind"] == {
            "componentInputParameter": "train_job_kind"}, name


def test_pipeline_parameter_is_checked_before_a_run():
    from pipelines.params import PipelineParameterError, validate_params

    assert validate_params({"train_job_kind": "trainjob", "train_nodes": 2}) == {
        "train_job_kind": "trainjob", "train_nodes": 2}
    with pytest.raises(PipelineParameterError, match="params.yaml: training placement: "
                                                     "train_job_kind must be one of"):
        validate_params({"train_job_kind": "TrainJob"}, "params.yaml")
