"""One of a cluster's extra frontend processes (``--frontends N``, N > 1): it serves the query port only.

The cluster process starts N - 1 of these (:mod:`.frontend_processes`). Each listens on the same query port
(``SO_REUSEPORT``: the kernel spreads connections among them), reads the shared state database (it sees the cluster
process's writes at its first read in a later turn of its loop), keeps queues and an RPC listener of its own to
which every replica links, and writes its series to the shared metrics directory (any process answers ``/metrics``
for all). It runs no replica and answers no admin call; the replicas' states and start failures come from
``replicas.json``, which the cluster process keeps up to date. It exits on SIGTERM, or when the cluster process goes
(its stdin closes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..exceptions import ClipperException
from ..frontend import warm_imports
from ..frontend.dispatch import Dispatcher
from ..frontend.http import Limits, raise_file_limit
from ..frontend.metrics import Metrics
from ..frontend.offload import Offload
from ..frontend.prediction_cache import PredictionCache
from ..frontend.state import ClusterState, Deployment
from ..replica_auth import SECRET_ENV
from ..wire import frame_cap_for
from .query_port import freeze_startup_objects, query_app, start_ports, stop_ports

METRICS_DIR = "metrics"  # the frontends' shared prometheus-client files, under the cluster directory
REPLICA_VIEW = "replicas.json"  # what the cluster process sees of its replicas, for the query workers
WORKERS_DIR = "frontends"  # where each query worker says where it listens (<index>.json)


class SharedReplicaView:
    """A query worker's replica controller: the cluster process runs the replicas and publishes what it sees;
    this process only reads that (admin calls go to the cluster process)."""

    def __init__(self, state: ClusterState, path: Path) -> None:
        self.state, self.path = state, path
        self._seen: tuple[int, int] | None = None
        self._view: dict[str, Any] = {"replicas": [], "failures": {}}

    def _read(self) -> dict[str, Any]:
        try:
            st = self.path.stat()
            if (st.st_mtime_ns, st.st_size) != self._seen:
                self._view, self._seen = json.loads(self.path.read_text()), (st.st_mtime_ns, st.st_size)
        except (OSError, ValueError):
            pass  # not written yet, or replaced while read: the last view stands
        return self._view

    async def deploy(self, deployment: Deployment) -> None:
        """Refused: only the cluster process runs replicas."""
        raise ClipperException("a query worker runs no replicas: deploy through the cluster process's admin port")

    async def set_num_replicas(self, name: str, version: str, n: int) -> None:
        """Refused: only the cluster process runs replicas."""
        raise ClipperException("a query worker runs no replicas: scale through the cluster process's admin port")

    async def stop(self, name: str, version: str) -> None:
        """Refused: only the cluster process runs replicas."""
        raise ClipperException("a query worker runs no replicas: stop them through the cluster process's admin port")

    async def warm_template(self, modules: tuple[str, ...]) -> bool:
        """Nothing: only the cluster process starts templates."""
        return False

    def expected(self, name: str, version: str) -> int:
        """The replicas the version's deployment asks for (queries wait for them while they link)."""
        d = self.state.get_deployment(name, version)
        return d.num_replicas if d else 0

    def replicas(self) -> list[dict[str, Any]]:
        """Every replica as the cluster process last published it."""
        return list(self._read()["replicas"])

    def failure(self, name: str, version: str) -> str | None:
        """Why the version's replicas keep failing to start, as the cluster process last published it."""
        failure: str | None = self._read()["failures"].get(f"{name}:{version}")
        return failure


async def serve_worker(args: argparse.Namespace) -> None:
    """Serve queries until SIGTERM, SIGINT or the cluster process's exit."""
    home = Path(args.home)
    os.umask(0o077)

    metrics = Metrics(home / METRICS_DIR)
    state = ClusterState(home / "state.db", shared=True)
    secret = os.environ.pop(SECRET_ENV)
    controller = SharedReplicaView(state, home / REPLICA_VIEW)
    dispatcher = Dispatcher(metrics, secret, max_frame=frame_cap_for(args.max_body),
                            cache=PredictionCache(args.cache_size))
    kind, _, where = args.rpc_listen.partition(":")
    if kind == "unix":
        Path(where).unlink(missing_ok=True)
        rpc = await asyncio.start_unix_server(dispatcher.handle_replica, path=where)
        address = args.rpc_listen
    else:
        host, _, port = where.rpartition(":")
        rpc = await asyncio.start_server(dispatcher.handle_replica, host, int(port))
        address = f"tcp:{host}:{rpc.sockets[0].getsockname()[1]}"
    warm_imports.run()  # before it listens: the cluster's deploys wait for the cluster process's import only
    offload = Offload()
    app = query_app(state, dispatcher, metrics, controller, args, offload, state.transaction)
    limits = Limits.from_env(max(64, raise_file_limit() - 256))
    servers, _ = await start_ports([("query", app, args.query_host, args.query_port, limits, True)])
    status = home / WORKERS_DIR / f"{args.worker}.json"
    tmp = status.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "rpc": address}))
    tmp.replace(status)
    print(f"query worker {args.worker} listening: query {args.query_host}:{args.query_port}, rpc {address}",
          flush=True)
    freeze_startup_objects()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), stop.set)  # readable at EOF: the cluster process is gone
    await stop.wait()
    rpc.close()
    if kind == "unix":
        Path(where).unlink(missing_ok=True)
    offload.close()
    await stop_ports(servers)
