"""The Kubernetes objects of a cluster, as plain manifests (dicts), for the manager and for ``k8s render``.

Only current API versions: ``v1``, ``apps/v1``, ``rbac.authorization.k8s.io/v1``. Every object
carries the cluster's labels, so the manager deletes by label and nothing else.

- frontend: a Deployment of ``num_frontend_replicas`` pods (the cluster process, replicas run by
  Kubernetes) with a ServiceAccount allowed to read and update the state ConfigMap and nothing else;
- Services: ``<cluster>-query`` and ``<cluster>-admin`` (types from ``service_types``), and the
  headless ``<cluster>-rpc`` through which replica pods find the frontend pods;
- ``<cluster>-admin-token`` (Secret: the admin API's token, for the frontend), ``<cluster>-rpc-secret``
  (Secret: what replicas prove before a frontend links them, for the frontend and the replicas), and
  ``<cluster>-state`` (ConfigMap, the shared cluster state);
- one Deployment per model version, its pods probed on the replica's health endpoint.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

MANAGED_BY = "clipper-deploy"
CLUSTER = "ai.clipper-deploy/cluster"
ROLE = "ai.clipper-deploy/role"
MODEL = "ai.clipper-deploy/model"
VERSION = "ai.clipper-deploy/version"
QUERY_PORT, ADMIN_PORT, RPC_PORT, HEALTH_PORT = 1337, 1338, 7000, 8080
DEFAULT_SERVICE_TYPES = {"query": "NodePort", "management": "NodePort"}

Manifest = dict[str, Any]


def dns_name(*parts: str, limit: int = 63) -> str:
    """A DNS-1123 label from ``parts``: lowercase, [a-z0-9-], at most ``limit`` long (a hash keeps it unique)."""
    raw = "-".join(parts)
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    if len(name) > limit or name != raw:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[:limit - 9].rstrip('-')}-{digest}"
    return name


def label_value(value: str) -> str:
    """A valid label value (63 chars of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    v = re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:63]
    return v.strip("_.-") or "x"


@dataclass
class ClusterSpec:
    name: str
    namespace: str = "default"
    frontend_image: str = "clipper-deploy/python-closure:py3.11"
    num_frontend_replicas: int = 1
    service_types: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SERVICE_TYPES))
    query_node_port: int | None = None
    admin_node_port: int | None = None
    max_request_bytes: int = 16 * 1024 * 1024
    max_batch_rows: int = 10_000
    cache_size: int | None = None  # the prediction cache of each frontend pod, in bytes (None: the cluster's default)
    image_pull_policy: str = "IfNotPresent"
    # Host names the admin API answers to besides IP addresses (its Service's names are always allowed).
    admin_allowed_hosts: list[str] = field(default_factory=list)

    def labels(self, role: str) -> dict[str, str]:
        """The labels of one of the cluster's objects."""
        return {CLUSTER: label_value(self.name), ROLE: role, "app.kubernetes.io/managed-by": MANAGED_BY}

    def obj(self, suffix: str) -> str:
        """The name of one of the cluster's objects."""
        return dns_name(self.name, suffix)


@dataclass
class ModelSpec:
    name: str
    version: str
    image: str
    input_type: str
    digest: str = ""
    num_replicas: int = 1
    cpu: str | None = None  # request and limit, e.g. "500m"
    memory: str | None = None  # e.g. "1Gi"
    gpus: int = 0  # nvidia.com/gpu
    image_pull_policy: str = "IfNotPresent"


