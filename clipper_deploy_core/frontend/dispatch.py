"""Per-model-version queues and the replicas that pull batches from them.

Each model version has one queue; each connected replica runs one dispatch loop that takes a
batch (never padded), sends it, and resolves the queries with the reply. One batch is in flight
per replica, so replicas balance load by pulling.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import replica_auth, wire
from .batching import FixedCap, policy_for
from .metrics import Metrics
from .prediction_cache import PredictionCache

Key = tuple[str, str]


@dataclass
class Outcome:
    """How one query ended: ``output`` set on success, else ``reason`` and ``explanation``."""

    output: str | None = None
    reason: str | None = None
    explanation: str | None = None
    model: str | None = None  # "name:version" that answered, where a selection policy chose it


@dataclass
class Task:
    input: Any
    deadline: float
    slo: float  # seconds; the batch policy's budget comes from it
    retried: bool = False  # sent again once after its replica died; never twice (it may be what kills them)
    cache_key: tuple[str, str, bytes] | None = None  # where its output goes in the prediction cache, if anywhere
    future: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ModelQueue:
    """One model version's queue of tasks, from which its replicas pull batches. An idle replica's loop waits on a
    future of its own; a new task wakes one of them (not every idle replica, as an event would)."""
    def __init__(self, batch_size: int) -> None:
        self.tasks: collections.deque[Task] = collections.deque()
        self.batch_size = batch_size
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()

    def _wake(self, n: int = 1) -> None:
        while n and self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n -= 1

    def put(self, task: Task) -> None:
        """Queue one task at the tail."""
        self.tasks.append(task)
        self._wake()

    def requeue(self, tasks: list[Task]) -> None:
        """Put tasks back at the head of the queue, in their order (they were the oldest)."""
        self.tasks.extendleft(reversed(tasks))
        self._wake(len(tasks))

    def _take(self, cap: int) -> list[Task]:
        now = time.monotonic()
        batch: list[Task] = []
        # Queries whose SLO already passed have been answered with the default: never run them.
        while self.tasks and len(batch) < cap:
            t = self.tasks.popleft()
            if not t.future.done() and t.deadline > now:
                batch.append(t)
        return batch

    async def get_batch(self, cap: int, stop: asyncio.Future[None]) -> list[Task]:
        """Up to ``cap`` queued inputs as soon as there is at least one (a batch never waits to fill); ``[]`` once
        ``stop`` is done (the replica's link went, or it is being drained)."""
        while True:
            if stop.done():
                return []
            batch = self._take(cap)
            if batch:
                if self.tasks:
                    self._wake()  # more than one batch's worth: another idle replica takes the rest
                return batch
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)

            def interrupt(_: object, waiter: asyncio.Future[None] = waiter) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            stop.add_done_callback(interrupt)
            try:
                await waiter
            finally:
                stop.remove_done_callback(interrupt)


