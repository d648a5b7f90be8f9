"""The cluster process: it assembles the frontend library (query API, admin API, RPC port, state) with a replica
supervisor and a runner.

``LocalContainerManager.start_clipper()`` starts it in the background (replicas as processes);
``DockerContainerManager`` runs it in the frontend container (replicas as containers). It outlives
the script that started it. ``cluster.json`` in its directory says where it listens, and it prints
the same line as JSON (``cluster listening: {...}``) for managers that only see its log.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import ClipperException
from ..frontend import warm_imports
from ..frontend.admin_api import AdminAPI, ReplicaController
from ..frontend.admin_guard import AdminGuard, admin_error
from ..frontend.dashboard import Dashboard
from ..frontend.dispatch import Dispatcher
from ..frontend.http import App, Limits, raise_file_limit
from ..frontend.metrics import Metrics
from ..frontend.offload import Offload
from ..frontend.prediction_cache import DEFAULT_CACHE_BYTES, PredictionCache
from ..frontend.query_api import DEFAULT_MAX_BATCH_ROWS
from ..frontend.state import ClusterState
from ..naming import validate_module_names
from ..replica_auth import SECRET_ENV, load_or_create_secret
from ..wire import EXTRA_FRONTENDS_ENV, MAX_FRAME_ENV, RPC_SOCKET_ENV, UNIX_PATH_MAX, frame_cap_for
from .local_processes import ProcessRunner
from .query_port import freeze_startup_objects, query_app, start_ports, stop_ports
from .supervisor import ReplicaRunner, ReplicaSupervisor

if TYPE_CHECKING:
    from .early_templates import Early

DEFAULT_MAX_BODY = 16 * 1024 * 1024


def _local_processes(args: argparse.Namespace, home: Path) -> tuple[ReplicaRunner, str]:
    return ProcessRunner(home, Path(args.env_root) if args.env_root else None), "127.0.0.1"


def _docker_containers(args: argparse.Namespace, home: Path) -> tuple[ReplicaRunner, str]:
    from .docker_containers import ContainerRunner

    containers = ContainerRunner.from_env(home)
    return containers, containers.rpc_host


# Where the supervisor runs replicas: a runner, and the address replicas reach the RPC port at. On Kubernetes no
# runner runs them (Kubernetes does), so that mode is a controller of its own, not an entry here.
RUNNERS: dict[str, Callable[[argparse.Namespace, Path], tuple[ReplicaRunner, str]]] = {
    "local": _local_processes, "docker": _docker_containers}


def _unix_socket_path(home: Path) -> Path | None:
    """Where local replicas link: ``rpc.sock`` in the cluster directory, or, where that path is too long for
    sockaddr_un (a deep home), in a private directory (0700) under the temp directory; None (TCP) if both are."""
    path = home / "rpc.sock"
    if len(os.fsencode(path)) < UNIX_PATH_MAX:
        return path
    import tempfile

    short = Path(tempfile.gettempdir()) / "clipper-deploy-XXXXXXXX" / "rpc.sock"
    if len(os.fsencode(short)) >= UNIX_PATH_MAX:
        return None
    return Path(tempfile.mkdtemp(prefix="clipper-deploy-")) / "rpc.sock"


async def serve(args: argparse.Namespace, early: Early) -> None:
    """Run the cluster process until SIGTERM or SIGINT: ports, state, supervisor, replicas (or, with
    ``--worker``, one of its query workers). ``early``: the replica templates started before the imports."""
    if args.worker is not None:
        from .query_worker import serve_worker

        return await serve_worker(args)
    home = Path(args.home)
    os.umask(0o077)  # state, secret, token, logs and bundles hold code and data: this user's alone
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    several = args.frontends > 1
    metrics_dir = None
    if several:  # a fresh count: the files of a previous run's processes would be summed in
        from .query_worker import METRICS_DIR

        metrics_dir = home / METRICS_DIR
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
    state = ClusterState(home / "state.db", shared=several)
    metrics = Metrics(metrics_dir)
    rpc_port = [args.rpc_port]
    token = os.environ.get("CLIPPER_ADMIN_TOKEN") or load_or_create_secret(home / "admin_token")
    if args.insecure_loopback_admin:
        print("WARNING: --insecure-loopback-admin: admin mutations from loopback need no token. Any local process, "
              "and any web page a browser on this host opens that gets past the Host/Origin checks, can deploy code "
              "as this user. Use it only for Clipper's own clipper_admin client.", file=sys.stderr, flush=True)
    # Replicas prove this secret before they are linked; managers hand it to them (see replica_auth).
    secret = os.environ.get(SECRET_ENV) or load_or_create_secret(home / "secret")
    max_frame = frame_cap_for(args.max_body)
    cache = PredictionCache(args.cache_size)
    store = None
    controller: ReplicaController
    supervisor: ReplicaSupervisor | None = None
    if args.replicas == "kubernetes":
        # Kubernetes runs the replicas; the state is shared with the other frontend pods through a ConfigMap.
        from .kubernetes_replicas import KubernetesReplicas
        from .kubernetes_state import ConfigMapStateStore

        controller = KubernetesReplicas(state)
        store = ConfigMapStateStore(state, os.environ["CLIPPER_K8S_NAMESPACE"],
                                    os.environ["CLIPPER_K8S_STATE_CONFIGMAP"])
        await store.start()
        dispatcher = Dispatcher(metrics, secret, on_replica_ready=controller.mark_ready,
                                on_replica_gone=controller.mark_gone, max_frame=max_frame, cache=cache)
        rpc_host = args.rpc_host
    else:
        runner, rpc_host = RUNNERS[args.replicas](args, home)
        if isinstance(runner, ProcessRunner):
            await runner.adopt(early)  # started before our imports; it warms while the user builds the model
            if args.preload:
                await runner.warm_template(args.preload)  # forked from the bare template once that is ready
        replica_env = {SECRET_ENV: secret, MAX_FRAME_ENV: str(max_frame)}
        supervisor = ReplicaSupervisor(state, home, runner, lambda: (rpc_host, rpc_port[0]), replica_env=replica_env)
        controller = supervisor
        dispatcher = Dispatcher(metrics, secret, on_replica_ready=supervisor.mark_ready,
                                on_replica_gone=supervisor.mark_gone, max_frame=max_frame, cache=cache)
        supervisor.set_drain(dispatcher.drain)
    rpc = await asyncio.start_server(dispatcher.handle_replica, args.rpc_host, args.rpc_port)
    rpc_port[0] = rpc.sockets[0].getsockname()[1]
    rpc_unix = None
    unix_path = _unix_socket_path(home) if supervisor is not None and args.replicas == "local" else None
    if unix_path is not None and supervisor is not None:
        # Replicas on this host link over a Unix socket (mode 0600 under the umask above): no TCP stack per batch.
        unix_path.unlink(missing_ok=True)
        rpc_unix = await asyncio.start_unix_server(dispatcher.handle_replica, path=str(unix_path))
        supervisor.replica_env[RPC_SOCKET_ENV] = str(unix_path)

    offload = Offload()
    transaction = store.transaction if store else (state.transaction if several else None)
    query = query_app(state, dispatcher, metrics, controller, args, offload, transaction)
    guard = AdminGuard(token, args.insecure_loopback_admin, args.admin_allowed_hosts.split(","))
    dashboard = Dashboard(state, controller, metrics, guard)
    admin = App(AdminAPI(state, controller, guard, store.transaction if store else None).routes()
                + dashboard.routes(), args.max_body, admin_error)
    # Every connection is a descriptor: keep a reserve for replica links, the admin port, state and logs.
    query_limits = Limits.from_env(max(64, raise_file_limit() - 256))
    servers, ports = await start_ports([("query", query, args.query_host, args.query_port, query_limits, several)])
    info: dict[str, Any] = {"name": args.name, "pid": os.getpid(), "query": f"{args.query_host}:{ports['query']}",
                            "rpc": f"{rpc_host}:{rpc_port[0]}", "frontends": args.frontends,
                            "frontend_pids": [os.getpid()]}
    if rpc_unix is not None:
        info["rpc_socket"] = str(unix_path)
    workers, publishing = None, None
    if several and supervisor is not None:
        from .frontend_processes import FrontendProcesses  # and the query workers' module: only with several

        workers = FrontendProcesses(args, home, ports["query"], secret, rpc_host)
        # Each worker links replicas next to the cluster's own socket, or over TCP (the next ports up, if fixed).
        listen = [f"unix:{unix_path.parent / f'rpc-{i}.sock'}" if unix_path is not None
                  else f"tcp:{args.rpc_host}:{args.rpc_port + i if args.rpc_port else 0}"
                  for i in range(1, args.frontends)]
        try:
            supervisor.replica_env[EXTRA_FRONTENDS_ENV] = ",".join(await workers.start(listen))
        except ClipperException as e:
            print(str(e), file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        publishing = asyncio.create_task(workers.publish(controller, state))
        info["frontend_pids"] = [os.getpid(), *workers.pids()]
    if supervisor is not None:
        await supervisor.remove_leftovers()
    # The admin port opens last: a manager deploys as soon as it answers, and a replica started any earlier could
    # miss the query workers' addresses, or be taken for a previous cluster's leftover and removed.
    admin_servers, admin_port = await start_ports([
        ("admin", admin, args.admin_host, args.admin_port, dataclasses.replace(query_limits, max_connections=64),
         False)])
    servers += admin_servers
    info["admin"] = f"{args.admin_host}:{admin_port['admin']}"
    tmp = home / "cluster.json.tmp"
    tmp.write_text(json.dumps(info))
    tmp.replace(home / "cluster.json")
    print(f"cluster listening: {json.dumps(info)}", flush=True)
    if args.ready_fd is not None:  # LocalContainerManager.start_clipper waits on this pipe
        try:
            os.write(args.ready_fd, b"1")
            os.close(args.ready_fd)
        except OSError:  # the starter is gone: cluster.json says the same
            pass
    warm_imports.start()  # once it listens, beside the first deploy, which waits for it (admin_api)
    if supervisor is not None:
        await supervisor.restore()
    freeze_startup_objects()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if supervisor is not None:
        await supervisor.shutdown()
    if workers is not None and publishing is not None:
        publishing.cancel()
        await workers.stop()
    if store is not None:
        store.stop()
    rpc.close()
    if rpc_unix is not None and unix_path is not None:
        rpc_unix.close()
        unix_path.unlink(missing_ok=True)
        if unix_path.parent != home:
            shutil.rmtree(unix_path.parent, ignore_errors=True)
    offload.close()
    await stop_ports(servers)
    (home / "cluster.json").unlink(missing_ok=True)


def main(early: Early | None = None) -> int:
    """The command line of ``python -m clipper_deploy_core.cluster`` (``early``: see :mod:`.early_templates`)."""
    p = argparse.ArgumentParser(prog="python -m clipper_deploy_core.cluster")
    p.add_argument("--name", required=True)
    p.add_argument("--home", required=True)
    p.add_argument("--query-host", default="127.0.0.1")
    p.add_argument("--query-port", type=int, default=1337)
    p.add_argument("--admin-host", default="127.0.0.1")
    p.add_argument("--admin-port", type=int, default=1338)
    p.add_argument("--rpc-host", default="127.0.0.1", help="where replicas connect (0.0.0.0 in a bridge network)")
    p.add_argument("--rpc-port", type=int, default=7000)
    p.add_argument("--replicas", choices=(*RUNNERS, "kubernetes"), default="local",
                   help="run replicas as local processes or Docker containers, or let Kubernetes run them")
    p.add_argument("--frontends", type=int, default=1,
                   help="frontend processes serving the query port (SO_REUSEPORT); replicas link to each")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # a query worker's index
    p.add_argument("--rpc-listen", default=None, help=argparse.SUPPRESS)  # where a query worker links replicas
    p.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)  # gets a byte once listening
    p.add_argument("--preload", default="", help="comma-separated modules a local replica template imports at start")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY)
    p.add_argument("--cache-size", type=int, default=DEFAULT_CACHE_BYTES, help="prediction cache bytes (0: off)")
    p.add_argument("--max-batch-rows", type=int, default=DEFAULT_MAX_BATCH_ROWS, help="rows one query may hold")
    p.add_argument("--env-root", default=None, help="where pkgs_to_install environments are cached")
    p.add_argument("--insecure-loopback-admin", action="store_true",
                   help="accept admin mutations without the token from loopback (for Clipper's clipper_admin)")
    p.add_argument("--admin-allowed-hosts", default=os.environ.get("CLIPPER_ADMIN_ALLOWED_HOSTS", ""),
                   help="comma-separated host names (besides IP addresses and localhost) the admin API answers to")
    args = p.parse_args()
    try:
        # as the template pool keys templates: the sorted module tuple
        args.preload = tuple(sorted(validate_module_names([m for m in args.preload.split(",") if m], "--preload")))
    except ClipperException as e:
        p.error(str(e))
    if args.frontends < 1:
        p.error("--frontends must be at least 1")
    if args.frontends > 1 and args.replicas == "kubernetes":
        p.error("--frontends: on Kubernetes, scale the frontend Deployment instead (every pod is a frontend)")
    try:
        import uvloop
    except ImportError:  # uvloop is not built for every platform; the standard loop works, only slower
        run = asyncio.run
    else:
        run = uvloop.run
    try:
        run(serve(args, early or {}))
    except ClipperException as e:  # a port in use: the reason is the whole message
        print(f"clipper-deploy: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
