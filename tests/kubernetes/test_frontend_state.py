"""The frontend on Kubernetes: state shared through the ConfigMap, replicas that connect on their own.

Two real frontend processes run here in Kubernetes mode against the emulated API server (kmock,
through a kubeconfig, as a frontend outside a cluster would); a real replica process connects as a
pod would. The optimistic-concurrency test uses a stand-in for the API server's ConfigMap endpoint
(kmock does not check resourceVersion, and no real API server can run here).
"""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from clipper_deploy_core.bundle import save_bundle
from clipper_deploy_core.cluster.kubernetes_state import ConfigMapStateStore
from clipper_deploy_core.frontend.state import ClusterState
from clipper_deploy_core.http_client import admin_post, request
from clipper_deploy_core.managers.kubernetes import KubernetesContainerManager
from clipper_deploy_core.testing import wait_until


def kubeconfig(kube, path):
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulated",
        "clusters": [{"name": "emulated", "cluster": {"server": kube["url"]}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "u", "namespace": "default"}}]}))
    return path


class Frontend:
    def __init__(self, home, env):
        self.home = home
        self.log = open(home / "out.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clipper_deploy_core.cluster", "--name", "prod", "--home", str(home),
             "--replicas", "kubernetes", "--query-port", "0", "--admin-port", "0", "--rpc-port", "0"],
            env=env, stdout=self.log, stderr=self.log)
        wait_until(lambda: (home / "cluster.json").exists() or self.proc.poll() is not None, "the frontend")
        assert self.proc.poll() is None, (home / "out.log").read_text()
        self.info = json.loads((home / "cluster.json").read_text())

    def admin(self, path, body, token="tok"):
        return admin_post(self.info["admin"], path, body, token=token)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture()
def frontends(kube, controller, tmp_path):
    KubernetesContainerManager("prod", api_client=kube["api"], admin_token="tok",
                               frontend_image="registry.example/core:1").start_clipper()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig(kube, tmp_path / "kubeconfig")),
           "CLIPPER_K8S_NAMESPACE": "default", "CLIPPER_K8S_STATE_CONFIGMAP": "prod-state",
           "CLIPPER_ADMIN_TOKEN": "tok", "CLIPPER_CLUSTER_SECRET": "rpc-secret"}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    started = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        started.append(Frontend(tmp_path / name, env))
    yield started
    for f in started:
        f.stop()


def test_state_written_through_one_frontend_is_seen_by_the_other_and_kept_in_the_configmap(kube, frontends):
    a, b = frontends
    a.admin("add_app", {"name": "shared", "input_type": "doubles", "default_output": "none",
                        "latency_slo_micros": 5_000_000})
    cm = client.CoreV1Api(kube["api"]).read_namespaced_config_map("prod-state", "default")
    assert [row[0] for row in json.loads(cm.data["state.json"])["apps"]] == ["shared"]
    wait_until(lambda: b.admin("get_all_applications", {}) == ["shared"], "the other frontend to see the app")
    # and a write through b builds on a's
    b.admin("add_model", {"model_name": "m", "model_version": "1", "input_type": "doubles", "labels": [],
                          "container_name": "img", "model_data_path": "", "batch_size": -1})
    b.admin("add_model_links", {"app_name": "shared", "model_names": ["m"]})
    wait_until(lambda: a.admin("get_linked_models", {"app_name": "shared"}) == ["m"], "the link on a")


def test_two_frontends_share_the_selection_policy_and_what_it_learned(kube, frontends):
    """Feedback through either frontend goes through the ConfigMap: the other learns on top of it. (No replica runs
    here: every model's output is missing, so each piece of feedback is counted and costs every model alike.)"""
    a, b = frontends
    a.admin("add_app", {"name": "learn", "input_type": "doubles", "default_output": "none",
                        "latency_slo_micros": 100_000})
    for m in ("m1", "m2"):
        a.admin("add_model", {"model_name": m, "model_version": "1", "input_type": "doubles", "labels": [],
                              "container_name": "img", "model_data_path": "", "batch_size": -1})
    a.admin("add_model_links", {"app_name": "learn", "model_names": ["m1", "m2"]})
    a.admin("set_selection_policy", {"app_name": "learn", "policy": "exp3", "params": {"eta": 0.2}})
    wait_until(lambda: b.admin("get_application", {"name": "learn"}).get("selection_policy", {}).get("name") == "exp3",
               "the policy on b")

    def feedback(frontend):
        status, text = request("POST", f"http://{frontend.info['query']}/learn/update", {"input": [1.0], "label": 1})
        assert (status, text) == (200, "Feedback received? true"), text

    feedback(a)
    wait_until(lambda: b.admin("get_application", {"name": "learn"})["selection_policy"]["feedback"] == 1,
               "b to see what a learned")
    feedback(b)
    wait_until(lambda: a.admin("get_application", {"name": "learn"})["selection_policy"]["feedback"] == 2,
               "a to see what b learned on top of it")


