"""Tier 3 of the Kubernetes tests: the pods the manager specifies really run.

The manager writes its objects to kmock (the emulated API server, listening where containers can
reach it). A small kubelet here plays Kubernetes' part with the real Docker engine: each Deployment's
pod template runs as containers on a bridge network, with the template's image, command and
environment (``secretKeyRef`` and ``fieldRef`` resolved from the API), Service DNS names as network
aliases, and availability from the pod's own readiness probe, fetched over HTTP. Each running pod is
also a Pod object in the API, whose log subresource serves the container's log. What is not
Kubernetes here: scheduling; kube-proxy, which the kubelet stands in for by making the node's
address the first frontend pod's and giving each NodePort Service its own port as node port; and
the API server's own logic (kmock stores objects without checking them). The frontend reads the
emulated API with a kubeconfig instead of a service account token.
"""

import functools
import json
import threading
import urllib.request

import pytest
from kubernetes.client.exceptions import NotFoundException

from clipper_deploy_core import ClipperException
from clipper_deploy_core.bundle import save_bundle
from clipper_deploy_core.http_client import admin_post, request
from clipper_deploy_core.managers.kubernetes import KubernetesContainerManager
from clipper_deploy_core.managers.kubernetes import manifests as mf
from clipper_deploy_core.testing import wait_until

from ..kubernetes.emulator import react, start_emulator

NETWORK = "clipper-deploy-k8s-pods"
POD_LABEL = "ai.clipper-deploy.test-pod"


wait_until = functools.partial(wait_until, timeout=120)  # containers and images take longer


