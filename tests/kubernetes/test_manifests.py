"""Tier 1: every manifest the manager renders validates against a current Kubernetes schema, in strict mode."""

import json
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from clipper_deploy_core.managers.kubernetes import KubernetesContainerManager
from clipper_deploy_core.managers.kubernetes import manifests as mf

K8S_VERSION = kubernetes_validate.latest_version()


def rendered():
    cm = KubernetesContainerManager("prod", namespace="ml", create_namespace_if_not_exists=True,
                                    service_types={"query": "LoadBalancer", "management": "ClusterIP"},
                                    num_frontend_replicas=3, frontend_image="registry.example/clipper:1",
                                    model_resources={"gpu-model": {"cpu": "2", "memory": "4Gi", "gpus": 1}},
                                    api_client=object())
    out = cm.render_cluster("s3cret", "rpc-s3cret")
    out.append(cm.render_model("gpu-model", "3", "floats", "registry.example/prod-gpu-model:3", 2))
    out.append(cm.render_model("plain", "1", "doubles", "registry.example/prod-plain:1"))
    return out


@pytest.mark.parametrize("manifest", rendered(), ids=lambda m: f"{m['kind']}-{m['metadata']['name']}")
def test_every_manifest_validates_strictly(manifest):
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_the_validator_catches_a_broken_manifest():
    broken = rendered()[-1]
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = ["health"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    unknown = rendered()[-1]
    unknown["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1  # not a field: strict mode refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, K8S_VERSION, strict=True)


def test_only_current_api_versions_and_every_object_labelled():
    for m in rendered():
        assert m["apiVersion"] in ("v1", "apps/v1", "rbac.authorization.k8s.io/v1")
        if m["kind"] != "Namespace":
            assert m["metadata"]["labels"][mf.CLUSTER] == "prod"
            assert m["metadata"]["namespace"] == "ml"


def test_the_model_deployment_probes_the_replica_and_asks_for_a_gpu():
    gpu = rendered()[-2]
    pod = gpu["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert gpu["spec"]["replicas"] == 2 and c["image"] == "registry.example/prod-gpu-model:3"
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"},
                              "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "health"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "health"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["CLIPPER_IP"] == "prod-rpc.ml.svc" and env["CLIPPER_HEALTH_PORT"] == str(mf.HEALTH_PORT)
    assert gpu["spec"]["selector"]["matchLabels"] == gpu["spec"]["template"]["metadata"]["labels"]


def test_frontend_services_and_rbac():
    by_kind = {}
    for m in rendered():
        by_kind.setdefault(m["kind"], []).append(m)
    (frontend,) = [d for d in by_kind["Deployment"] if d["metadata"]["labels"][mf.ROLE] == "frontend"]
    assert frontend["spec"]["replicas"] == 3
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind["Service"]}
    assert services["prod-query"]["type"] == "LoadBalancer" and services["prod-admin"]["type"] == "ClusterIP"
    assert services["prod-rpc"]["clusterIP"] == "None"  # headless: resolves to every frontend pod
    (role,) = by_kind["Role"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["prod-state"],
                              "verbs": ["get", "watch", "list", "patch", "update"]}]


def test_long_or_odd_names_become_valid_dns_labels():
    name = mf.dns_name("Cluster_A", "my.Model" * 10, "v1")
    assert len(name) <= 63 and name == name.lower() and name[0].isalnum() and name[-1].isalnum()
    assert mf.dns_name("a", "b") == "a-b"
    assert mf.dns_name("Cluster_A", "x") != mf.dns_name("cluster-a", "x")  # a hash keeps them apart


def test_render_prints_yaml_that_parses_back_into_the_same_manifests():
    out = subprocess.run([sys.executable, "-m", "clipper_deploy_core.cli", "k8s", "render", "--cluster", "prod",
                          "--namespace", "ml", "--create-namespace", "--frontend-image", "registry.example/clipper:1",
                          "--num-frontend-replicas", "3", "--service-type", "query=LoadBalancer",
                          "--service-type", "management=ClusterIP", "--token", "s3cret", "--secret", "rpc-s3cret",
                          "--model", "gpu-model:3=registry.example/prod-gpu-model:3", "--input-type", "floats",
                          "--replicas", "2", "--cpu", "2", "--memory", "4Gi", "--gpus", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "&id" not in out.stdout and "*id" not in out.stdout  # plain YAML: no anchors or aliases
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert json.dumps(docs, sort_keys=True) == json.dumps(rendered()[:-1], sort_keys=True)
    for d in docs:
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)


def test_frontend_and_replicas_get_the_rpc_secret_by_secret_key_ref_and_probes_reach_the_replica():
    docs = {(m["kind"], m["metadata"]["name"]): m for m in rendered()}
    secret = docs[("Secret", "prod-rpc-secret")]
    assert secret["stringData"] == {"secret": "rpc-s3cret"}
    for name in ("prod-frontend", "prod-gpu-model-3"):
        (container,) = docs[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["CLIPPER_CLUSTER_SECRET"]["valueFrom"] == {
            "secretKeyRef": {"name": "prod-rpc-secret", "key": "secret"}}
        assert "value" not in env["CLIPPER_CLUSTER_SECRET"]  # never inline in the Deployment
    (replica,) = docs[("Deployment", "prod-gpu-model-3")]["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in replica["env"]}["CLIPPER_HEALTH_HOST"] == "0.0.0.0"
    (frontend,) = docs[("Deployment", "prod-frontend")]["spec"]["template"]["spec"]["containers"]
    hosts = frontend["command"][frontend["command"].index("--admin-allowed-hosts") + 1].split(",")
    assert "prod-admin.ml.svc" in hosts
