"""``KubernetesContainerManager``: the cluster on Kubernetes, through the official client (never kubectl).

Kubernetes places, restarts and balances the pods, and is the one record of how many replicas a
model version has; this manager only writes the objects of :mod:`.manifests` and reads them back.
Model versions are Deployments (scaled through their ``scale`` subresource); the frontend pods share
the cluster state through a ConfigMap. Every object carries the cluster's labels, and deletions
select by them (and check them again here, so nothing unlabelled is ever deleted).
"""

from __future__ import annotations

import secrets
import time
import warnings
from pathlib import Path
from typing import Any

from ...deployers.common import resolve_base_image
from ...exceptions import ClipperException
from ...extras import require_extra
from ...naming import validate_name
from ...replica_auth import new_secret
from ..admin_client import cache_size_args
from ..base import ContainerManager, RemoteAddresses
from . import manifests as mf

ROLLOUT_TIMEOUT_S = 300.0
LOG_TAIL_LINES = 60
# Waiting reasons after which a rollout will not succeed without a change.
FATAL_WAITING = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerError",
                 "CreateContainerConfigError", "RunContainerError"}


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _has_labels(obj: Any, labels: dict[str, str]) -> bool:
    have = (obj.metadata.labels or {}) if hasattr(obj, "metadata") else obj["metadata"].get("labels", {})
    return all(have.get(k) == v for k, v in labels.items())