class Kubelet:
    """Runs every Deployment's pods as containers, and reports availability from their readiness probes."""

    def __init__(self, kube, docker_client, network, kubeconfig_path):
        from kubernetes import client

        self.kube, self.docker, self.network = kube, docker_client, network
        self.apps, self.core = client.AppsV1Api(kube["api"]), client.CoreV1Api(kube["api"])
        self.kubeconfig = kubeconfig_path
        self.pods: dict[str, list] = {}  # deployment -> containers
        self.errors: list[str] = []
        self.log_routes: set[str] = set()
        self.last_logs: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def env(self, container, pod_name, namespace):
        out = {}
        for e in container.env or []:
            if e.value_from is None:
                out[e.name] = e.value
            elif e.value_from.secret_key_ref is not None:
                ref = e.value_from.secret_key_ref
                secret = self.core.read_namespaced_secret(ref.name, namespace)
                out[e.name] = (secret.string_data or {})[ref.key]  # kmock keeps stringData as written
            elif e.value_from.field_ref is not None:
                path = e.value_from.field_ref.field_path
                out[e.name] = {"metadata.name": pod_name, "metadata.namespace": namespace}[path]
        return out

    def aliases(self, deployment, namespace):
        """The Service DNS names that select this Deployment's pods (a headless one resolves to every pod)."""
        labels = deployment.spec.template.metadata.labels
        names = []
        for svc in self.core.list_namespaced_service(namespace).items:
            if svc.spec.selector and all(labels.get(k) == v for k, v in svc.spec.selector.items()):
                names += [f"{svc.metadata.name}.{namespace}.svc", svc.metadata.name]
        return names

    def run_pod(self, deployment, index):
        ns = deployment.metadata.namespace
        pod_name = f"{deployment.metadata.name}-{index}"
        (c,) = deployment.spec.template.spec.containers
        env = self.env(c, pod_name, ns)
        volumes = {}
        if c.name == "frontend":  # instead of the service account: a kubeconfig for the emulated API
            env["KUBECONFIG"] = "/kube/config"
            volumes[str(self.kubeconfig)] = {"bind": "/kube/config", "mode": "ro"}
        api = self.docker.api
        binds = [f"{src}:{spec['bind']}:{spec['mode']}" for src, spec in volumes.items()]
        created = api.create_container(
            c.image, c.command, name=pod_name, hostname=pod_name,  # a pod's hostname is its name
            environment=env, labels={POD_LABEL: deployment.metadata.name},
            host_config=api.create_host_config(binds=binds, init=True, network_mode=self.network),
            networking_config=api.create_networking_config(
                {self.network: api.create_endpoint_config(aliases=self.aliases(deployment, ns))}))
        api.start(created["Id"])
        container = self.docker.containers.get(created["Id"])
        self.core.create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": deployment.spec.template.metadata.labels},
            "status": {"phase": "Running"}})
        if pod_name not in self.log_routes:  # a pod name comes back after a scale-down: its route stays
            self.log_routes.add(pod_name)
            react(self.kube, f"GET /api/v1/namespaces/{ns}/pods/{pod_name}/log", lambda: self.log(pod_name))
        if c.name == "frontend" and index == 0:  # the node kube-proxy would forward from: this pod
            self.core.patch_node("node-1", {"status": {"addresses": [
                {"type": "InternalIP", "address": self.ip(container)}]}})
        return container

    def log(self, pod_name):
        """A pod's log, from its container, or as it stood when the container was removed (a read races removal)."""
        import docker.errors

        try:
            return self.docker.containers.get(pod_name).logs().decode(errors="replace")
        except docker.errors.APIError:
            return self.last_logs.get(pod_name, "")

    def remove_pod(self, container):
        """As Kubernetes does: the container stops, then the Pod object goes."""
        self.last_logs[container.name] = container.logs().decode(errors="replace")
        container.remove(force=True)
        self.core.delete_namespaced_pod(container.name, "default")

    def probe(self, container, probe, template_container):
        """The pod's own probe: httpGet on its path and port (a named port looked up in the container's ports)."""
        container.reload()
        if container.status != "running":
            return False
        port = probe.http_get.port
        if isinstance(port, str):
            port = next(p.container_port for p in template_container.ports if p.name == port)
        ip = container.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]
        try:
            with urllib.request.urlopen(f"http://{ip}:{port}{probe.http_get.path}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def _loop(self):
        while not self._stop.wait(0.1):
            try:
                self.sync()
            except Exception as e:  # noqa: BLE001 - reported by the test
                text = f"{e!r} {getattr(e, 'explanation', '')}"
                if text not in self.errors:
                    self.errors.append(text)

    def sync(self):
        for svc in self.core.list_service_for_all_namespaces().items:  # the API server allocates node ports
            if svc.spec.type == "NodePort" and not svc.spec.ports[0].node_port:
                ports = [{"name": p.name, "port": p.port, "targetPort": p.target_port, "protocol": p.protocol,
                          "nodePort": p.port} for p in svc.spec.ports]
                self.core.patch_namespaced_service(svc.metadata.name, svc.metadata.namespace,
                                                   {"spec": {"ports": ports}})
        seen = set()
        for d in self.apps.list_deployment_for_all_namespaces().items:
            name = d.metadata.name
            seen.add(name)
            pods = self.pods.setdefault(name, [])
            while len(pods) < d.spec.replicas:
                pods.append(self.run_pod(d, len(pods)))
            while len(pods) > d.spec.replicas:
                self.remove_pod(pods.pop())
            (c,) = d.spec.template.spec.containers
            ready = sum(1 for p in pods if self.probe(p, c.readiness_probe, c))
            if d.status is None or d.status.available_replicas != ready:
                try:
                    self.apps.patch_namespaced_deployment_status(
                        name, d.metadata.namespace, {"status": {"replicas": len(pods), "readyReplicas": ready,
                                                                "availableReplicas": ready}})
                except NotFoundException:  # deleted since it was listed: its pods go on the next pass
                    pass
        for name in set(self.pods) - seen:  # the Deployment was deleted: so are its pods
            for p in self.pods.pop(name):
                self.remove_pod(p)

    def ip(self, container):
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"][self.network]["IPAddress"]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        for c in self.docker.containers.list(all=True, filters={"label": POD_LABEL}):
            c.remove(force=True)


@pytest.fixture()
def kubelet(docker_client, tmp_path):
    """The emulated API server and a kubelet running its pods, on a fresh bridge network."""
    for stale in docker_client.containers.list(all=True, filters={"label": POD_LABEL}):
        stale.remove(force=True)
    for stale in docker_client.networks.list(names=[NETWORK]):  # left by an interrupted run
        for endpoint in docker_client.api.inspect_network(stale.id)["Containers"] or {}:
            docker_client.api.disconnect_container_from_network(endpoint, stale.id, force=True)
        stale.remove()
    network = docker_client.networks.create(NETWORK, driver="bridge", labels={"ai.clipper-deploy.test": "1"})
    gateway = docker_client.api.inspect_network(network.id)["IPAM"]["Config"][0]["Gateway"]
    with start_emulator(host="0.0.0.0") as kube:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulated",
            "clusters": [{"name": "emulated", "cluster": {"server": f"http://{gateway}:{kube['port']}"}}],
            "users": [{"name": "u", "user": {"token": "x"}}],
            "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "u"}}]}))
        try:
            with Kubelet(kube, docker_client, NETWORK, kubeconfig) as kubelet:
                yield kubelet
                assert kubelet.errors == []
        finally:
            for c in docker_client.containers.list(all=True, filters={"label": POD_LABEL}):
                c.remove(force=True)
            network.remove()


@pytest.fixture()
def cluster(kubelet, core_image):
    cm = KubernetesContainerManager("prod", api_client=kubelet.kube["api"], admin_token="tok", num_frontend_replicas=2,
                                    frontend_image=core_image[0].tag, rollout_timeout=120,
                                    docker_client=kubelet.docker)
    try:
        cm.start_clipper()
    except Exception as e:
        logs = {c.name: c.logs().decode()[-2000:] for pods in kubelet.pods.values() for c in pods}
        raise AssertionError(f"{e}\nkubelet errors: {kubelet.errors}\npod logs: {logs}") from e
    return cm, kubelet


def test_the_frontend_and_model_pods_run_and_serve_through_both_frontends(cluster, core_image, tmp_path):
    cm, kubelet = cluster
    frontends = [kubelet.ip(c) for c in kubelet.pods["prod-frontend"]]
    assert len(frontends) == 2
    admin = f"{frontends[0]}:{mf.ADMIN_PORT}"
    admin_post(admin, "add_app", {"name": "ksum", "input_type": "doubles", "default_output": "none",
                                  "latency_slo_micros": 10_000_000}, token="tok")
    admin_post(admin, "add_model", {"model_name": "ksum", "model_version": "1", "input_type": "doubles",
                                    "labels": [], "container_name": "img", "model_data_path": "", "batch_size": -1},
               token="tok")
    admin_post(admin, "add_model_links", {"app_name": "ksum", "model_names": ["ksum"]}, token="tok")
    bundle = save_bundle(tmp_path / "b", name="ksum", version=1, input_type="doubles",
                         func=lambda xs: [str(sum(x)) for x in xs])
    image = cm.build_model("ksum", "1", str(bundle), core_image[0].tag)
    cm.deploy_model("ksum", "1", "doubles", image, num_replicas=1)  # returns once the pod's probe passed
    assert cm.get_num_replicas("ksum", "1") == 1
    # The replica linked to both frontend pods through the headless RPC Service; each answers.
    for ip in frontends:
        try:
            wait_until(lambda ip=ip: admin_post(f"{ip}:{mf.ADMIN_PORT}", "get_all_containers", {}) != [],
                       f"the replica on frontend {ip}")
        except AssertionError as e:
            logs = {c.name: c.logs().decode()[-1500:] for pods in kubelet.pods.values() for c in pods}
            raise AssertionError(f"{e}; pod logs: {logs}") from None
        status, text = request("POST", f"http://{ip}:{mf.QUERY_PORT}/ksum/predict", {"input": [1.0, 2.5]})
        assert status == 200 and json.loads(text)["output"] == 3.5, text
    # each frontend's dashboard says which frontend it shows (its pod), and draws with the image's own plotly
    shown = {json.loads(request("GET", f"http://{ip}:{mf.ADMIN_PORT}/dashboard/data")[1])["frontend"]
             for ip in frontends}
    assert shown == {c.name for c in kubelet.pods["prod-frontend"]}
    assert request("GET", f"http://{frontends[0]}:{mf.ADMIN_PORT}/dashboard/assets/plotly.min.js")[0] == 200
    # the state written through the first frontend reached the second through the ConfigMap
    assert admin_post(f"{frontends[1]}:{mf.ADMIN_PORT}", "get_all_applications", {}) == ["ksum"]
    # a mutation from outside the pod without the cluster's token is refused
    with pytest.raises(ClipperException, match="need the cluster's admin token"):
        admin_post(f"{frontends[1]}:{mf.ADMIN_PORT}", "delete_app", {"name": "ksum"})


def test_a_pod_spec_with_a_wrong_environment_never_becomes_ready(cluster, core_image, tmp_path):
    """This tier can fail: the same model with the RPC port wrong in its pod spec never passes its probe."""
    cm, kubelet = cluster
    bundle = save_bundle(tmp_path / "b", name="kbroken", version=1, input_type="doubles", func=lambda xs: xs)
    image = cm.build_model("kbroken", "1", str(bundle), core_image[0].tag)
    manifest = cm.render_model("kbroken", "1", "doubles", image)
    env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    next(e for e in env if e["name"] == "CLIPPER_PORT")["value"] = "7999"
    from kubernetes import client

    client.AppsV1Api(kubelet.kube["api"]).create_namespaced_deployment("default", manifest)
    wait_until(lambda: kubelet.pods.get(manifest["metadata"]["name"]), "the pod to run")
    (pod,) = kubelet.pods[manifest["metadata"]["name"]]
    (c,) = client.AppsV1Api(kubelet.kube["api"]).read_namespaced_deployment(
        manifest["metadata"]["name"], "default").spec.template.spec.containers
    wait_until(lambda: kubelet.probe(pod, c.liveness_probe, c), "the replica process to be up (liveness)")
    wait_until(lambda: "not reachable" in pod.logs().decode(), "the replica to try the frontends")
    assert not kubelet.probe(pod, c.readiness_probe, c)  # loaded, but linked to no frontend: not ready


def test_the_users_path_create_endpoint_through_a_clipper_connection(cluster, core_image):
    """connect() finds the cluster from its Services (NodePort at a node's InternalIP: here the node is the first
    frontend pod's address, as kube-proxy would forward), then create_endpoint builds, deploys and links."""
    from kubernetes import client

    from clipper_deploy_core import ClipperConnection
    from clipper_deploy_core.deployers.python import create_endpoint

    _, kubelet = cluster
    node_ip = kubelet.ip(kubelet.pods["prod-frontend"][0])  # the node, as the kubelet made it
    conn = ClipperConnection(KubernetesContainerManager("prod", useInternalIP=True, api_client=kubelet.kube["api"],
                                                        docker_client=kubelet.docker, rollout_timeout=120))
    conn.connect()
    assert conn.get_query_addr() == f"{node_ip}:{mf.QUERY_PORT}"
    create_endpoint(conn, "kecho", "doubles", lambda xs: [str(len(x)) for x in xs], num_replicas=2)
    assert conn.cm.get_num_replicas("kecho", "1") == 2
    status, text = request("POST", f"http://{conn.get_query_addr()}/kecho/predict", {"input": [1.0, 2.0, 3.0]})
    assert status == 200 and json.loads(text)["output"] == 3
    conn.stop_all()
    assert client.AppsV1Api(kubelet.kube["api"]).list_namespaced_deployment("default").items == []


def test_the_manager_conformance_kit(kubelet, core_image):
    """The kit manager authors run, against the Kubernetes manager."""
    from clipper_deploy_core.testing.managers import check_manager

    check_manager(lambda name: KubernetesContainerManager(
        name, useInternalIP=True, api_client=kubelet.kube["api"], frontend_image=core_image[0].tag,
        docker_client=kubelet.docker, rollout_timeout=120))
