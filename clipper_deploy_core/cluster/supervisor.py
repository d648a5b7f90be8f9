"""Keeps each model version's replicas running: start, wait for readiness, restart with backoff, drain.

Where a replica runs is a ``ReplicaRunner``'s business: local processes
(:mod:`.local_processes`) or containers (:mod:`.docker_containers`). The supervisor owns the
policy, so every manager restarts, reports and scales the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..exceptions import ClipperException
from ..frontend.admin_api import ReplicaController
from ..frontend.state import ClusterState, Deployment

READY_TIMEOUT_S = float(os.environ.get("CLIPPER_DEPLOY_READY_TIMEOUT", "300"))
BACKOFF_START_S, BACKOFF_MAX_S, STABLE_S = 0.2, 10.0, 30.0
DRAIN_TIMEOUT_S = float(os.environ.get("CLIPPER_DEPLOY_DRAIN_TIMEOUT", "30"))
LOG_TAIL = 8000


@dataclass
class Replica:
    name: str
    version: str
    replica_id: int
    log: Path
    handle: Any = None  # the runner's: a process, a container
    status: str = "starting"  # starting | ready | restarting | failed | stopped
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = 0.0
    restarts: int = 0
    where: dict[str, Any] = field(default_factory=dict)  # the runner's identifiers: pid, container id
    last_error: str | None = None  # why its last start failed (the last line of its traceback), until it links
    log_offset: int = 0  # where this start's output begins in ``log``
    linked: bool = False  # whether this start linked to the frontend
    failed_starts: int = 0  # starts in a row that ended before linking

    def info(self, input_type: str) -> dict[str, Any]:
        """The replica as ``get_all_containers(verbose=True)`` reports it."""
        return {"model_id": f"{self.name}:{self.version}", "model_name": self.name, "model_version": self.version,
                "model_replica_id": self.replica_id, "input_type": input_type, "status": self.status,
                "restarts": self.restarts, "log": str(self.log), "last_error": self.last_error,
                "failed_starts": self.failed_starts, **self.where}


_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Exit|Interrupt)\w*)(?::\s*(.*))?$")


def last_error(output: str) -> str | None:
    """The exception a replica died of, from its output: ``BundleIntegrityError: ...`` (module path dropped)."""
    for line in reversed(output.splitlines()):
        match = _ERROR_LINE.match(line.strip())
        if match:
            name, message = match.groups()
            return f"{name}: {message}" if message else name
        if line.startswith("replica: "):  # the replica's own words (for example: refused by the frontend)
            return line.removeprefix("replica: ").strip()
    return None


class ReplicaRunner(Protocol):
    """Starts and stops one replica; the supervisor decides when."""

    async def prepare(self, d: Deployment) -> None:
        """Before the deployment is recorded: fail here (with a reason) if its replicas cannot start."""

    async def start(self, d: Deployment, r: Replica, env: dict[str, str]) -> None:
        """Start replica ``r`` with Clipper's container environment ``env``; set ``r.handle`` and ``r.where``."""

    async def wait(self, r: Replica) -> int:
        """Until the replica exits (or its health check says it is hung): its exit code. Its output is in
        ``r.log`` when this returns."""

    async def terminate(self, r: Replica, timeout: float) -> None:
        """Stop it: politely, then by force after ``timeout`` seconds. Idempotent."""

    async def until_healthy(self, r: Replica, deadline: float) -> bool:
        """After the replica linked to the frontend: wait for its health check, where it has one."""

    async def cleanup(self) -> None:
        """On (re)start of the cluster: remove replicas a previous cluster process left behind."""

    async def warm_template(self, modules: tuple[str, ...]) -> bool:
        """Start the template that imports ``modules`` without waiting for it; ``False`` if replicas start
        otherwise."""


def log_tail(path: Path, offset: int = 0) -> str:
    """The end of a replica's log (from byte ``offset``: one start's output), for error messages."""
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()[-LOG_TAIL:]
    except OSError:
        return "(no log)"


