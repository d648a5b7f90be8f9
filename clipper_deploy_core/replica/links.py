"""A local replica's links when its cluster runs several frontend processes.

The replica links to every address in ``CLIPPER_EXTRA_FRONTENDS`` (``unix:/path`` or ``tcp:host:port``,
comma-separated), then to the cluster process (``CLIPPER_IP``/``CLIPPER_PORT`` or ``CLIPPER_RPC_SOCKET``), which then
counts it ready, and answers whichever sends a batch. Batches that wait together run as one predict call
(:func:`.batches.handle_together`).

The cluster process is the one that supervises: when it hangs up (a drain, a scale-down, a stop), the replica says
``bye`` to the others, answers what they already sent until they hang up too, and exits. A lost link to another
frontend (restarted by the cluster process) is retried every half second.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from .. import wire
from .batches import Frame, handle_together
from .env_settings import seconds_from_env
from .polling import Poller

RETRY_S = 0.5
BYE_GRACE_S = 30.0  # how long the others get to hang up after bye: their batches in flight are answered first
# How long a round waits for the other frontends' next batches: a share of the last predict call, at most
# CLIPPER_DEPLOY_MERGE_WAIT_MS (1 ms by default; more for a model whose batches gain more than they wait).
# Merged, the model sees the batch one frontend would have sent, for at most this share more latency.
LINGER_SHARE = 0.2
MERGE_WAIT_ENV = "CLIPPER_DEPLOY_MERGE_WAIT_MS"
MERGE_WAIT_DEFAULT_MS = 1.0


def merge_wait_s() -> float:
    """``CLIPPER_DEPLOY_MERGE_WAIT_MS`` in seconds."""
    return seconds_from_env(MERGE_WAIT_ENV, MERGE_WAIT_DEFAULT_MS, "milliseconds", 1e3)


def open_address(address: str, timeout: float = 5.0) -> socket.socket:
    """A connected socket to ``unix:/path`` or ``tcp:host:port``."""
    kind, _, where = address.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(where)
        except BaseException:
            sock.close()
            raise
        return sock
    if kind == "tcp":
        host, _, port = where.rpartition(":")
        return socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    raise ValueError(f"not a frontend address (unix:/path or tcp:host:port): {address!r}")


def link_others(extras: list[str], greet: Callable[[socket.socket], socket.socket]) -> dict[str, socket.socket]:
    """Link to the other frontends before the cluster process (which then counts the replica ready, and sends
    queries to all of them): the links made, by address. One not reachable now is retried while serving."""
    links = {}
    for addr in extras:
        try:
            links[addr] = greet(open_address(addr, timeout=2.0))
        except OSError as e:
            print(f"replica: frontend {addr} not reachable ({e})", flush=True)
    return links


def serve_links(loaded: Any, first: socket.socket, extras: list[str], others: dict[str, socket.socket],
                greet: Callable[[socket.socket], socket.socket], max_frame: int) -> None:
    """Serve the cluster process's link ``first`` and a link to each of ``extras`` (``others``: those made
    already) until the cluster process hangs up and the others have followed (or ``BYE_GRACE_S`` passed)."""
    merge_wait = merge_wait_s()
    sel = selectors.DefaultSelector()
    poller = Poller()  # watches every link for a moment after each round before the select below sleeps
    links: dict[str, socket.socket] = {"": first, **others}  # "" is the cluster process
    for addr, sock in links.items():
        sel.register(sock, selectors.EVENT_READ, addr)
        poller.add(sock)
    pending, retry_at = [a for a in extras if a not in others], time.monotonic() + RETRY_S
    leaving_by: float | None = None
    answered: set[str] = set()  # the frontends sent a reply in the last round
    last_call = 0.0  # how long the last predict call took

    def drop(addr: str) -> None:
        nonlocal leaving_by
        sock = links.pop(addr)
        sel.unregister(sock)
        poller.remove(sock)
        sock.close()
        if addr == "":  # the cluster process let us go: tell the others, and answer what they already sent
            leaving_by = time.monotonic() + BYE_GRACE_S
            for other, s in list(links.items()):
                try:
                    wire.send_frame(s, {"type": "bye"})
                except OSError:
                    drop(other)
        elif leaving_by is None:
            print(f"replica: frontend {addr} went away; relinking", flush=True)
            pending.append(addr)

    def receive(timeout: float | None, frames: list[Frame], senders: list[str]) -> None:
        """Read one frame from each link that has one (waiting up to ``timeout`` for the first)."""
        for key, _ in sel.select(timeout=timeout):
            addr = key.data
            if addr not in links or addr in senders:  # dropped meanwhile, or already heard this round
                continue
            try:
                frames.append(wire.recv_frame(links[addr], max_frame))
                senders.append(addr)
            except (ConnectionError, OSError):
                drop(addr)

    while True:
        now = time.monotonic()
        if leaving_by is not None and (not links or now >= leaving_by):
            return
        if pending and leaving_by is None and now >= retry_at:
            retry_at = now + RETRY_S
            for addr in list(pending):
                try:
                    links[addr] = greet(open_address(addr, timeout=2.0))
                except OSError as e:
                    print(f"replica: frontend {addr} not reachable ({e})", flush=True)
                    continue
                pending.remove(addr)
                sel.register(links[addr], selectors.EVENT_READ, addr)
                poller.add(links[addr])
        wait = (retry_at - now) if pending else (leaving_by - now if leaving_by is not None else None)
        frames: list[Frame] = []
        senders: list[str] = []
        timeout = None if wait is None else max(0.0, wait)
        if poller.max_window > 0:  # it did the waiting (or found nothing until the timeout): the select only reads
            poller.wait(timeout)
            timeout = 0.0
        receive(timeout, frames, senders)
        if not frames:
            continue
        # Under load every frontend sends its next batch as soon as it has our reply, but not at the same instant:
        # give the ones answered last round a moment (a fraction of a predict call) so their batches join this one.
        linger_until = time.monotonic() + min(merge_wait, LINGER_SHARE * last_call)
        while answered & links.keys() - set(senders) and time.monotonic() < linger_until:
            receive(max(0.0, linger_until - time.monotonic()), frames, senders)
        started = time.monotonic()
        replies = handle_together(loaded, frames)
        last_call = time.monotonic() - started
        answered = set()
        for addr, reply in zip(senders, replies, strict=True):
            if reply is None or addr not in links:
                continue
            try:
                wire.send_frame(links[addr], reply)
                answered.add(addr)
            except OSError:
                drop(addr)