def _meta(spec: ClusterSpec, name: str, role: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": spec.namespace, "labels": {**spec.labels(role), **(extra or {})}}


def namespace(spec: ClusterSpec) -> Manifest:
    """The Namespace (with create_namespace_if_not_exists)."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": spec.namespace, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}}}


def admin_token_secret(spec: ClusterSpec, token: str) -> Manifest:
    """The Secret holding the admin API's token (the frontend reads it by secretKeyRef)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(spec, spec.obj("admin-token"), "admin-token"), "stringData": {"token": token}}


def rpc_secret(spec: ClusterSpec, secret: str) -> Manifest:
    """The Secret holding what replicas prove to the frontend (both read it by secretKeyRef)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(spec, spec.obj("rpc-secret"), "rpc-secret"), "stringData": {"secret": secret}}


def _rpc_secret_env(spec: ClusterSpec) -> dict[str, Any]:
    return {"name": "CLIPPER_CLUSTER_SECRET",
            "valueFrom": {"secretKeyRef": {"name": spec.obj("rpc-secret"), "key": "secret"}}}


def admin_host_names(spec: ClusterSpec) -> list[str]:
    """The names the admin API answers to besides IP addresses: its Service's, and any allowed."""
    svc = spec.obj("admin")
    return [svc, f"{svc}.{spec.namespace}", f"{svc}.{spec.namespace}.svc", f"{svc}.{spec.namespace}.svc.cluster.local",
            *spec.admin_allowed_hosts]


def state_configmap(spec: ClusterSpec) -> Manifest:
    # Cluster state lives in Kubernetes itself: every frontend pod watches this ConfigMap and writes it
    # with optimistic concurrency on resourceVersion, so no store of our own needs replicating.
    """The ConfigMap that holds the shared cluster state."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(spec, spec.obj("state"), "state"),
            "data": {"state.json": "{}"}}


def rbac(spec: ClusterSpec) -> list[Manifest]:
    """The frontend's ServiceAccount, Role and RoleBinding: the state ConfigMap and nothing else."""
    name = spec.obj("frontend")
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(spec, name, "frontend")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(spec, name, "frontend"),
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [spec.obj("state")],
                    "verbs": ["get", "watch", "list", "patch", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(spec, name, "frontend"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": spec.namespace}]},
    ]


def frontend_deployment(spec: ClusterSpec) -> Manifest:
    """The frontend Deployment: the cluster process with replicas run by Kubernetes."""
    name = spec.obj("frontend")
    labels = spec.labels("frontend")
    command = ["python", "-m", "clipper_deploy_core.cluster", "--name", spec.name, "--home", "/state",
               "--replicas", "kubernetes", "--query-host", "0.0.0.0", "--query-port", str(QUERY_PORT),
               "--admin-host", "0.0.0.0", "--admin-port", str(ADMIN_PORT), "--rpc-host", "0.0.0.0",
               "--rpc-port", str(RPC_PORT), "--max-body", str(spec.max_request_bytes),
               "--max-batch-rows", str(spec.max_batch_rows),
               *([] if spec.cache_size is None else ["--cache-size", str(spec.cache_size)]),
               "--admin-allowed-hosts", ",".join(admin_host_names(spec))]
    container = {
        "name": "frontend", "image": spec.frontend_image, "imagePullPolicy": spec.image_pull_policy,
        "command": command,
        "env": [
            {"name": "CLIPPER_ADMIN_TOKEN",
             "valueFrom": {"secretKeyRef": {"name": spec.obj("admin-token"), "key": "token"}}},
            _rpc_secret_env(spec),
            {"name": "CLIPPER_K8S_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "CLIPPER_K8S_STATE_CONFIGMAP", "value": spec.obj("state")},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "ports": [{"name": "query", "containerPort": QUERY_PORT}, {"name": "admin", "containerPort": ADMIN_PORT},
                  {"name": "rpc", "containerPort": RPC_PORT}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "query"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "query"}, "periodSeconds": 10,
                          "failureThreshold": 3},
        "volumeMounts": [{"name": "state", "mountPath": "/state"}],
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(spec, name, "frontend"),
            "spec": {"replicas": spec.num_frontend_replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"serviceAccountName": name, "containers": [container],
                                           "volumes": [{"name": "state", "emptyDir": {}}]}}}}


