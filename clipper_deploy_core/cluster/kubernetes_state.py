"""Cluster state shared by every frontend pod, kept in a ConfigMap.

Why a ConfigMap: the state is small (apps, models, links), every Kubernetes cluster already runs
the store behind it (etcd, through the API server), and the API gives what sharing needs:
optimistic concurrency (a write names the ``resourceVersion`` it read and fails with 409 if another
frontend wrote in between) and watches (every frontend sees each change at once). So there is no
consensus or replication layer of our own; a frontend pod that dies loses nothing.

Each frontend keeps the state in its local SQLite (the query path reads only that). A mutation
runs as a transaction: read the ConfigMap, load it, apply the mutation, write it back naming the
version read; on a conflict, start again from the newer state.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ..exceptions import ClipperException
from ..frontend.state import ClusterState

KEY = "state.json"
MAX_ATTEMPTS = 20


def api_client() -> Any:
    """The pod's service account in a cluster; otherwise the kubeconfig (``KUBECONFIG``)."""
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.ApiClient()


class ConfigMapStateStore:
    """The cluster state shared by every frontend pod through one ConfigMap (watched; written with optimistic
    concurrency)."""
    def __init__(self, state: ClusterState, namespace: str, name: str, api: Any = None) -> None:
        from kubernetes import client

        self.state, self.namespace, self.name = state, namespace, name
        self.core = client.CoreV1Api(api or api_client())
        self._lock = asyncio.Lock()
        self._stop = threading.Event()
        self.seen_version: str | None = None

    def _load(self, cm: Any) -> None:
        snapshot = json.loads((cm.data or {}).get(KEY) or "{}")
        self.state.restore(snapshot)
        self.seen_version = cm.metadata.resource_version

    async def start(self) -> None:
        """Load the ConfigMap into the local state and start watching it."""
        cm = await asyncio.to_thread(self.core.read_namespaced_config_map, self.name, self.namespace)
        self._load(cm)
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._watch, args=(loop,), name="state-watch", daemon=True).start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(self.core.list_namespaced_config_map, self.namespace,
                                                  field_selector=f"metadata.name={self.name}", timeout_seconds=60):
                    cm = event["object"]
                    if self._stop.is_set():
                        return
                    if event["type"] in ("ADDED", "MODIFIED") and cm.metadata.name == self.name:
                        asyncio.run_coroutine_threadsafe(self._apply(cm), loop)
            except Exception as e:  # noqa: BLE001 - a broken watch is restarted; the next write re-reads anyway
                print(f"state watch interrupted ({type(e).__name__}: {e}); restarting", flush=True)
                self._stop.wait(1.0)

    async def _apply(self, cm: Any) -> None:
        async with self._lock:  # never in the middle of a transaction
            self._load(cm)

    async def transaction(self, mutation: Callable[[], Awaitable[Any]]) -> Any:
        """Run a mutation on the freshest state and write it back, retrying on a conflicting write."""
        from kubernetes.client.exceptions import ApiException

        async with self._lock:
            for _ in range(MAX_ATTEMPTS):
                cm = await asyncio.to_thread(self.core.read_namespaced_config_map, self.name, self.namespace)
                self._load(cm)
                result = await mutation()  # raises on a refused mutation: nothing is written
                body = {"metadata": {"resourceVersion": cm.metadata.resource_version},
                        "data": {KEY: json.dumps(self.state.snapshot())}}
                try:
                    written = await asyncio.to_thread(self.core.patch_namespaced_config_map, self.name,
                                                      self.namespace, body)
                except ApiException as e:
                    if e.status == 409:  # another frontend wrote since we read: redo on its state
                        continue
                    raise ClipperException(f"Could not save the cluster state to ConfigMap {self.name}: "
                                           f"{e.reason}") from e
                self.seen_version = written.metadata.resource_version
                return result
            raise ClipperException(f"The cluster state kept changing under this write ({MAX_ATTEMPTS} conflicts)")
