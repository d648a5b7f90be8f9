"""The frontend's replica controller on Kubernetes: it runs nothing, Kubernetes does.

Replica pods connect to the frontends on their own (through the headless RPC Service); this
controller only reports them. Replica counts belong to the model Deployments, which the manager
scales through the Kubernetes API, never through the admin API.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import ClipperException
from ..frontend.admin_api import ReplicaController
from ..frontend.state import ClusterState, Deployment


class KubernetesReplicas(ReplicaController):
    """The replica controller on Kubernetes: it reports the replica pods that link, and scales nothing."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.connected: dict[tuple[str, str], dict[int, int]] = {}  # (name, version) -> replica id -> pid

    async def deploy(self, deployment: Deployment) -> None:
        raise ClipperException("On Kubernetes, replicas are Deployments: use KubernetesContainerManager.deploy_model")

    async def set_num_replicas(self, name: str, version: str, n: int) -> None:
        raise ClipperException("On Kubernetes, scale the model's Deployment: use "
                               "KubernetesContainerManager.set_num_replicas")

    async def stop(self, name: str, version: str) -> None:
        """Nothing runs here; the manager deletes the Deployment."""

    def expected(self, name: str, version: str) -> int:
        # A registered version may have pods still starting: let its queries wait (up to their SLO) for them.
        live = len(self.connected.get((name, version), {}))
        return live or (1 if self.state.get_model(name, version) is not None else 0)

    async def warm_template(self, modules: tuple[str, ...]) -> bool:
        return False  # pods start from images, not from templates

    def failure(self, name: str, version: str) -> str | None:
        """Kubernetes restarts failing pods and reports why (kubectl describe); the frontend only sees links."""
        return None

    def replicas(self) -> list[dict[str, Any]]:
        out = []
        for (name, version), reps in sorted(self.connected.items()):
            model = self.state.get_model(name, version)
            out += [{"model_id": f"{name}:{version}", "model_name": name, "model_version": version,
                     "model_replica_id": rid, "input_type": model.input_type if model else "", "status": "ready",
                     "restarts": 0, "pid": pid} for rid, pid in sorted(reps.items())]
        return out

    def mark_ready(self, name: str, version: str, replica_id: int, pid: int) -> None:
        """A replica pod linked: report it."""
        self.connected.setdefault((name, version), {})[replica_id] = pid

    def mark_gone(self, name: str, version: str, replica_id: int) -> None:
        """A replica pod's link went: stop reporting it."""
        self.connected.get((name, version), {}).pop(replica_id, None)