def services(spec: ClusterSpec) -> list[Manifest]:
    """The query and admin Services, and the headless RPC Service replicas resolve."""
    selector = spec.labels("frontend")
    out = []
    for role, port, node_port, key in (("query", QUERY_PORT, spec.query_node_port, "query"),
                                       ("admin", ADMIN_PORT, spec.admin_node_port, "management")):
        kind = spec.service_types.get(key, "ClusterIP")
        p: dict[str, Any] = {"name": role, "port": port, "targetPort": role, "protocol": "TCP"}
        if node_port and kind in ("NodePort", "LoadBalancer"):
            p["nodePort"] = node_port
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(spec, spec.obj(role), role),
                    "spec": {"type": kind, "selector": selector, "ports": [p]}})
    # Headless: its DNS name resolves to every ready frontend pod, which replicas connect to.
    out.append({"apiVersion": "v1", "kind": "Service", "metadata": _meta(spec, spec.obj("rpc"), "rpc"),
                "spec": {"clusterIP": "None", "selector": selector,
                         "ports": [{"name": "rpc", "port": RPC_PORT, "targetPort": "rpc", "protocol": "TCP"}]}})
    return out


def cluster_manifests(spec: ClusterSpec, token: str, secret: str, with_namespace: bool = False) -> list[Manifest]:
    # Services before the Deployment whose pods they select (Kubernetes' own advice): a pod then starts with
    # every Service already resolvable.
    """Every manifest of a cluster, in the order to create them."""
    return [*([namespace(spec)] if with_namespace else []), admin_token_secret(spec, token), rpc_secret(spec, secret),
            state_configmap(spec),
            *rbac(spec), *services(spec), frontend_deployment(spec)]


def model_deployment_name(spec: ClusterSpec, model: ModelSpec) -> str:
    """The name of a model version's Deployment."""
    return dns_name(spec.name, model.name, model.version)


def model_labels(spec: ClusterSpec, model: ModelSpec) -> dict[str, str]:
    """The labels of a model version's Deployment and pods."""
    return {**spec.labels("replica"), MODEL: label_value(model.name), VERSION: label_value(model.version)}


def model_deployment(spec: ClusterSpec, model: ModelSpec) -> Manifest:
    """A model version's Deployment: replica pods with probes, the secret, resources."""
    labels = model_labels(spec, model)
    resources: dict[str, dict[str, Any]] = {}
    for key, value in (("cpu", model.cpu), ("memory", model.memory)):
        if value:
            resources.setdefault("requests", {})[key] = value
            resources.setdefault("limits", {})[key] = value
    if model.gpus:
        resources.setdefault("limits", {})["nvidia.com/gpu"] = str(model.gpus)  # in limits only; a quantity
    env = [
        {"name": "CLIPPER_MODEL_NAME", "value": model.name},
        {"name": "CLIPPER_MODEL_VERSION", "value": model.version},
        {"name": "CLIPPER_INPUT_TYPE", "value": model.input_type},
        {"name": "CLIPPER_IP", "value": f"{spec.obj('rpc')}.{spec.namespace}.svc"},
        {"name": "CLIPPER_PORT", "value": str(RPC_PORT)},
        {"name": "CLIPPER_REPLICA_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "CLIPPER_HEALTH_PORT", "value": str(HEALTH_PORT)},
        {"name": "CLIPPER_HEALTH_HOST", "value": "0.0.0.0"},  # probed by the kubelet, from outside the pod
        _rpc_secret_env(spec),
        {"name": "CLIPPER_RESOLVE_INTERVAL", "value": "5"},  # links to every frontend pod, as they come and go
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if model.digest:
        env.append({"name": "CLIPPER_BUNDLE_DIGEST", "value": model.digest})
    container: dict[str, Any] = {
        "name": "replica", "image": model.image, "imagePullPolicy": model.image_pull_policy,
        "command": ["python", "-m", "clipper_deploy_core.replica"], "env": env,
        "ports": [{"name": "health", "containerPort": HEALTH_PORT}],
        "readinessProbe": {"httpGet": {"path": "/health/ready", "port": "health"}, "periodSeconds": 2,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/health/live", "port": "health"}, "periodSeconds": 10,
                          "failureThreshold": 3},
    }
    if resources:
        container["resources"] = resources
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(spec, model_deployment_name(spec, model), "replica", labels),
            "spec": {"replicas": model.num_replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}
