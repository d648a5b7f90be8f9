"""Tier 2: the manager against an emulated Kubernetes API (kmock), through the official client.

The emulator runs no controllers: the ``controller`` fixture marks rollouts available, or reports a
broken pod. Each test checks which objects exist afterwards, not only that calls returned.
"""

import threading
import time

import pytest
from kubernetes import client

from clipper_deploy_core import ClipperException
from clipper_deploy_core.managers.kubernetes import KubernetesContainerManager
from clipper_deploy_core.managers.kubernetes import manifests as mf

KINDS = ("deployments", "services", "configmaps", "secrets", "serviceaccounts", "roles", "rolebindings")


def objects(kube, namespace="default"):
    """Every object in the namespace, as {kind: sorted names} (listing ignores selectors here: it is all of them)."""
    core, apps, rbac = (client.CoreV1Api(kube["api"]), client.AppsV1Api(kube["api"]),
                        client.RbacAuthorizationV1Api(kube["api"]))
    listers = {"deployments": apps.list_namespaced_deployment, "services": core.list_namespaced_service,
               "configmaps": core.list_namespaced_config_map, "secrets": core.list_namespaced_secret,
               "serviceaccounts": core.list_namespaced_service_account, "roles": rbac.list_namespaced_role,
               "rolebindings": rbac.list_namespaced_role_binding}
    return {k: sorted(o.metadata.name for o in listers[k](namespace).items) for k in KINDS}


def manager(kube, name="prod", **kw):
    kw.setdefault("frontend_image", "registry.example/clipper-core:1")
    return KubernetesContainerManager(name, api_client=kube["api"], rollout_timeout=kw.pop("rollout_timeout", 20),
                                      **kw)


CLUSTER_OBJECTS = {"deployments": ["prod-frontend"], "services": ["prod-admin", "prod-query", "prod-rpc"],
                   "configmaps": ["prod-state"], "secrets": ["prod-admin-token", "prod-rpc-secret"],
                   "serviceaccounts": ["prod-frontend"], "roles": ["prod-frontend"],
                   "rolebindings": ["prod-frontend"]}


def test_start_clipper_creates_the_cluster_and_connect_finds_it(kube, controller):
    cm = manager(kube, num_frontend_replicas=2, admin_token="tok")
    cm.start_clipper()
    assert objects(kube) == CLUSTER_OBJECTS
    frontend = client.AppsV1Api(kube["api"]).read_namespaced_deployment("prod-frontend", "default")
    assert frontend.spec.replicas == 2
    assert frontend.spec.template.spec.containers[0].image == "registry.example/clipper-core:1"
    other = manager(kube)
    other.connect()
    assert other.admin_token == "tok"
    # The emulator allocates no node ports (a real API server does): the in-cluster address is what remains.
    assert other.get_query_addr() == "prod-query.default.svc:1337"
    with pytest.raises(ClipperException, match="already runs in namespace default"):
        manager(kube).start_clipper()


def test_addresses_through_the_api_proxy_node_ports_and_load_balancers(kube, controller):
    manager(kube).start_clipper()
    proxied = manager(kube, kubernetes_proxy_addr="127.0.0.1:8001")
    proxied.connect()
    assert proxied.get_query_addr() == "127.0.0.1:8001/api/v1/namespaces/default/services/prod-query:1337/proxy"
    core = client.CoreV1Api(kube["api"])
    core.patch_namespaced_service("prod-query", "default", {"spec": {"ports": [
        {"name": "query", "port": 1337, "targetPort": "query", "protocol": "TCP", "nodePort": 31337}]}})
    internal = manager(kube, useInternalIP=True)
    internal.connect()
    assert internal.get_query_addr() == "10.0.0.7:31337"
    external = manager(kube)
    external.connect()
    assert external.get_query_addr() == "203.0.113.7:31337"
    core.patch_namespaced_service("prod-query", "default", {"spec": {"type": "LoadBalancer"}})
    core.patch_namespaced_service_status("prod-query", "default",
                                         {"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.9"}]}}})
    balanced = manager(kube)
    balanced.connect()
    assert balanced.get_query_addr() == "198.51.100.9:1337"


def test_a_missing_namespace_is_an_error(kube, controller):
    with pytest.raises(ClipperException, match="Namespace ml does not exist; create it, or pass "
                                               "create_namespace_if_not_exists=True"):
        manager(kube, namespace="ml").start_clipper()
    assert objects(kube, "ml") == {k: [] for k in KINDS}


def test_deploy_scale_and_stop_models(kube, controller):
    cm = manager(kube, model_resources={"big": {"cpu": "1", "memory": "2Gi", "gpus": 1}})
    cm.start_clipper()
    cm.deploy_model("big", "1", "doubles", "registry.example/prod-big:1", num_replicas=2)
    cm.deploy_model("small", "1", "doubles", "registry.example/prod-small:1")
    cm.deploy_model("small", "2", "doubles", "registry.example/prod-small:2")
    apps = client.AppsV1Api(kube["api"])
    big = apps.read_namespaced_deployment("prod-big-1", "default")
    assert big.spec.template.spec.containers[0].resources.limits == {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}
    assert cm.get_num_replicas("big", "1") == 2 and cm.get_num_replicas("small", "1") == 1
    cm.set_num_replicas("small", "1", "doubles", "", 3)
    assert cm.get_num_replicas("small", "1") == 3
    assert apps.read_namespaced_deployment("prod-small-1", "default").spec.replicas == 3
    cm.stop_models({"small": ["1"]})
    assert objects(kube)["deployments"] == ["prod-big-1", "prod-frontend", "prod-small-2"]
    assert cm.get_num_replicas("small", "1") == 0
    with pytest.raises(ClipperException, match="non-registered model small:1"):
        cm.set_num_replicas("small", "1", "doubles", "", 1)
    cm.stop_all_model_containers()
    assert objects(kube)["deployments"] == ["prod-frontend"]


