"""``DockerContainerManager``: the cluster in Docker containers, through the docker SDK.

The frontend container runs the same cluster process as the local manager, with replicas run as
containers (:mod:`.containers`): the engine's socket is mounted into it, so the cluster keeps its
replicas running (and replaces killed ones) after the script that started it has gone. Its state
lives in a named volume. Everything carries the cluster's label, so ``connect()`` finds it from any
process and ``stop_all()`` removes it and nothing else.
"""

from __future__ import annotations

import json
import os
import secrets
import tarfile
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from ...bundle import verify_bundle
from ...deployers.common import resolve_base_image
from ...exceptions import ClipperException
from ...extras import require_extra
from ...http_client import request
from ...naming import validate_name
from ...replica_auth import SECRET_ENV, new_secret
from ..admin_client import AdminBackedManager, cache_size_args, check_frontends
from ..base import RemoteAddresses
from . import labels as lb
from .images import build_model_image, ensure_image, model_image_tag

START_TIMEOUT_S = 120.0
QUERY_PORT, ADMIN_PORT, RPC_PORT = 1337, 1338, 7000  # inside the frontend container, on a bridge network
SOCKET_IN_CONTAINER = "/var/run/docker.sock"



class DockerContainerManager(RemoteAddresses, AdminBackedManager):
    """Clipper's ``DockerContainerManager`` arguments, plus:

    ``network_mode``: ``"bridge"`` (default: the user-defined network ``docker_network``, ports
    published on 127.0.0.1 of the Docker host) or ``"host"`` (the host's network; ports bound to
    127.0.0.1). ``frontend_image``: the image of the frontend (default: the core base image that
    ``clipper-deploy images build`` makes). ``admin_token``: the admin API's token (default: a new
    random one, kept in the frontend container's environment for ``connect()``). ``frontends``: how
    many frontend processes the frontend container runs on its query port (replica containers link to
    each one's RPC listener on the cluster's network).
    """

    def __init__(self, cluster_name: str = "default-cluster", docker_ip_address: str = "localhost",
                 clipper_query_port: int = 1337, clipper_management_port: int = 1338,
                 clipper_rpc_port: int = 7000, redis_ip: str | None = None, redis_port: int = 6379,
                 prometheus_port: int = 9090, docker_network: str = "clipper_network",
                 extra_container_kwargs: dict[str, Any] | None = None, *, network_mode: str = "bridge",
                 frontend_image: str | None = None, admin_token: str | None = None,
                 max_request_bytes: int = 16 * 1024 * 1024, max_batch_rows: int = 10_000,
                 client: Any = None, frontends: int = 1) -> None:
        check_frontends(frontends)
        if client is None:
            require_extra("docker", "docker", "DockerContainerManager")
        if redis_ip is not None:
            raise ClipperException("redis_ip: this cluster keeps its state in a volume of its own, without Redis")
        if (redis_port, prometheus_port) != (6379, 9090):
            warnings.warn("redis_port and prometheus_port are unused: metrics are served on the query port "
                          "at /metrics", stacklevel=2)
        if network_mode not in ("bridge", "host"):
            raise ClipperException(f"network_mode must be 'bridge' or 'host', not {network_mode!r}")
        extra = dict(extra_container_kwargs or {})
        try:
            json.dumps(extra)
        except TypeError as e:  # replicas are started by the frontend, which gets these as JSON
            raise ClipperException(f"extra_container_kwargs must be JSON-serializable: {e}") from e
        self.cluster_name = validate_name(cluster_name, "cluster name")
        self.cluster_identifier = cluster_name
        self.host = "127.0.0.1" if docker_ip_address == "localhost" else docker_ip_address
        self.ports = (clipper_query_port, clipper_management_port, clipper_rpc_port)
        self.network = "host" if network_mode == "host" else docker_network
        self.extra = extra
        self.frontend_image = frontend_image
        self.admin_token = admin_token
        self.max_request_bytes = max_request_bytes
        self.max_batch_rows = max_batch_rows
        self.frontends = frontends
        self._client = client
        self.addrs: dict[str, str] | None = None

    @property
    def client(self) -> Any:
        """The docker SDK client (from the environment), checked to answer."""
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
                self._client.ping()
            except Exception as e:
                raise ClipperException(f"Cannot reach the Docker engine (DOCKER_HOST="
                                       f"{os.environ.get('DOCKER_HOST', 'unset')}): {e}") from e
        return self._client

    # --- finding the cluster ------------------------------------------------------------------
    def _frontend(self) -> Any | None:
        found = self.client.containers.list(all=True, filters=lb.cluster_filter(self.cluster_name, "frontend"))
        return found[0] if found else None

    def _addresses(self, container: Any) -> dict[str, str] | None:
        """Where the frontend's query and admin ports are reachable from this process, once it listens."""
        container.reload()
        if self.network != "host":
            ports = container.attrs["NetworkSettings"]["Ports"] or {}
            try:
                return {role: f"{self.host}:{ports[f'{port}/tcp'][0]['HostPort']}"
                        for role, port in (("query", QUERY_PORT), ("admin", ADMIN_PORT))}
            except (KeyError, IndexError, TypeError):
                return None
        # On the host's network it picks its own ports (0 = any free one) and prints where it listens.
        for line in reversed(container.logs(stdout=True, stderr=False).decode(errors="replace").splitlines()):
            if line.startswith("cluster listening: "):
                info = json.loads(line.split(": ", 1)[1])
                return {role: f"{self.host}:{info[role].rsplit(':', 1)[1]}" for role in ("query", "admin")}
        return None

    def _use(self, container: Any) -> None:
        self.admin_token = lb.env_of(container.attrs).get("CLIPPER_ADMIN_TOKEN") or self.admin_token
        self.addrs = self._addresses(container)

    def connect(self) -> None:
        container = self._frontend()
        if container is None or container.status != "running":
            raise ClipperException(f"No running cluster named '{self.cluster_name}' on the Docker engine "
                                   f"(no running container labelled {lb.CLUSTER}={self.cluster_name}). "
                                   f"Start one with start_clipper()")
        self.network = container.labels.get(lb.NETWORK, self.network)
        self._use(container)
        if self.addrs is None or not self._answers(self.addrs["admin"]):
            raise ClipperException(f"The frontend of cluster '{self.cluster_name}' (container {container.name}) "
                                   f"is not answering yet")

    # --- cluster lifecycle --------------------------------------------------------------------
    def _socket_mount(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Mount the engine's socket into the frontend, so its supervisor can run the replicas."""
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        if host.startswith("unix://"):
            return ({host.removeprefix("unix://"): {"bind": SOCKET_IN_CONTAINER, "mode": "rw"}},
                    {"DOCKER_HOST": f"unix://{SOCKET_IN_CONTAINER}"})
        return {}, {"DOCKER_HOST": host}  # a TCP engine: the frontend reaches it at the same address

    def start_clipper(self, cache_size: int | None = None, **_: Any) -> None:
        """Start the frontend container (``cache_size``: the prediction cache in bytes, 0 for none; Clipper's
        default 32 MiB when not given) and wait until it answers."""
        cache_args = cache_size_args(cache_size)
        running = self._frontend()
        if running is not None:
            if running.status == "running":
                raise ClipperException(f"A cluster named '{self.cluster_name}' is already running (container "
                                       f"{running.name}). Use connect(), or stop_all() it first")
            running.remove(force=True)
        image = self.frontend_image or resolve_base_image("python", None)
        ensure_image(self.client, image, "the frontend")
        token = self.admin_token or secrets.token_urlsafe(24)
        labels = {lb.CLUSTER: self.cluster_name, lb.NETWORK: self.network, lb.ROLE: "frontend"}
        volume = self.client.volumes.create(name=lb.container_name(self.cluster_name, "state"),
                                            labels={lb.CLUSTER: self.cluster_name})
        volumes, env = self._socket_mount()
        volumes[volume.name] = {"bind": "/state", "mode": "rw"}
        q, a, r = self.ports
        name = lb.container_name(self.cluster_name, "frontend")
        if self.network == "host":
            net: dict[str, Any] = {"network_mode": "host"}
            hosts = ("127.0.0.1", q, "127.0.0.1", a, "127.0.0.1", r)
        else:
            if not self.client.networks.list(names=[self.network]):
                self.client.networks.create(self.network, driver="bridge", labels={lb.CLUSTER: self.cluster_name})
            ports = {f"{QUERY_PORT}/tcp": ("127.0.0.1", q or None), f"{ADMIN_PORT}/tcp": ("127.0.0.1", a or None)}
            net = {"network": self.network, "ports": ports}
            hosts = ("0.0.0.0", QUERY_PORT, "0.0.0.0", ADMIN_PORT, "0.0.0.0", RPC_PORT)
        command = ["python", "-m", "clipper_deploy_core.cluster", "--name", self.cluster_name,
                   "--home", "/state", "--replicas", "docker", "--query-host", hosts[0], "--query-port", str(hosts[1]),
                   "--admin-host", hosts[2], "--admin-port", str(hosts[3]), "--rpc-host", hosts[4],
                   "--rpc-port", str(hosts[5]), "--max-body", str(self.max_request_bytes),
                   "--max-batch-rows", str(self.max_batch_rows), *cache_args, "--frontends", str(self.frontends)]
        # The secret replicas prove to the frontend: in the frontend's environment, which hands it to each
        # replica container's (the engine's API is root-equivalent, so it protects them as well as a file).
        env.update({"CLIPPER_ADMIN_TOKEN": token, SECRET_ENV: new_secret(), "CLIPPER_DOCKER_CLUSTER": self.cluster_name,
                    "CLIPPER_DOCKER_NETWORK": self.network,
                    "CLIPPER_DOCKER_RPC_HOST": "127.0.0.1" if self.network == "host" else name,
                    "CLIPPER_DOCKER_EXTRA": json.dumps(self.extra), "CLIPPER_ADMIN_ALLOWED_HOSTS": self.host})
        for knob in ("CLIPPER_DEPLOY_READY_TIMEOUT", "CLIPPER_DEPLOY_DRAIN_TIMEOUT"):
            if knob in os.environ:
                env[knob] = os.environ[knob]
        container = self.client.containers.run(
            image, command, name=name, detach=True, init=True, volumes=volumes,
            restart_policy={"Name": "unless-stopped"}, **net, **lb.with_extra(self.extra, env, labels))
        self.admin_token = token
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            container.reload()
            if container.status in ("exited", "dead"):
                logs = container.logs().decode(errors="replace")[-4000:]
                container.remove(force=True)
                raise ClipperException(f"The frontend container exited with code "
                                       f"{container.attrs['State']['ExitCode']}:\n{logs}")
            addrs = self._addresses(container)
            if addrs and self._answers(addrs["admin"]):
                self.addrs = addrs
                return
            time.sleep(0.1)  # polls the container until it answers, bounded by the deadline
        logs = container.logs().decode(errors="replace")[-4000:]
        container.remove(force=True)
        raise ClipperException(f"The frontend did not answer within {START_TIMEOUT_S:.0f}s:\n{logs}")

    @staticmethod
    def _answers(admin: str) -> bool:
        try:
            return request("GET", f"http://{admin}/admin/ping", timeout=2)[0] == 200
        except ClipperException:
            return False  # not listening yet (a published port answers before the process behind it)

    # --- models -------------------------------------------------------------------------------
    def build_model(self, name: str, version: str, model_data_path: str, base_image: str,
                    container_registry: str | None = None, pkgs_to_install: list[str] | None = None) -> str:
        """One image per model version: FROM ``base_image``, ``pkgs_to_install`` at build time, the bundle in."""
        verify_bundle(model_data_path, expected_model=(name, str(version)))
        tag = model_image_tag(self.cluster_name, name, str(version), container_registry)
        return build_model_image(self.client, Path(model_data_path), base_image, tag, pkgs_to_install,
                                 registry_push=container_registry is not None,
                                 network_mode="host" if self.network == "host" else None)

    def deploy_model(self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1) -> None:
        env = lb.env_of(ensure_image(self.client, image, f"model {name}:{version}").attrs)
        if (env.get("CLIPPER_MODEL_NAME"), env.get("CLIPPER_MODEL_VERSION")) != (name, str(version)):
            raise ClipperException(f"Image {image} holds model {env.get('CLIPPER_MODEL_NAME')}:"
                                   f"{env.get('CLIPPER_MODEL_VERSION')}, not {name}:{version}")
        self._deploy(name, version, env.get("CLIPPER_BUNDLE_DIGEST", ""), num_replicas, image=image)

    def get_logs(self, logging_dir: str) -> list[str]:
        """Each container's log, plus the logs of replica containers that exited (kept by the frontend)."""
        import docker.errors

        out = Path(logging_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for c in self.client.containers.list(all=True, filters=lb.cluster_filter(self.cluster_name)):
            dst = out / f"{c.name}.log"
            dst.write_bytes(c.logs(stdout=True, stderr=True))
            paths.append(str(dst))
            if c.labels.get(lb.ROLE) == "frontend":
                try:
                    stream, _ = c.get_archive("/state/logs")
                except docker.errors.NotFound:
                    continue
                with tempfile.TemporaryFile() as tmp:
                    for chunk in stream:
                        tmp.write(chunk)
                    tmp.seek(0)
                    with tarfile.open(fileobj=tmp) as tar:
                        for member in tar.getmembers():
                            f = tar.extractfile(member) if member.isfile() else None
                            if f is not None:
                                dst = out / f"{self.cluster_name}-replica-{Path(member.name).name}"
                                dst.write_bytes(f.read())
                                paths.append(str(dst))
        return paths

    def stop_all(self, graceful: bool = True) -> None:
        """Stop the frontend (it stops its replicas), then remove every container, volume and network
        labelled with this cluster, and nothing else."""
        import docker.errors

        frontend = self._frontend()
        if frontend is not None and frontend.status == "running" and graceful:
            try:
                frontend.stop(timeout=30)
            except docker.errors.APIError:
                pass
        f = lb.cluster_filter(self.cluster_name)
        for c in self.client.containers.list(all=True, filters=f):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass
        for v in self.client.volumes.list(filters=f):
            v.remove(force=True)
        for n in self.client.networks.list(filters=f):
            n.reload()
            if not n.containers:
                n.remove()
        self.addrs = None
