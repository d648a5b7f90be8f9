"""An emulated Kubernetes API server (kmock) for the manager's API-contract tests.

kmock stores objects and serves create/read/list/patch/delete/watch through the official client,
but runs no controllers and ignores label selectors; the ``controller`` fixture plays the
Deployment controller's part (marking rollouts available, or reporting broken pods).
"""

import threading

import pytest

from .emulator import react, start_emulator


@pytest.fixture()
def kube():
    with start_emulator() as box:
        yield box


class Controller:
    """Plays the Deployment controller: every Deployment becomes available at its scale, except the broken ones,
    whose pod is reported waiting with a reason (and serves a log)."""

    def __init__(self, kube):
        from kubernetes import client

        self.kube, self.apps, self.core = kube, client.AppsV1Api(kube["api"]), client.CoreV1Api(kube["api"])
        self.broken: dict[str, tuple[str, str, str]] = {}  # deployment -> (reason, message, log)
        self.stuck: set[str] = set()  # never becomes available, without any pod error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.wait(0.02):
            for d in self.apps.list_deployment_for_all_namespaces().items:
                name, ns = d.metadata.name, d.metadata.namespace
                if name in self.broken:
                    self._broken_pod(d)
                elif name not in self.stuck and (d.status is None or d.status.available_replicas != d.spec.replicas):
                    self.apps.patch_namespaced_deployment_status(
                        name, ns, {"status": {"replicas": d.spec.replicas, "readyReplicas": d.spec.replicas,
                                              "availableReplicas": d.spec.replicas}})

    def _broken_pod(self, d):
        from kubernetes.client.exceptions import ApiException

        pod = f"{d.metadata.name}-abc12"
        reason, message, log = self.broken[d.metadata.name]
        try:
            self.core.read_namespaced_pod(pod, d.metadata.namespace)
            return
        except ApiException:
            pass
        labels = d.spec.template.metadata.labels
        self.core.create_namespaced_pod(d.metadata.namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "labels": labels},
            "spec": {"containers": [{"name": "replica", "image": d.spec.template.spec.containers[0].image}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "replica", "ready": False, "restartCount": 3, "image": "x", "imageID": "x",
                "state": {"waiting": {"reason": reason, "message": message}}}]}})
        react(self.kube, f"GET /api/v1/namespaces/{d.metadata.namespace}/pods/{pod}/log", log)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


@pytest.fixture()
def controller(kube):
    with Controller(kube) as c:
        yield c