class KubernetesContainerManager(RemoteAddresses, ContainerManager):
    """Clipper's ``KubernetesContainerManager`` arguments, plus ``registry`` (where model images are
    pushed, and pulled from by the cluster), ``num_frontend_replicas``, ``frontend_image``,
    ``model_resources`` (per model name: ``{"cpu": "500m", "memory": "1Gi", "gpus": 1}``),
    ``rollout_timeout`` and ``api_client`` (an already configured ``kubernetes.client.ApiClient``;
    by default the user's kubeconfig, or the in-cluster config)."""

    def __init__(self, cluster_name: str = "default-cluster", kubernetes_proxy_addr: str | None = None,
                 redis_ip: str | None = None, redis_port: int = 6379, useInternalIP: bool = False,
                 namespace: str = "default", create_namespace_if_not_exists: bool = False,
                 service_types: dict[str, str] | None = None, registry: str | None = None, *,
                 num_frontend_replicas: int = 1, frontend_image: str | None = None,
                 model_resources: dict[str, dict[str, Any]] | None = None, admin_token: str | None = None,
                 rollout_timeout: float = ROLLOUT_TIMEOUT_S, api_client: Any = None, docker_client: Any = None) -> None:
        if api_client is None:
            require_extra("kubernetes", "kubernetes", "KubernetesContainerManager")
        if redis_ip is not None:
            raise ClipperException("redis_ip: the cluster state lives in a ConfigMap of the cluster, without Redis")
        if redis_port != 6379:
            warnings.warn("redis_port is unused: there is no Redis", stacklevel=2)
        if not isinstance(num_frontend_replicas, int) or num_frontend_replicas < 1:
            raise ClipperException(f"num_frontend_replicas must be an integer >= 1, got {num_frontend_replicas!r}")
        types = dict(mf.DEFAULT_SERVICE_TYPES)
        for key, kind in (service_types or {}).items():
            if kind not in ("ClusterIP", "NodePort", "LoadBalancer"):
                raise ClipperException(f"service_types[{key!r}] must be ClusterIP, NodePort or LoadBalancer, "
                                       f"not {kind!r}")
            if key in ("redis", "metric"):
                continue  # Clipper had these services; metrics are served on the query port here
            if key not in ("query", "management"):
                raise ClipperException(f"Unknown service {key!r} in service_types (query, management)")
            types[key] = kind
        self.cluster_name = validate_name(cluster_name, "cluster name")
        self.cluster_identifier = cluster_name
        self.proxy = kubernetes_proxy_addr.rstrip("/") if kubernetes_proxy_addr else None
        self.use_internal_ip = useInternalIP
        self.create_namespace = create_namespace_if_not_exists
        self.registry = registry
        self.model_resources = dict(model_resources or {})
        self.rollout_timeout = rollout_timeout
        self.admin_token = admin_token
        self.spec = mf.ClusterSpec(cluster_name, namespace, frontend_image or resolve_base_image("python", None),
                                   num_frontend_replicas, types)
        self._api = api_client
        self._docker = docker_client
        self.addrs: dict[str, str] | None = None

    # --- clients ------------------------------------------------------------------------------
    @property
    def api(self) -> Any:
        """The Kubernetes API client: from the kubeconfig, else the pod's service account."""
        if self._api is None:
            from kubernetes import client, config

            try:
                config.load_kube_config()
            except Exception:  # noqa: BLE001 - no kubeconfig: try the pod's service account
                try:
                    config.load_incluster_config()
                except Exception as e:
                    raise ClipperException(f"No Kubernetes configuration: neither a kubeconfig nor the in-cluster "
                                           f"service account ({e})") from e
            self._api = client.ApiClient()
        return self._api

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api)

    def _apps(self) -> Any:
        from kubernetes import client

        return client.AppsV1Api(self.api)

    def _rbac(self) -> Any:
        from kubernetes import client

        return client.RbacAuthorizationV1Api(self.api)

    @property
    def ns(self) -> str:
        """The namespace the cluster lives in."""
        return self.spec.namespace

    # --- cluster lifecycle --------------------------------------------------------------------
    def render_cluster(self, token: str = "<generated at start_clipper>",
                       secret: str = "<generated at start_clipper>") -> list[mf.Manifest]:
        """The cluster's manifests, as ``clipper-deploy k8s render`` prints them."""
        return mf.cluster_manifests(self.spec, token, secret, with_namespace=self.create_namespace)

    def start_clipper(self, num_frontend_replicas: int | None = None, cache_size: int | None = None,
                      **_: Any) -> None:
        """Create the cluster's objects and wait for the frontend rollout (``cache_size``: each frontend pod's
        prediction cache in bytes, 0 for none)."""
        from kubernetes.client.exceptions import ApiException

        if cache_size is not None:
            cache_size_args(cache_size)  # checked here, where it enters
            self.spec.cache_size = cache_size
        if num_frontend_replicas is not None:
            self.spec.num_frontend_replicas = num_frontend_replicas
        self._ensure_namespace()
        if self._frontends():
            raise ClipperException(f"A cluster named '{self.cluster_name}' already runs in namespace {self.ns}. "
                                   f"Use connect(), or stop_all() it first")
        token = self.admin_token or secrets.token_urlsafe(24)
        try:
            for m in mf.cluster_manifests(self.spec, token, new_secret()):
                self._create(m)
        except ApiException as e:
            self.stop_all()
            raise ClipperException(f"Creating {m['kind']} {m['metadata']['name']} failed: {e.reason}: "
                                   f"{(e.body or '')[:2000]}") from e
        self.admin_token = token
        try:
            self._wait_rollout(self.spec.obj("frontend"), self.spec.num_frontend_replicas,
                               self.spec.labels("frontend"), "the frontend")
        except ClipperException:
            self.stop_all()
            raise
        self._resolve_addresses()

    def _frontends(self) -> list[Any]:
        labels = self.spec.labels("frontend")
        found = self._apps().list_namespaced_deployment(self.ns, label_selector=_selector(labels)).items
        return [d for d in found if _has_labels(d, labels)]

    def _ensure_namespace(self) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self._core().read_namespace(self.ns)
        except ApiException as e:
            if e.status != 404:
                raise
            if not self.create_namespace:
                raise ClipperException(f"Namespace {self.ns} does not exist; create it, or pass "
                                       f"create_namespace_if_not_exists=True") from e
            self._core().create_namespace(mf.namespace(self.spec))

    def _create(self, m: mf.Manifest) -> Any:
        kind, ns = m["kind"], self.ns
        if kind == "Secret":
            return self._core().create_namespaced_secret(ns, m)
        if kind == "ConfigMap":
            return self._core().create_namespaced_config_map(ns, m)
        if kind == "ServiceAccount":
            return self._core().create_namespaced_service_account(ns, m)
        if kind == "Service":
            return self._core().create_namespaced_service(ns, m)
        if kind == "Role":
            return self._rbac().create_namespaced_role(ns, m)
        if kind == "RoleBinding":
            return self._rbac().create_namespaced_role_binding(ns, m)
        if kind == "Deployment":
            return self._apps().create_namespaced_deployment(ns, m)
        raise ClipperException(f"Cannot create a {kind}")

    def connect(self) -> None:
        from kubernetes.client.exceptions import ApiException

        if not self._frontends():
            raise ClipperException(f"No cluster named '{self.cluster_name}' in namespace {self.ns} "
                                   f"(no Deployment labelled {mf.CLUSTER}={self.cluster_name}). "
                                   f"Start one with start_clipper()")
        try:
            secret = self._core().read_namespaced_secret(self.spec.obj("admin-token"), self.ns)
        except ApiException as e:
            raise ClipperException(f"Cluster '{self.cluster_name}' has no admin token Secret: {e.reason}") from e
        import base64

        data = secret.data or {}
        if "token" in data:
            self.admin_token = base64.b64decode(data["token"]).decode()
        elif (secret.string_data or {}).get("token"):  # an API server converts stringData; an emulator may not
            self.admin_token = secret.string_data["token"]
        self._resolve_addresses()

    def _resolve_addresses(self) -> None:
        self.addrs = {role: self._service_addr(role) for role in ("query", "admin")}

    def _service_addr(self, role: str) -> str:
        name = self.spec.obj(role)
        svc = self._core().read_namespaced_service(name, self.ns)
        port = svc.spec.ports[0]
        if self.proxy:
            return f"{self.proxy}/api/v1/namespaces/{self.ns}/services/{name}:{port.port}/proxy"
        kind = svc.spec.type
        if kind == "LoadBalancer":
            ingress = (svc.status.load_balancer.ingress or []) if svc.status and svc.status.load_balancer else []
            if ingress:
                return f"{ingress[0].ip or ingress[0].hostname}:{port.port}"
        if kind in ("NodePort", "LoadBalancer") and port.node_port:
            return f"{self._node_address()}:{port.node_port}"
        return f"{name}.{self.ns}.svc:{port.port}"  # ClusterIP: reachable from inside the cluster only

    def _node_address(self) -> str:
        want = ("InternalIP",) if self.use_internal_ip else ("ExternalIP", "InternalIP")
        nodes = self._core().list_node().items
        for kind in want:
            for node in nodes:
                for a in (node.status.addresses or []) if node.status else []:
                    if a.type == kind:
                        return str(a.address)
        raise ClipperException(f"No node has an address of type {' or '.join(want)}; set kubernetes_proxy_addr "
                               f"or useInternalIP")

    # --- rollouts -----------------------------------------------------------------------------
    def _wait_rollout(self, name: str, replicas: int, labels: dict[str, str], what: str) -> None:
        """Until the Deployment has ``replicas`` available pods; fail at once on a pod that cannot start."""
        deadline = time.monotonic() + self.rollout_timeout
        while True:
            d = self._apps().read_namespaced_deployment(name, self.ns)
            available = (d.status.available_replicas or 0) if d.status else 0
            if available >= replicas:
                return
            broken = self._pod_problems(labels)
            if broken:
                raise ClipperException(f"{what} cannot start: {broken}")
            if time.monotonic() > deadline:
                raise ClipperException(f"{what} was not available after {self.rollout_timeout:.0f}s "
                                       f"({available}/{replicas} pods ready). {self._pod_report(labels)}")
            time.sleep(0.5)  # polls the Deployment's status until the deadline

    def _wait_gone(self, labels: dict[str, str], what: str) -> None:
        """Until no pod matches ``labels``: a deleted Deployment's pods terminate (their replicas unlink) first."""
        deadline = time.monotonic() + self.rollout_timeout
        while pods := self._pods(labels):
            if time.monotonic() > deadline:
                names = ", ".join(p.metadata.name for p in pods)
                raise ClipperException(f"{what}: pods still terminating after {self.rollout_timeout:.0f}s: {names}")
            time.sleep(0.2)  # polls the pod list until the deadline

    def _pods(self, labels: dict[str, str]) -> list[Any]:
        pods = self._core().list_namespaced_pod(self.ns, label_selector=_selector(labels)).items
        return [p for p in pods if _has_labels(p, labels)]

    def _pod_problems(self, labels: dict[str, str]) -> str:
        for pod in self._pods(labels):
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                waiting = cs.state.waiting if cs.state else None
                terminated = cs.state.terminated if cs.state else None
                if waiting and waiting.reason in FATAL_WAITING:
                    return (f"pod {pod.metadata.name}: {waiting.reason}: {waiting.message or ''}\n"
                            f"{self._log_tail(pod.metadata.name, previous=cs.restart_count > 0)}")
                if terminated and terminated.exit_code not in (0, None) and cs.restart_count >= 1:
                    return (f"pod {pod.metadata.name}: exited with code {terminated.exit_code} "
                            f"({terminated.reason})\n{self._log_tail(pod.metadata.name)}")
        return ""

    def _pod_report(self, labels: dict[str, str]) -> str:
        lines = []
        for pod in self._pods(labels):
            phase = pod.status.phase if pod.status else "?"
            lines.append(f"pod {pod.metadata.name}: {phase}\n{self._log_tail(pod.metadata.name)}")
        return "\n".join(lines) or "No pod was created (check the Deployment's events and quotas)."

    def _log_tail(self, pod: str, previous: bool = False) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            text = self._core().read_namespaced_pod_log(pod, self.ns, tail_lines=LOG_TAIL_LINES, previous=previous)
        except ApiException as e:
            return f"(no log: {e.reason})"
        return f"Pod log (last lines):\n{text}"

    # --- models -------------------------------------------------------------------------------
    @property
    def docker(self) -> Any:
        """A docker SDK client, for building model images."""
        if self._docker is None:
            import docker

            self._docker = docker.from_env()
        return self._docker

    def build_model(self, name: str, version: str, model_data_path: str, base_image: str,
                    container_registry: str | None = None, pkgs_to_install: list[str] | None = None) -> str:
        """The Docker manager's image (built with the local engine), pushed to the registry the cluster pulls from."""
        from ...bundle import verify_bundle
        from ..docker.images import build_model_image, model_image_tag

        verify_bundle(model_data_path, expected_model=(name, str(version)))
        registry = container_registry or self.registry
        tag = model_image_tag(self.cluster_name, name, str(version), registry)
        return build_model_image(self.docker, Path(model_data_path), base_image, tag, pkgs_to_install,
                                 registry_push=registry is not None)

    def model_spec(self, name: str, version: str, input_type: str, image: str, num_replicas: int) -> mf.ModelSpec:
        """The ModelSpec of a model version (image, replicas, resources)."""
        res = self.model_resources.get(name, {})
        unknown = set(res) - {"cpu", "memory", "gpus"}
        if unknown:
            raise ClipperException(f"model_resources[{name!r}] has unknown keys {sorted(unknown)} "
                                   f"(cpu, memory, gpus)")
        return mf.ModelSpec(name, str(version), image, input_type, num_replicas=num_replicas, cpu=res.get("cpu"),
                            memory=res.get("memory"), gpus=int(res.get("gpus", 0)))

    def render_model(self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1) -> mf.Manifest:
        """A model version's Deployment manifest."""
        return mf.model_deployment(self.spec, self.model_spec(name, version, input_type, image, num_replicas))

    def deploy_model(self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1) -> None:
        from kubernetes.client.exceptions import ApiException

        model = self.model_spec(name, version, input_type, image, num_replicas)
        manifest = mf.model_deployment(self.spec, model)
        dname = manifest["metadata"]["name"]
        try:
            self._apps().create_namespaced_deployment(self.ns, manifest)
        except ApiException as e:
            if e.status != 409:
                raise ClipperException(f"Creating Deployment {dname} failed: {e.reason}: {(e.body or '')[:2000]}") \
                    from e
            self._apps().patch_namespaced_deployment(dname, self.ns, manifest)  # a redeploy of the same version
        try:
            self._wait_rollout(dname, num_replicas, mf.model_labels(self.spec, model), f"Model {name}:{version}")
        except ClipperException:
            self._delete_model_deployment(name, str(version))
            raise

    def _model_deployments(self, name: str | None = None, version: str | None = None) -> list[Any]:
        labels = self.spec.labels("replica")
        if name is not None:
            labels[mf.MODEL] = mf.label_value(name)
        if version is not None:
            labels[mf.VERSION] = mf.label_value(version)
        found = self._apps().list_namespaced_deployment(self.ns, label_selector=_selector(labels)).items
        return [d for d in found if _has_labels(d, labels)]

    def _delete_model_deployment(self, name: str, version: str) -> None:
        for d in self._model_deployments(name, version):
            self._apps().delete_namespaced_deployment(d.metadata.name, self.ns)

    def get_num_replicas(self, name: str, version: str) -> int:
        found = self._model_deployments(name, str(version))
        return int(found[0].spec.replicas or 0) if found else 0

    def set_num_replicas(self, name: str, version: str, input_type: str, image: str, num_replicas: int) -> None:
        found = self._model_deployments(name, str(version))
        if not found:
            raise ClipperException(f"Cannot add container for non-registered model {name}:{version}")
        dname = found[0].metadata.name
        self._apps().patch_namespaced_deployment_scale(dname, self.ns, {"spec": {"replicas": num_replicas}})
        if num_replicas:
            model = mf.ModelSpec(name, str(version), "", "")
            self._wait_rollout(dname, num_replicas, mf.model_labels(self.spec, model), f"Model {name}:{version}")

    def stop_models(self, models: dict[str, list[str]]) -> None:
        for name, versions in models.items():
            for v in versions:
                self._delete_model_deployment(name, str(v))
        for name, versions in models.items():
            for v in versions:
                labels = mf.model_labels(self.spec, mf.ModelSpec(name, str(v), "", ""))
                self._wait_gone(labels, f"Stopping {name}:{v}")

    def stop_all_model_containers(self) -> None:
        for d in self._model_deployments():
            self._apps().delete_namespaced_deployment(d.metadata.name, self.ns)
        self._wait_gone(self.spec.labels("replica"), "Stopping every model")

    def get_logs(self, logging_dir: str) -> list[str]:
        out = Path(logging_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        from kubernetes.client.exceptions import ApiException

        for pod in self._pods({mf.CLUSTER: mf.label_value(self.cluster_name)}):
            try:
                text = self._core().read_namespaced_pod_log(pod.metadata.name, self.ns)
            except ApiException as e:
                if e.status == 404:  # deleted since it was listed
                    continue
                raise
            dst = out / f"{pod.metadata.name}.log"
            dst.write_text(text)
            paths.append(str(dst))
        return paths

    def stop_all(self, graceful: bool = True) -> None:
        """Delete every object labelled with this cluster (not the namespace), and nothing else."""
        labels = {mf.CLUSTER: mf.label_value(self.cluster_name)}
        sel = _selector(labels)
        core, apps, rbac = self._core(), self._apps(), self._rbac()
        body = None if graceful else {"gracePeriodSeconds": 0}
        for lister, deleter in (
                (apps.list_namespaced_deployment, apps.delete_namespaced_deployment),
                (core.list_namespaced_service, core.delete_namespaced_service),
                (rbac.list_namespaced_role_binding, rbac.delete_namespaced_role_binding),
                (rbac.list_namespaced_role, rbac.delete_namespaced_role),
                (core.list_namespaced_service_account, core.delete_namespaced_service_account),
                (core.list_namespaced_config_map, core.delete_namespaced_config_map),
                (core.list_namespaced_secret, core.delete_namespaced_secret)):
            for obj in lister(self.ns, label_selector=sel).items:
                if _has_labels(obj, labels):
                    deleter(obj.metadata.name, self.ns, body=body)
        self.addrs = None

