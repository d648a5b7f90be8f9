"""``python -m clipper_deploy_core.replica``: one model replica process.

Configured through Clipper's container environment contract: ``CLIPPER_MODEL_NAME``,
``CLIPPER_MODEL_VERSION``, ``CLIPPER_MODEL_PATH`` (the bundle), ``CLIPPER_IP``/``CLIPPER_PORT``
(the frontend's RPC port), plus ``CLIPPER_REPLICA_ID``, ``CLIPPER_BUNDLE_DIGEST`` and
``CLIPPER_HEALTH_PORT`` (see :mod:`.health`), and the cluster's secret ``CLIPPER_CLUSTER_SECRET``, which it
proves to each frontend before it is linked (:mod:`..replica_auth`). With ``CLIPPER_RESOLVE_INTERVAL`` it links to every
address ``CLIPPER_IP`` resolves to, and keeps looking (several frontends, on Kubernetes). With
``CLIPPER_RPC_SOCKET`` (a local cluster) it links through that Unix socket instead of TCP; with
``CLIPPER_EXTRA_FRONTENDS`` it also links to the cluster's other frontend processes (:mod:`.links`).
Exits 3 when the bundle fails to load (the traceback is on stderr), 4 when a frontend refuses its link,
0 when the frontend goes away.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
import traceback
import zlib
from typing import Any

from .. import replica_auth, wire
from .batches import handle, handle_together
from .health import start_from_env

LOAD_FAILED = 3
REFUSED = 4
MAX_FRAME = wire.DEFAULT_MAX_FRAME  # main() reads the cluster's cap from the environment (a template forks later)


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        sys.stderr.write(f"replica: environment variable {name} is required\n")
        sys.exit(2)
    return value


def answer(loaded: Any, sock: socket.socket) -> None:
    """Read one frame from a frontend and send its reply; ``ConnectionError``/``OSError`` when it is gone."""
    msg, payload = wire.recv_frame(sock, MAX_FRAME)
    reply = handle(loaded, msg, payload)
    if reply is not None:
        wire.send_frame(sock, reply)


def serve(loaded: Any, sock: socket.socket) -> None:
    """One frontend: until it hangs up (polling briefly for each next frame: see :mod:`.polling`)."""
    from .polling import Poller

    poller = Poller(sock)
    while True:
        try:
            poller.wait()
            answer(loaded, sock)
        except (ConnectionError, OSError):
            return


def serve_frontends(loaded: Any, host: str, port: int, hello: dict[str, Any], secret: str, health: Any,
                    interval: float) -> None:
    """Every frontend ``host`` resolves to (on Kubernetes, a headless Service: one address per frontend pod),
    looked up again every ``interval`` seconds for frontends that came or went. Never returns."""
    sel = selectors.DefaultSelector()
    links: dict[str, socket.socket] = {}
    next_lookup = 0.0
    while True:
        if time.monotonic() >= next_lookup:
            next_lookup = time.monotonic() + interval
            try:
                addrs = {str(ai[4][0]) for ai in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
            except OSError as e:
                print(f"replica: cannot resolve {host}: {e}", flush=True)
                addrs = set()
            for addr in sorted(addrs - links.keys()):
                try:
                    sock = _greet(socket.create_connection((addr, port), timeout=5), hello, secret)
                except OSError as e:
                    print(f"replica: frontend {addr}:{port} not reachable ({e})", flush=True)
                    continue
                print(f"replica: linked to frontend {addr}:{port}", flush=True)
                links[addr] = sock
                sel.register(sock, selectors.EVENT_READ, addr)
        health.status = "ready" if links else "disconnected"
        frames, senders = [], []
        for key, _ in sel.select(timeout=max(0.0, next_lookup - time.monotonic())):
            addr = key.data
            try:
                frames.append(wire.recv_frame(links[addr], MAX_FRAME))
                senders.append(addr)
            except (ConnectionError, OSError):
                print(f"replica: frontend {addr} went away", flush=True)
                sel.unregister(links[addr])
                links.pop(addr).close()
        # batches from several frontends that wait together run as one predict call
        for addr, reply in zip(senders, handle_together(loaded, frames) if frames else [], strict=True):
            if reply is None or addr not in links:
                continue
            try:
                wire.send_frame(links[addr], reply)
            except OSError:
                print(f"replica: frontend {addr} went away", flush=True)
                sel.unregister(links[addr])
                links.pop(addr).close()


def _greet(sock: socket.socket, hello: dict[str, Any], secret: str) -> socket.socket:
    """A new link to a frontend: the handshake (both sides prove the cluster's secret), then blocking with no
    Nagle delay (batches are small and latency-bound). ``replica_auth.AuthError`` when it refuses us."""
    if sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(replica_auth.AUTH_TIMEOUT_S * 2)
    try:
        challenge, _ = wire.recv_frame(sock, replica_auth.PRE_AUTH_MAX_FRAME)
        signed = replica_auth.sign_hello(secret, challenge, hello)
        wire.send_frame(sock, signed)
        reply, _ = wire.recv_frame(sock, replica_auth.PRE_AUTH_MAX_FRAME)
        replica_auth.check_welcome(secret, challenge, signed, reply)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock


def _replica_id() -> int:
    """``CLIPPER_REPLICA_ID``, or a stable number from ``CLIPPER_REPLICA_NAME`` (a pod's name: Deployments
    do not number their pods)."""
    if "CLIPPER_REPLICA_ID" in os.environ:
        return int(os.environ["CLIPPER_REPLICA_ID"])
    name = os.environ.get("CLIPPER_REPLICA_NAME")
    return zlib.crc32(name.encode()) & 0x7FFFFFFF if name else 0


def _open(host: str, port: int, unix_path: str | None) -> socket.socket:
    if unix_path is None:
        return socket.create_connection((host, port), timeout=10)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(10)
        sock.connect(unix_path)
    except BaseException:
        sock.close()
        raise
    return sock


def _connect(host: str, port: int, timeout: float, unix_path: str | None = None) -> socket.socket:
    """The frontend may still be starting (a pod or container of its own): retry until ``timeout``. With
    ``unix_path`` (a replica on the cluster's own host), through that Unix socket instead of TCP."""
    deadline, delay = time.monotonic() + timeout, 0.05
    where = unix_path or f"{host}:{port}"
    while True:
        try:
            return _open(host, port, unix_path)
        except OSError as e:
            if time.monotonic() + delay > deadline:
                raise ConnectionError(f"cannot reach the frontend's RPC port at {where}: {e}") from e
            print(f"replica: frontend at {where} not reachable yet ({e}); retrying", flush=True)
            time.sleep(delay)  # backoff between connection attempts, not a wait for a result
            delay = min(delay * 2, 2.0)


def main() -> int:
    global MAX_FRAME
    MAX_FRAME = int(os.environ.get(wire.MAX_FRAME_ENV, wire.DEFAULT_MAX_FRAME))
    name, version = _env("CLIPPER_MODEL_NAME"), _env("CLIPPER_MODEL_VERSION")
    path, digest = _env("CLIPPER_MODEL_PATH"), os.environ.get("CLIPPER_BUNDLE_DIGEST") or None
    host, port = _env("CLIPPER_IP", "127.0.0.1"), int(_env("CLIPPER_PORT", "7000"))
    replica_id = _replica_id()
    secret = _env(replica_auth.SECRET_ENV)
    os.environ.pop(replica_auth.SECRET_ENV)  # the model's code and its child processes need not see it
    health = start_from_env()
    try:
        from ..bundle import load_bundle

        loaded = load_bundle(path, expected_digest=digest, expected_model=(name, version))
        from .warmup import warm_up

        warm_up(loaded)  # before the hello: a linked replica is a warm one
    except BaseException:  # noqa: BLE001 - any load failure must reach the log with its traceback
        traceback.print_exc()
        sys.stderr.flush()
        return LOAD_FAILED
    hello = {"type": "hello", "model": name, "version": version, "replica_id": replica_id, "pid": os.getpid()}
    if os.environ.get("CLIPPER_RESOLVE_INTERVAL"):
        serve_frontends(loaded, host, port, hello, secret, health, float(os.environ["CLIPPER_RESOLVE_INTERVAL"]))
    extras = [a for a in os.environ.get(wire.EXTRA_FRONTENDS_ENV, "").split(",") if a]
    try:
        if extras:  # the cluster runs several frontend processes: link to each, the cluster process last
            from .links import link_others, serve_links

            others = link_others(extras, lambda s: _greet(s, hello, secret))
        sock = _greet(_connect(host, port, float(os.environ.get("CLIPPER_CONNECT_TIMEOUT", "30")),
                               os.environ.get(wire.RPC_SOCKET_ENV)), hello, secret)
    except replica_auth.AuthError as e:
        sys.stderr.write(f"replica: {e}\n")
        return REFUSED
    health.status = "ready"
    print(f"replica {name}:{version}#{replica_id} ready (pid {os.getpid()})", flush=True)
    if extras:
        serve_links(loaded, sock, extras, others, lambda s: _greet(s, hello, secret), MAX_FRAME)
    else:
        serve(loaded, sock)
    health.status = "disconnected"
    return 0


if __name__ == "__main__":
    sys.exit(main())
