"""Who may change what Triton runs, as rendered: the admin APIs behind the Secret's key,
a NetworkPolicy in front of the ports, and a MinIO credential that can only read models.

The flag values, header and env names are compared with :mod:`damo_core.serve.admin`, the
one place the local server and the deploy client take them from, so they cannot drift.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from damo_core.serve import admin
from tests.manifests.test_kustomize import OVERLAYS, find, pod_specs, render

READONLY_SECRET = "damo-minio-readonly"
ADMIN_PORTS, METRICS_PORT = {8000, 8001}, 8002


def _triton(overlay: str) -> dict[str, Any]:
    return find(render(overlay), "Deployment", "triton")["spec"]["template"]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _secret_ref(env: dict[str, Any]) -> tuple[str, str]:
    ref = env["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_admin_apis_need_the_secret_key(overlay):
    container = _triton(overlay)["spec"]["containers"][0]
    rule = f"{','.join(admin.RESTRICTED_APIS)}:{admin.ADMIN_HEADER}=$({admin.ADMIN_KEY_ENV})"
    assert f"--http-restricted-api={rule}" in container["args"]
    assert f"--grpc-restricted-protocol={rule}" in container["args"]
    assert "model-repository" in admin.RESTRICTED_APIS
    assert not {"inference", "health", "metadata"} & set(admin.RESTRICTED_APIS)
    key_env = _env(container)[admin.ADMIN_KEY_ENV]
    assert "value" not in key_env
    assert _secret_ref(key_env) == (admin.ADMIN_KEY_SECRET, admin.ADMIN_KEY_SECRET_KEY)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_triton_reads_minio_with_the_read_only_user(overlay):
    env = _env(_triton(overlay)["spec"]["containers"][0])
    for name, key in (("AWS_ACCESS_KEY_ID", "accesskey"), ("AWS_SECRET_ACCESS_KEY", "secretkey")):
        assert _secret_ref(env[name]) == (READONLY_SECRET, key)
    refs = {_secret_ref(e)[0] for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})}
    assert "damo-minio" not in refs, "Triton must not hold MinIO's root credential"


def test_bucket_job_creates_the_read_only_user_and_policy():
    docs = render("dev")
    owner, spec = next(p for p in pod_specs(docs) if p[0] == "Job/minio-buckets")
    job = spec["containers"][0]
    script = job["args"][0]
    assert "mc admin policy create damo damo-models-read /policies/damo-models-read.json" in script
    assert 'mc admin user add damo "$MINIO_READONLY_USER" "$MINIO_READONLY_PASSWORD"' in script
    assert 'attach damo damo-models-read --user "$MINIO_READONLY_USER"' in script
    env = _env(job)
    assert _secret_ref(env["MINIO_READONLY_USER"]) == (READONLY_SECRET, "accesskey")
    assert _secret_ref(env["MINIO_READONLY_PASSWORD"]) == (READONLY_SECRET, "secretkey")
    mounted = {v["name"]: v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
    policy_map = find(docs, "ConfigMap", "minio-policies")
    assert mounted["policies"] == policy_map["metadata"]["name"], owner
    policy = json.loads(policy_map["data"]["damo-models-read.json"])
    granted = {(action, resource) for s in policy["Statement"] for action in s["Action"]
               for resource in s["Resource"]}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])
    assert granted == {("s3:GetBucketLocation", "arn:aws:s3:::damo-models"),
                       ("s3:ListBucket", "arn:aws:s3:::damo-models"),
                       ("s3:GetObject", "arn:aws:s3:::damo-models/*")}


def _ports(rule: dict[str, Any]) -> set[int]:
    assert all(p.get("protocol", "TCP") == "TCP" for p in rule["ports"])
    return {p["port"] for p in rule["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_deployer_clients_and_prometheus(overlay):
    docs = render(overlay)
    policy = find(docs, "NetworkPolicy", "triton")["spec"]
    assert policy["podSelector"]["matchLabels"] == _triton(overlay)["metadata"]["labels"]
    assert policy["policyTypes"] == ["Ingress"]
    rules = policy["ingress"]
    assert all(rule.get("from") and rule.get("ports") for rule in rules), "a rule open to all"
    admitted: dict[int, list[dict[str, Any]]] = {}
    for rule in rules:
        for port in _ports(rule):
            admitted.setdefault(port, []).extend(rule["from"])
    assert set(admitted) == ADMIN_PORTS | {METRICS_PORT}
    label_key, label_value = admin.DEPLOYER_POD_LABEL
    deployer = {"podSelector": {"matchLabels": {label_key: label_value}}}
    clients = {"namespaceSelector": {"matchLabels": {"damo-yolo/triton-clients": "true"}}}
    for port in ADMIN_PORTS:
        assert sorted(map(json.dumps, admitted[port])) == sorted(
            map(json.dumps, [deployer, clients])), port
    prometheus = find(docs, "Deployment", "prometheus")["spec"]["template"]["metadata"]["labels"]
    assert admitted[METRICS_PORT] == [{"podSelector": {"matchLabels": prometheus}}]


def test_triton_runs_the_image_that_scripts_images_sh_builds():
    """One tag, one place: components/_image.py names the Triton image; the base manifest
    runs exactly it (overlays may only retag the same repository)."""
    import yaml

    from components._image import DAMO_TRITON_IMAGE
    from tests.manifests.test_kustomize import ROOT

    docs = yaml.safe_load_all((ROOT / "manifests" / "base" / "triton.yaml").read_text())
    deployment = next(d for d in docs if d and d.get("kind") == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == DAMO_TRITON_IMAGE
    for overlay in OVERLAYS:
        image = _triton(overlay)["spec"]["containers"][0]["image"]
        assert image.rsplit(":", 1)[0] == DAMO_TRITON_IMAGE.rsplit(":", 1)[0], overlay
