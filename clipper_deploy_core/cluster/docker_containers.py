"""Replicas as Docker containers: the ``ReplicaRunner`` the cluster process uses inside the frontend container.

It talks to the engine through the docker SDK over the socket the manager mounted in. Each replica
is a container of the model's image with Clipper's environment, the cluster's labels and a health
check on the replica's ``/health/ready``. A container that exits, or whose health check fails, has
its log appended to the replica's log file and is removed; the supervisor then starts another.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import ClipperException
from ..frontend.state import Deployment
from ..managers.docker import labels as lb
from ..managers.docker.images import ensure_image
from .supervisor import READY_TIMEOUT_S, Replica, ReplicaRunner

HEALTH_INTERVAL_S = 1.0


@dataclass
class Running:
    container: Any
    exited: asyncio.Future[int]


def _in_own_thread(fn: Callable[..., int], *args: Any) -> asyncio.Future[int]:
    """Run a blocking watch in a thread of its own: one per replica for its whole life, so watches never
    use up asyncio's default executor (which the engine calls that start and stop replicas need)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[int] = loop.create_future()

    def settle(result: int, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting side
            loop.call_soon_threadsafe(settle, -1, e)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="replica-watch", daemon=True).start()
    return future


def _health(container: Any) -> str | None:
    """The engine's health status of a (reloaded) container: starting, healthy or unhealthy."""
    status = container.attrs["State"].get("Health", {}).get("Status")
    return None if status is None else str(status)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class ContainerRunner(ReplicaRunner):
    """Replicas as containers of the model's image, on the cluster's network (the Docker manager's runner)."""

    def __init__(self, client: Any, home: Path, cluster: str, network: str, rpc_host: str,
                 extra: dict[str, Any] | None = None) -> None:
        self.client, self.home, self.cluster = client, home, cluster
        self.network, self.rpc_host = network, rpc_host  # network "host", or a user-defined network's name
        self.extra = dict(extra or {})

    @classmethod
    def from_env(cls, home: Path) -> ContainerRunner:
        """Configured by the manager through the frontend container's environment."""
        import docker

        return cls(docker.from_env(), home, os.environ["CLIPPER_DOCKER_CLUSTER"],
                   os.environ.get("CLIPPER_DOCKER_NETWORK", "host"),
                   os.environ.get("CLIPPER_DOCKER_RPC_HOST", "127.0.0.1"),
                   json.loads(os.environ.get("CLIPPER_DOCKER_EXTRA", "{}")))

    async def prepare(self, d: Deployment) -> None:
        """Only a model image holding this exact bundle: its baked-in digest is the one the deploy names."""
        if d.image is None:
            raise ClipperException(f"This cluster runs replicas as containers, from model images: bundle {d.bundle} "
                                   f"cannot run here (build_model makes its image)")
        image = await asyncio.to_thread(ensure_image, self.client, d.image, f"model {d.name}:{d.version}")
        env = lb.env_of(image.attrs)
        if env.get("CLIPPER_BUNDLE_DIGEST") != d.digest or (env.get("CLIPPER_MODEL_NAME"),
                                                            env.get("CLIPPER_MODEL_VERSION")) != (d.name, d.version):
            raise ClipperException(f"Image {d.image} does not hold bundle {d.digest[:12]} of {d.name}:{d.version} "
                                   f"(build it with build_model)")

    async def start(self, d: Deployment, r: Replica, env: dict[str, str]) -> None:
        env = {**env, "CLIPPER_HEALTH_PORT": "0"}
        name = lb.container_name(self.cluster, d.name, d.version, str(r.replica_id), secrets.token_hex(3))
        labels = {lb.CLUSTER: self.cluster, lb.ROLE: "replica", lb.MODEL: f"{d.name}:{d.version}",
                  lb.REPLICA: str(r.replica_id)}
        kwargs: dict[str, Any] = {
            "name": name, "detach": True, "init": True,
            "healthcheck": {"test": ["CMD", "python", "-m", "clipper_deploy_core.replica.probe", "ready"],
                            "interval": _ns(HEALTH_INTERVAL_S), "timeout": _ns(5), "retries": 3,
                            "start_period": _ns(READY_TIMEOUT_S)},
            **({"network_mode": "host"} if self.network == "host" else {"network": self.network}),
            **lb.with_extra(self.extra, env, labels),
        }
        container = await asyncio.to_thread(self.client.containers.run, d.image, **kwargs)
        r.where = {"container": container.short_id, "container_name": name}
        r.handle = Running(container, _in_own_thread(self._watch, container, r.log))

    def _watch(self, container: Any, log: Path) -> int:
        """Block until the container exits, or kill it once its health check fails; save its log; remove it."""
        import docker.errors
        import requests

        code, why = -1, ""
        while True:
            try:
                code = int(container.wait(timeout=HEALTH_INTERVAL_S).get("StatusCode", -1))
                break
            except docker.errors.NotFound:
                why = "the container was removed"
                break
            except requests.exceptions.RequestException:
                pass  # still running
            try:
                container.reload()
            except docker.errors.NotFound:
                why = "the container was removed"
                break
            if _health(container) == "unhealthy":
                why = "its health check failed: killed"
                try:
                    container.kill()
                except docker.errors.APIError:
                    pass
        try:
            output = container.logs(stdout=True, stderr=True).decode(errors="replace")
        except docker.errors.APIError:
            output = ""
        with open(log, "a") as f:
            f.write(output + (f"\n[supervisor] container {container.name}: {why}\n" if why else ""))
        try:
            container.remove(force=True)
        except docker.errors.APIError:
            pass
        return code

    async def wait(self, r: Replica) -> int:
        running: Running = r.handle
        return await asyncio.shield(running.exited)

    async def terminate(self, r: Replica, timeout: float) -> None:
        import docker.errors

        running: Running = r.handle
        if not running.exited.done():
            try:
                await asyncio.to_thread(running.container.stop, timeout=max(1, int(timeout)))
            except docker.errors.APIError:
                pass  # gone already
        await asyncio.shield(running.exited)

    async def until_healthy(self, r: Replica, deadline: float) -> bool:
        """Readiness is the container's health check (the replica's /health/ready), not only its link."""
        import docker.errors

        running: Running = r.handle
        while time.monotonic() < deadline and not running.exited.done():
            try:
                await asyncio.to_thread(running.container.reload)
            except docker.errors.NotFound:
                return False
            status = _health(running.container)
            if status == "healthy":
                return True
            if status == "unhealthy":
                return False
            await asyncio.sleep(0.1)  # polls the engine's health status until its next check has run
        return False

    async def warm_template(self, modules: tuple[str, ...]) -> bool:
        return False  # containers start from images, not from templates

    async def cleanup(self) -> None:
        """Replica containers of an earlier frontend process (their link to it is gone): remove them."""
        def remove() -> None:
            for c in self.client.containers.list(all=True, filters=lb.cluster_filter(self.cluster, "replica")):
                c.remove(force=True)
        await asyncio.to_thread(remove)