def test_a_replica_pod_connects_and_serves_and_scaling_is_refused_on_the_admin_api(kube, frontends, tmp_path):
    a, _ = frontends
    a.admin("add_app", {"name": "sum", "input_type": "doubles", "default_output": "none",
                        "latency_slo_micros": 5_000_000})
    a.admin("add_model", {"model_name": "sum", "model_version": "1", "input_type": "doubles", "labels": [],
                          "container_name": "img", "model_data_path": "", "batch_size": -1})
    a.admin("add_model_links", {"app_name": "sum", "model_names": ["sum"]})
    bundle = save_bundle(tmp_path / "bundle", name="sum", version=1, input_type="doubles",
                         func=lambda xs: [str(sum(x)) for x in xs])
    port = a.info["rpc"].rsplit(":", 1)[1]
    replica = subprocess.Popen([sys.executable, "-m", "clipper_deploy_core.replica"], env={
        **os.environ, "CLIPPER_MODEL_NAME": "sum", "CLIPPER_MODEL_VERSION": "1", "CLIPPER_MODEL_PATH": str(bundle),
        "CLIPPER_IP": "127.0.0.1", "CLIPPER_PORT": port, "CLIPPER_REPLICA_NAME": "prod-sum-1-7d9f8-x2x4z",
        "CLIPPER_HEALTH_PORT": "0", "CLIPPER_HEALTH_PORT_FILE": str(tmp_path / "health-port"),
        "CLIPPER_CLUSTER_SECRET": "rpc-secret"})
    try:
        wait_until(lambda: a.admin("get_all_containers", {"verbose": True}) != [], "the replica to connect")
        (rep,) = a.admin("get_all_containers", {"verbose": True})
        assert rep["model_name"] == "sum" and rep["status"] == "ready" and rep["model_replica_id"] > 0
        status, text = request("POST", f"http://{a.info['query']}/sum/predict", {"input": [1.0, 2.5]})
        assert status == 200 and json.loads(text)["output"] == 3.5
        health = (tmp_path / "health-port").read_text()
        assert request("GET", f"http://127.0.0.1:{health}/health/ready")[0] == 200
        with pytest.raises(Exception, match="scale the model's Deployment"):
            a.admin("set_num_replicas", {"model_name": "sum", "model_version": "1", "num_replicas": 2})
    finally:
        replica.terminate()
        replica.wait(10)


class ConfigMapEndpoint:
    """Stands in for the API server's ConfigMap read and patch, with its optimistic concurrency: a patch naming
    an older resourceVersion gets 409. ``interfere`` writes once, between a frontend's read and its write."""

    def __init__(self, data):
        self.data, self.version, self.patches, self.conflicts = data, 1, 0, 0
        self.interfere = None

    def read_namespaced_config_map(self, name, namespace):
        return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, resource_version=str(self.version)),
                                  data=dict(self.data))

    def patch_namespaced_config_map(self, name, namespace, body):
        if self.interfere is not None:
            self.interfere, interfere = None, self.interfere
            interfere(self)
        if body["metadata"]["resourceVersion"] != str(self.version):
            self.conflicts += 1
            raise ApiException(status=409, reason="Conflict")
        self.patches += 1
        self.data.update(body["data"])
        self.version += 1
        return self.read_namespaced_config_map(name, namespace)


def test_a_conflicting_write_is_redone_on_the_newer_state(tmp_path):
    other = ClusterState(tmp_path / "other.db")
    other.add_app("theirs", "doubles", "none", 1000)
    endpoint = ConfigMapEndpoint({"state.json": "{}"})

    def another_frontend_writes(ep):
        ep.data["state.json"] = json.dumps(other.snapshot())
        ep.version += 1

    endpoint.interfere = another_frontend_writes
    state = ClusterState(tmp_path / "mine.db")
    store = ConfigMapStateStore(state, "default", "prod-state", api=object())
    store.core = endpoint

    async def run():
        await store.transaction(lambda: _async(state.add_app, "mine", "doubles", "none", 1000))

    asyncio.run(run())
    assert endpoint.conflicts == 1 and endpoint.patches == 1
    saved = json.loads(endpoint.data["state.json"])
    assert sorted(row[0] for row in saved["apps"]) == ["mine", "theirs"]  # neither write was lost
    assert sorted(a.name for a in state.apps()) == ["mine", "theirs"]


async def _async(fn, *args):
    return fn(*args)


def test_a_refused_mutation_writes_nothing(tmp_path):
    state = ClusterState(tmp_path / "s.db")
    state.add_app("x", "doubles", "none", 1000)
    endpoint = ConfigMapEndpoint({"state.json": json.dumps(state.snapshot())})
    store = ConfigMapStateStore(state, "default", "prod-state", api=object())
    store.core = endpoint
    with pytest.raises(Exception, match="already exists"):
        asyncio.run(store.transaction(lambda: _async(state.add_app, "x", "doubles", "none", 1000)))
    assert endpoint.patches == 0


def test_snapshot_and_restore_round_trip(tmp_path):
    a = ClusterState(Path(tmp_path) / "a.db")
    a.add_app("app", "doubles", "none", 1000)
    a.add_model("m", "1", "doubles", ["l"], "img", "", -1)
    a.add_link("app", ["m"])
    b = ClusterState(Path(tmp_path) / "b.db")
    b.add_app("stale", "ints", "x", 5)
    b.restore(json.loads(json.dumps(a.snapshot())))
    assert b.snapshot() == a.snapshot() and b.get_app("stale") is None and b.linked_models("app") == ["m"]
