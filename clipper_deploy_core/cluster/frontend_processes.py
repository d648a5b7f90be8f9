"""The cluster process's query workers (``--frontends N``): N - 1 more processes on the same query port.

They are started before the cluster says it listens, restarted when one dies (replicas link to it again on their
own), and stopped with the cluster. The cluster process also keeps ``replicas.json`` current for them: the replicas'
states and start failures, which only it knows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

from ..exceptions import ClipperException
from ..frontend.admin_api import ReplicaController
from ..frontend.metrics import forget_process
from ..frontend.state import ClusterState
from ..process_commands import cluster_command
from ..replica_auth import SECRET_ENV
from .query_worker import METRICS_DIR, REPLICA_VIEW, WORKERS_DIR

START_TIMEOUT_S = 60.0
VIEW_INTERVAL_S = 0.25
RESTART_BACKOFF_S = (0.1, 5.0)


class FrontendProcesses:
    """Starts, watches and stops the query workers of one cluster process."""

    def __init__(self, args: argparse.Namespace, home: Path, query_port: int, secret: str, replica_host: str) -> None:
        self.args, self.home, self.query_port, self.secret = args, home, query_port, secret
        self.replica_host = replica_host  # where replicas reach a worker's TCP listener
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.listen: dict[int, str] = {}  # what each worker listens on for replicas (kept across restarts)
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        (home / WORKERS_DIR).mkdir(exist_ok=True)

    def _argv(self, index: int) -> list[str]:
        a = self.args
        return cluster_command(
            sys.executable, "--name", a.name, "--home", str(self.home), "--worker", str(index), "--query-host",
            a.query_host, "--query-port", str(self.query_port), "--max-body", str(a.max_body), "--cache-size",
            str(a.cache_size), "--max-batch-rows", str(a.max_batch_rows), "--rpc-listen", self.listen[index])

    async def _spawn(self, index: int) -> str:
        """Start worker ``index`` and wait until it listens: the address replicas link to."""
        status = self.home / WORKERS_DIR / f"{index}.json"
        status.unlink(missing_ok=True)
        log_path = self.home / f"frontend-{index}.log"
        with open(log_path, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(index), stdin=asyncio.subprocess.PIPE, stdout=log, stderr=log,
                env={**os.environ, SECRET_ENV: self.secret}, cwd=str(self.home))
        self.procs[index] = proc
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                info = json.loads(status.read_text())
                if info["pid"] == proc.pid:
                    break
            except (OSError, ValueError):
                pass
            if proc.returncode is not None or time.monotonic() > deadline:
                if proc.returncode is None:
                    proc.kill()
                raise ClipperException(f"Query worker {index} did not start (exit code {proc.returncode}):\n"
                                       f"{log_path.read_text(errors='replace')[-4000:]}")
            await asyncio.sleep(0.02)
        address = str(info["rpc"])
        if address.startswith("tcp:"):
            self.listen[index] = address  # the port it bound: a restart takes the same one
            return f"tcp:{self.replica_host}:{address.rpartition(':')[2]}"
        return address

    async def start(self, listen: list[str]) -> list[str]:
        """Start a worker per entry of ``listen`` (``unix:/path`` or ``tcp:host:port``, port 0 for any) in parallel;
        the addresses replicas link to, in the same order. Raises with a worker's log if one cannot start."""
        self.listen = dict(enumerate(listen, start=1))
        try:
            addresses = await asyncio.gather(*(self._spawn(i) for i in self.listen))
        except BaseException:
            await self.stop()
            raise
        self._tasks = [asyncio.create_task(self._watch(i)) for i in self.listen]
        return list(addresses)

    async def _watch(self, index: int) -> None:
        backoff = RESTART_BACKOFF_S[0]
        while not self._stopping:
            proc = self.procs[index]
            code = await proc.wait()
            forget_process(self.home / METRICS_DIR, proc.pid)
            if self._stopping:
                return
            print(f"query worker {index} (pid {proc.pid}) exited with code {code}; restarting it", flush=True)
            try:
                await self._spawn(index)
                backoff = RESTART_BACKOFF_S[0]
            except (ClipperException, OSError) as e:  # cannot start now (a full disk, no memory): try again later
                print(f"query worker {index} could not restart: {e}", flush=True)
                await asyncio.sleep(backoff)  # back off between restarts of a worker that cannot start
                backoff = min(backoff * 2, RESTART_BACKOFF_S[1])

    def pids(self) -> list[int]:
        """The workers' process ids, in index order."""
        return [self.procs[i].pid for i in sorted(self.procs)]

    async def publish(self, controller: ReplicaController, state: ClusterState) -> None:
        """Keep ``replicas.json`` (the replicas' states, and why a version's replicas keep failing to start) current
        for the workers, until cancelled."""
        path, last = self.home / REPLICA_VIEW, ""
        while True:
            try:
                failures = {f"{d.name}:{d.version}": why for d in state.deployments()
                            if (why := controller.failure(d.name, d.version))}
                text = json.dumps({"replicas": controller.replicas(), "failures": failures}, default=str)
                if text != last:
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(text)
                    tmp.replace(path)
                    last = text
            except (OSError, sqlite3.Error) as e:  # a full disk or a busy database: the next round tries again
                print(f"could not publish the replica view: {e}", flush=True)
            await asyncio.sleep(VIEW_INTERVAL_S)

    async def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after 10 s)."""
        self._stopping = True
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        for task in self._tasks:
            task.cancel()