class ReplicaSupervisor(ReplicaController):
    """Implements the admin API's ``ReplicaController`` with a ``ReplicaRunner``."""

    def __init__(self, state: ClusterState, home: Path, runner: ReplicaRunner, rpc_addr: Callable[[], tuple[str, int]],
                 drain: Callable[[str, str, int], None] | None = None,
                 replica_env: dict[str, str] | None = None) -> None:
        self.state, self.home, self.runner, self._rpc_addr = state, home, runner, rpc_addr
        self.replica_env = dict(replica_env or {})  # the cluster's secret and frame cap, for every replica
        self._drain = drain
        self.procs: dict[tuple[str, str], list[Replica]] = {}
        self._next_id: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def set_drain(self, drain: Callable[[str, str, int], None]) -> None:
        """How to tell the dispatcher to drain a replica before it is stopped."""
        self._drain = drain

    # --- ReplicaController ----------------------------------------------------------------------
    def expected(self, name: str, version: str) -> int:
        d = self.state.get_deployment(name, version)
        return d.num_replicas if d else 0

    def replicas(self) -> list[dict[str, Any]]:
        out = []
        for (name, version), reps in sorted(self.procs.items()):
            model = self.state.get_model(name, version)
            out += [r.info(model.input_type if model else "") for r in reps if r.status != "stopped"]
        return out

    def failure(self, name: str, version: str) -> str | None:
        """Why ``name:version`` has no live replica, when every replica of it keeps failing to start."""
        reps = [r for r in self.procs.get((name, version), []) if r.status != "stopped"]
        if reps and all(r.failed_starts and not r.linked and r.last_error for r in reps):
            return reps[-1].last_error
        return None

    async def warm_template(self, modules: tuple[str, ...]) -> bool:
        return await self.runner.warm_template(modules)

    async def deploy(self, d: Deployment) -> None:
        await self.runner.prepare(d)  # before the deployment is recorded: a failure leaves nothing behind
        await self._apply(d)

    async def set_num_replicas(self, name: str, version: str, n: int) -> None:
        d = self.state.get_deployment(name, version)
        if d is None:
            raise ClipperException(f"Cannot add container for non-registered model {name}:{version}")
        await self._apply(dataclasses.replace(d, num_replicas=n))

    async def _apply(self, d: Deployment) -> None:
        """Record ``d`` and scale to it; if its new replicas fail, the previous record is put back exactly."""
        previous = self.state.get_deployment(d.name, d.version)
        self.state.put_deployment(d)
        try:
            await self._scale(d, d.num_replicas, wait=True)
        except BaseException:
            if previous is None:
                self.state.delete_deployment(d.name, d.version)
            else:
                self.state.put_deployment(previous)
            raise

    async def stop(self, name: str, version: str) -> None:
        self.state.delete_deployment(name, version)
        for r in list(self.procs.get((name, version), [])):
            await self._stop_replica(r)
        self.procs.pop((name, version), None)

    async def remove_leftovers(self) -> None:
        """Remove the replicas a previous cluster process left behind. Before the admin port opens: removed any
        later, they could include replicas a deploy has just started."""
        await self.runner.cleanup()

    async def restore(self) -> None:
        """Bring back every deployment recorded in the state (after a cluster restart; ``remove_leftovers``
        first)."""
        for d in self.state.deployments():
            await self._scale(d, d.num_replicas, wait=False)

    async def shutdown(self) -> None:
        """Stop every replica (the cluster process is stopping)."""
        for key in list(self.procs):
            for r in list(self.procs[key]):
                await self._stop_replica(r)

    # --- replica processes ----------------------------------------------------------------------
    def live(self, key: tuple[str, str]) -> list[Replica]:
        """The replicas of ``key`` that are neither stopped nor failed."""
        return [r for r in self.procs.get(key, []) if r.status not in ("stopped", "failed")]

    async def _scale(self, d: Deployment, n: int, wait: bool) -> None:
        key = (d.name, d.version)
        live = self.live(key)
        for r in live[n:]:  # newest last: stop the surplus, letting each finish its batch in flight
            await self._stop_replica(r, drain=True)
        new = [self._start(d) for _ in range(n - len(live))]
        if wait and new:
            await self._wait_ready(new)

    def _start(self, d: Deployment) -> Replica:
        key = (d.name, d.version)
        rid = self._next_id.get(key, 0)
        self._next_id[key] = rid + 1
        logs = self.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        r = Replica(d.name, d.version, rid, logs / f"{d.name}-{d.version}-{rid}.log")
        self.procs.setdefault(key, []).append(r)
        task = asyncio.create_task(self._run(d, r))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return r

    async def _run(self, d: Deployment, r: Replica) -> None:
        # A replica that was running well restarts at once; one that keeps dying waits 0.2 s, 0.4 s, ... 10 s.
        backoff = 0.0
        while r.status != "stopped":
            host, port = self._rpc_addr()
            env = {"CLIPPER_MODEL_NAME": d.name, "CLIPPER_MODEL_VERSION": d.version,
                   **({"CLIPPER_MODEL_PATH": d.bundle} if d.bundle else {}),  # an image has its bundle at its own path
                   "CLIPPER_BUNDLE_DIGEST": d.digest, "CLIPPER_IP": host, "CLIPPER_PORT": str(port),
                   "CLIPPER_REPLICA_ID": str(r.replica_id), "PYTHONUNBUFFERED": "1", **self.replica_env}
            r.started_at = time.monotonic()
            r.linked = False
            try:
                r.log_offset = r.log.stat().st_size if r.log.exists() else 0
            except OSError:
                r.log_offset = 0
            try:
                await self.runner.start(d, r, env)
                code = await self.runner.wait(r)
            except Exception as e:  # noqa: BLE001 - a runner failure (no image, engine error) is this replica's exit
                with open(r.log, "a") as log:
                    log.write(f"\n[supervisor] could not run the replica: {type(e).__name__}: {e}\n")
                code = -1
            if r.status == "stopped":
                return
            if not r.linked:  # it died before it linked: keep why, for status, metrics and queries
                r.failed_starts += 1
                r.last_error = last_error(log_tail(r.log, r.log_offset)) or f"exited with code {code}"
            if not r.ready.is_set() and r.restarts == 0:
                r.status = "failed"  # never got ready on its first start: the deploy reports it
                r.failed.set()
                return
            r.status = "restarting"
            r.restarts += 1
            if time.monotonic() - r.started_at > STABLE_S:
                backoff = 0.0
            with open(r.log, "a") as log:
                log.write(f"\n[supervisor] replica exited with code {code}; restarting in {backoff:.1f}s\n")
            await asyncio.sleep(backoff)
            backoff = min(max(backoff * 2, BACKOFF_START_S), BACKOFF_MAX_S)

    def mark_ready(self, name: str, version: str, replica_id: int, pid: int) -> None:
        """A replica linked (the dispatcher says so): it is ready, and its failed starts are forgotten."""
        for r in self.procs.get((name, version), []):
            if r.replica_id == replica_id and r.status != "stopped":
                r.status = "ready"
                r.linked, r.failed_starts, r.last_error = True, 0, None
                r.ready.set()

    def mark_gone(self, name: str, version: str, replica_id: int) -> None:
        """A ready replica's link went: it is restarting."""
        for r in self.procs.get((name, version), []):
            if r.replica_id == replica_id and r.status == "ready":
                r.status = "restarting"

    async def _wait_ready(self, new: list[Replica]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for r in new:
            waiters = {asyncio.ensure_future(r.ready.wait()), asyncio.ensure_future(r.failed.wait())}
            _, pending = await asyncio.wait(waiters, timeout=max(0.0, deadline - time.monotonic()),
                                               return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()
            if r.ready.is_set() and await self.runner.until_healthy(r, deadline):
                continue
            if r.status == "failed":
                what = "failed to load its model"
            elif r.ready.is_set():
                what = f"loaded its model but its health check did not pass within {READY_TIMEOUT_S:.0f}s"
            else:
                what = f"was not ready after {READY_TIMEOUT_S:.0f}s"
            for other in new:
                await self._stop_replica(other)
            output = log_tail(r.log).strip()
            if not output and r.last_error:  # exited before printing anything: the exit code is all there is
                output = f"(none: the replica {r.last_error})"
            raise ClipperException(f"Replica {r.replica_id} of {r.name}:{r.version} {what}. "
                                   f"Replica output (from {r.log}):\n{output}")

    async def _stop_replica(self, r: Replica, drain: bool = False) -> None:
        was_ready = r.status == "ready"
        r.status = "stopped"
        if drain and was_ready and self._drain is not None and r.handle is not None:
            self._drain(r.name, r.version, r.replica_id)  # it exits once its batch in flight is answered
            try:
                await asyncio.wait_for(self.runner.wait(r), DRAIN_TIMEOUT_S)
            except asyncio.TimeoutError:
                pass
        if r.handle is not None:
            await self.runner.terminate(r, 5.0)