def test_a_crash_looping_model_fails_the_deploy_with_its_log_and_leaves_nothing(kube, controller):
    cm = manager(kube)
    cm.start_clipper()
    controller.broken["prod-bad-1"] = ("CrashLoopBackOff", "back-off 40s restarting failed container",
                                       "Traceback (most recent call last):\nModuleNotFoundError: No module named 'x'")
    started = time.monotonic()
    with pytest.raises(ClipperException) as e:
        cm.deploy_model("bad", "1", "doubles", "registry.example/prod-bad:1")
    assert time.monotonic() - started < 15
    assert "CrashLoopBackOff" in str(e.value) and "ModuleNotFoundError: No module named 'x'" in str(e.value)
    assert "prod-bad-1" not in objects(kube)["deployments"]


def test_an_image_that_cannot_be_pulled_fails_the_deploy_with_the_reason(kube, controller):
    cm = manager(kube)
    cm.start_clipper()
    controller.broken["prod-gone-1"] = ("ImagePullBackOff", 'Back-off pulling image "registry.example/gone:1"', "")
    with pytest.raises(ClipperException, match='ImagePullBackOff: Back-off pulling image "registry.example/gone:1"'):
        cm.deploy_model("gone", "1", "doubles", "registry.example/gone:1")


def test_a_rollout_that_never_becomes_available_hits_the_deadline(kube, controller):
    cm = manager(kube, rollout_timeout=1.5)
    cm.start_clipper()
    controller.stuck.add("prod-slow-1")
    started = time.monotonic()
    with pytest.raises(ClipperException, match=r"was not available after 2s \(0/1 pods ready\)"):
        cm.deploy_model("slow", "1", "doubles", "registry.example/slow:1")
    assert time.monotonic() - started < 10
    assert "prod-slow-1" not in objects(kube)["deployments"]


def test_stop_all_deletes_this_clusters_objects_and_nothing_else(kube, controller):
    core = client.CoreV1Api(kube["api"])
    core.create_namespaced_config_map("default", {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "someone-elses"}, "data": {"k": "v"}})
    other = manager(kube, "other")
    other.start_clipper()
    cm = manager(kube)
    cm.start_clipper()
    cm.deploy_model("m", "1", "doubles", "registry.example/prod-m:1")
    cm.stop_all()
    left = objects(kube)
    assert left["configmaps"] == ["other-state", "someone-elses"]
    assert left["deployments"] == ["other-frontend"]
    assert left["services"] == ["other-admin", "other-query", "other-rpc"]
    with pytest.raises(ClipperException, match="No cluster named 'prod'"):
        manager(kube).connect()


def test_logs_are_written_per_pod(kube, controller, tmp_path):
    cm = manager(kube)
    cm.start_clipper()
    controller.broken["prod-bad-1"] = ("CrashLoopBackOff", "", "the replica's own words")
    with pytest.raises(ClipperException):
        cm.deploy_model("bad", "1", "doubles", "registry.example/prod-bad:1")
    # the failed deploy removed its Deployment; its pod (which a real controller would delete) is still listed here
    paths = cm.get_logs(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == ["prod-bad-1-abc12.log"]
    assert (tmp_path / "prod-bad-1-abc12.log").read_text() == "the replica's own words"


def test_bad_arguments_are_refused():
    with pytest.raises(ClipperException, match="service_types\\['query'\\] must be ClusterIP, NodePort or Load"):
        KubernetesContainerManager(service_types={"query": "Ingress"}, api_client=object())
    with pytest.raises(ClipperException, match="num_frontend_replicas must be an integer >= 1"):
        KubernetesContainerManager(num_frontend_replicas=0, api_client=object())
    with pytest.raises(ClipperException, match="redis_ip"):
        KubernetesContainerManager(redis_ip="10.0.0.1", api_client=object())
    with pytest.raises(ClipperException, match="unknown keys \\['gpu'\\]"):
        KubernetesContainerManager(model_resources={"m": {"gpu": 1}}, api_client=object()).render_model(
            "m", "1", "doubles", "img")
    assert mf.ClusterSpec("x").labels("frontend")[mf.CLUSTER] == "x"


def test_stop_models_returns_once_the_pods_are_gone_and_names_the_ones_that_stay(kube, controller):
    """A deleted Deployment's pods terminate before stop_models returns: no replica is listed or routed to after it."""
    cm = manager(kube, rollout_timeout=1)
    cm.start_clipper()
    cm.deploy_model("small", "1", "doubles", "registry.example/prod-small:1")
    core = client.CoreV1Api(kube["api"])
    labels = mf.model_labels(cm.spec, mf.ModelSpec("small", "1", "", ""))
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod",
                                           "metadata": {"name": "prod-small-1-stuck", "labels": labels}})
    with pytest.raises(ClipperException, match="Stopping small:1: pods still terminating after 1s: prod-small-1-stuck"):
        cm.stop_models({"small": ["1"]})
    cm.deploy_model("small", "2", "doubles", "registry.example/prod-small:2")
    labels = mf.model_labels(cm.spec, mf.ModelSpec("small", "2", "", ""))
    core.create_namespaced_pod("default", {"apiVersion": "v1", "kind": "Pod",
                                           "metadata": {"name": "prod-small-2-going", "labels": labels}})
    deleting = threading.Event()

    def terminate():
        deleting.set()
        core.delete_namespaced_pod("prod-small-2-going", "default")

    threading.Timer(0.3, terminate).start()
    cm.stop_models({"small": ["2"]})
    assert deleting.is_set()  # it returned after the pod went, not before
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["prod-small-1-stuck"]