class Dispatcher:
    """Owns the queues and the replica connections (the RPC server's connection handler)."""

    def __init__(self, metrics: Metrics, secret: str,
                 on_replica_ready: Callable[[str, str, int, int], None] | None = None,
                 on_replica_gone: Callable[[str, str, int], None] | None = None,
                 max_frame: int = wire.DEFAULT_MAX_FRAME, cache: PredictionCache | None = None) -> None:
        self.metrics = metrics
        self.cache = cache
        self.secret, self.max_frame = secret, max_frame
        self.queues: dict[Key, ModelQueue] = {}
        self.live: dict[Key, set[int]] = collections.defaultdict(set)
        self.on_replica_ready = on_replica_ready
        self.on_replica_gone = on_replica_gone
        self._ids = itertools.count(1)
        self._drain: dict[tuple[Key, int], asyncio.Future[None]] = {}  # done: send this replica nothing more

    def drain(self, name: str, version: str, replica_id: int) -> None:
        """Send this replica no new batch; once its batch in flight is answered, hang up (it then exits)."""
        stop = self._drain.get(((name, version), replica_id))
        if stop is not None and not stop.done():
            stop.set_result(None)

    def queue(self, key: Key, batch_size: int) -> ModelQueue:
        """The queue of model version ``key`` (created on first use), with its current ``batch_size``."""
        q = self.queues.get(key)
        if q is None:
            q = self.queues[key] = ModelQueue(batch_size)
        q.batch_size = batch_size
        return q

    def live_replicas(self, key: Key) -> int:
        """How many replicas of model version ``key`` are linked now."""
        return len(self.live.get(key, ()))

    async def _authenticate(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[Key, int, int]:
        """The handshake of :mod:`..replica_auth`: ``(key, replica_id, pid)`` of a replica that proved the secret."""
        challenge = replica_auth.challenge()
        writer.write(wire.encode(challenge))
        await writer.drain()
        hello, _ = await wire.read_frame(reader, replica_auth.PRE_AUTH_MAX_FRAME)
        replica_auth.check_hello(self.secret, challenge, hello)
        model, version, rid, pid = (hello.get(f) for f in replica_auth.HELLO_FIELDS)
        if not (isinstance(model, str) and isinstance(version, str) and type(rid) is int and type(pid) is int):
            raise replica_auth.AuthError("the hello's model, version, replica_id and pid have the wrong types")
        key: Key = (model, version)
        if rid in self.live[key]:
            # A replica is its connection: a second link claiming a live id would steal (and then unlink) it.
            writer.write(wire.encode({"type": "refused", "reason": f"replica {rid} of {model}:{version} is already "
                                                                   f"linked to this frontend"}))
            await writer.drain()
            raise replica_auth.AuthError(f"a second link claimed live replica {rid} of {model}:{version}")
        writer.write(wire.encode(replica_auth.welcome(self.secret, challenge, hello)))
        await writer.drain()
        return key, rid, pid

    async def handle_replica(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one replica's link (the RPC server's connection handler): handshake, then batches until it goes."""
        try:
            key, rid, pid = await asyncio.wait_for(self._authenticate(reader, writer), replica_auth.AUTH_TIMEOUT_S)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError) as e:
            peer = writer.get_extra_info("peername")
            why = "no handshake within the time allowed" if isinstance(e, asyncio.TimeoutError) else str(e)
            print(f"rpc: refused a link from {peer}: {why or type(e).__name__}", flush=True)
            writer.close()
            return
        self.live[key].add(rid)
        self.metrics.live_replicas.labels(*key).set(self.live_replicas(key))
        if self.on_replica_ready:
            self.on_replica_ready(key[0], key[1], rid, pid)
        inflight: list[Task] = []
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain[(key, rid)] = stop
        try:
            await self._serve(key, rid, reader, writer, inflight, stop)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.live[key].discard(rid)
            self._drain.pop((key, rid), None)
            self.metrics.live_replicas.labels(*key).set(self.live_replicas(key))
            # A batch lost with its replica goes to another replica (or this one, restarted) once.
            retry = [t for t in inflight if not t.future.done() and not t.retried]
            for t in inflight:
                if not t.future.done() and t.retried:
                    t.future.set_result(Outcome(reason="replica_died", explanation=(
                        f"Model {key[0]}:{key[1]}: two replicas died while processing this query (it may be what "
                        f"crashes them); replicas are being restarted")))
            for t in retry:
                t.retried = True
            if retry:
                self.queues[key].requeue(retry)
            writer.close()
            if self.on_replica_gone:
                self.on_replica_gone(key[0], key[1], rid)

    async def _serve(self, key: Key, rid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     inflight: list[Task], stop: asyncio.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[bool] | None = None  # True once the batch in flight is answered
        started = 0.0
        lost = False
        queue = self.queues.get(key) or self.queue(key, -1)
        policy = policy_for(queue.batch_size)

        async def read_loop() -> None:
            # Reads all the time, so a replica that dies while idle is noticed at once. A reply resolves its queries
            # here, on the turn of the loop it arrives in: their handlers answer before the next batch is sent.
            nonlocal lost
            try:
                while True:
                    msg = (await wire.read_frame(reader, self.max_frame))[0]
                    if msg.get("type") == "bye":  # the replica is leaving: drain it like a scale-down would
                        if not stop.done():
                            stop.set_result(None)
                    elif reply is not None and not reply.done():
                        latency = time.monotonic() - started
                        policy.observe(len(inflight), latency, min(t.slo for t in inflight))
                        self._resolve(key, inflight, msg, latency)
                        inflight.clear()
                        reply.set_result(True)
            except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
                pass
            lost = True
            if reply is not None and not reply.done():
                reply.set_result(False)
            if not stop.done():
                stop.set_result(None)

        reading = asyncio.create_task(read_loop())
        cap_gauge = self.metrics.batch_size_limit.labels(key[0], key[1], str(rid))
        try:
            while True:
                if queue.batch_size != (policy.cap if isinstance(policy, FixedCap) else -1):
                    policy = policy_for(queue.batch_size)  # the version was re-registered with another batch_size
                cap_gauge.set(policy.cap)
                batch = await queue.get_batch(policy.cap, stop)
                if not batch:
                    if lost:
                        raise ConnectionError("replica connection closed")
                    return  # drained: nothing in flight, the replica exits when we hang up
                inflight[:] = batch
                started = time.monotonic()
                reply = loop.create_future()
                writer.write(wire.encode_batch(next(self._ids), [t.input for t in batch]))
                await writer.drain()
                if not await reply:
                    raise ConnectionError("replica connection closed")
        finally:
            reading.cancel()
            self.metrics.unlabel(self.metrics.batch_size_limit, key[0], key[1], str(rid))

    def _resolve(self, key: Key, batch: list[Task], reply: dict[str, Any], latency: float) -> None:
        metrics = self.metrics.model(*key)
        metrics.batch_size.observe(len(batch))
        metrics.latency.observe(latency)
        if reply.get("type") == "result":
            invalid = reply.get("invalid") or {}
            for i, (t, out) in enumerate(zip(batch, reply["outputs"], strict=True)):
                if out is not None and t.cache_key is not None and self.cache is not None:
                    self.cache.put(t.cache_key, out)  # a late result too: a retry gets it
                if t.future.done():
                    continue  # a late result after the SLO is answered only through the cache
                if out is None:
                    t.future.set_result(Outcome(reason="invalid_input", explanation=invalid.get(str(i), "invalid")))
                else:
                    t.future.set_result(Outcome(output=out))
        else:
            reason = "wrong_output" if reply.get("kind") == "contract" else "model_error"
            text = f"Model {key[0]}:{key[1]} " + (
                f"returned an invalid result: {reply.get('message')}" if reason == "wrong_output"
                else f"raised an error: {reply.get('message')}")
            for t in batch:
                if not t.future.done():
                    t.future.set_result(Outcome(reason=reason, explanation=text))

