"""``python -m clipper_deploy_core.replica``: one model replica process.

Configured through Clipper's container environment contract: ``CLIPPER_MODEL_NAME``,
``CLIPPER_MODEL_VERSION``, ``CLIPPER_MODEL_PATH`` (the bundle), ``CLIPPER_IP``/``CLIPPER_PORT``
(the frontend's RPC port), plus ``CLIPPER_REPLICA_ID``, ``CLIPPER_BUNDLE_DIGEST`` and
``CLIPPER_HEALTH_PORT`` (see :mod:`.health`).
Exits 3 when the bundle fails to load (the traceback is on stderr), 0 when the frontend goes away.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
import zlib
from typing import Any

from .. import wire
from ..inputs import InputError, parse_single_input, to_batch, validate_input
from .health import start_from_env

LOAD_FAILED = 3


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        sys.stderr.write(f"replica: environment variable {name} is required\n")
        sys.exit(2)
    return value


def _parse_raw(input_type: str, items: list[Any], raw: list[int]) -> tuple[Any, dict[str, str]]:
    """Parse the bodies the frontend forwarded unparsed; return the batch of valid inputs and the errors."""
    invalid: dict[str, str] = {}
    for i in raw:
        try:
            items[i] = parse_single_input(input_type, items[i])
        except InputError as e:
            invalid[str(i)] = str(e)
    valid = [x for i, x in enumerate(items) if str(i) not in invalid]
    return (to_batch(input_type, valid) if valid else None), invalid


def serve(loaded: Any, sock: socket.socket) -> None:
    input_type = loaded.manifest.input_type
    while True:
        try:
            msg, payload = wire.recv_frame(sock)
        except (ConnectionError, OSError):
            return
        if msg.get("type") != "batch":
            continue
        try:
            batch, n, raw = wire.decode_batch(msg, payload)
            if input_type == "bytes":  # base64 on the wire
                batch = [validate_input(input_type, x) for x in batch]
            invalid: dict[str, str] = {}
            if raw:
                batch, invalid = _parse_raw(input_type, batch, raw)
            outputs: list[str | None] = list(loaded.predict_batch(batch, n - len(invalid))) if batch is not None else []
            if invalid:  # put the answers back in place around the inputs that failed validation
                served = iter(outputs)
                outputs = [None if str(i) in invalid else next(served) for i in range(n)]
            reply: dict[str, Any] = {"type": "result", "id": msg["id"], "outputs": outputs, "invalid": invalid}
        except Exception as e:  # noqa: BLE001 - a model error is reported per batch, never fatal
            kind = "contract" if type(e).__name__ == "PredictContractError" else "error"
            reply = {"type": "error", "id": msg["id"], "kind": kind, "message": f"{type(e).__name__}: {e}"}
        try:
            wire.send_frame(sock, reply)
        except (ConnectionError, OSError):
            return


def _replica_id() -> int:
    """``CLIPPER_REPLICA_ID``, or a stable number from ``CLIPPER_REPLICA_NAME`` (a pod's name: Deployments
    do not number their pods)."""
    if "CLIPPER_REPLICA_ID" in os.environ:
        return int(os.environ["CLIPPER_REPLICA_ID"])
    name = os.environ.get("CLIPPER_REPLICA_NAME")
    return zlib.crc32(name.encode()) & 0x7FFFFFFF if name else 0


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """The frontend may still be starting (a pod or container of its own): retry until ``timeout``."""
    deadline, delay = time.monotonic() + timeout, 0.05
    while True:
        try:
            return socket.create_connection((host, port), timeout=10)
        except OSError as e:
            if time.monotonic() + delay > deadline:
                raise ConnectionError(f"cannot reach the frontend's RPC port at {host}:{port}: {e}") from e
            print(f"replica: frontend at {host}:{port} not reachable yet ({e}); retrying", flush=True)
            time.sleep(delay)  # backoff between connection attempts, not a wait for a result
            delay = min(delay * 2, 2.0)


def main() -> int:
    name, version = _env("CLIPPER_MODEL_NAME"), _env("CLIPPER_MODEL_VERSION")
    path, digest = _env("CLIPPER_MODEL_PATH"), os.environ.get("CLIPPER_BUNDLE_DIGEST") or None
    host, port = _env("CLIPPER_IP", "127.0.0.1"), int(_env("CLIPPER_PORT", "7000"))
    replica_id = _replica_id()
    health = start_from_env()
    try:
        from ..bundle import load_bundle

        loaded = load_bundle(path, expected_digest=digest)
        if (loaded.manifest.name, loaded.manifest.version) != (name, version):
            raise RuntimeError(f"bundle at {path} is {loaded.manifest.name}:{loaded.manifest.version}, "
                               f"expected {name}:{version}")
    except BaseException:  # noqa: BLE001 - any load failure must reach the log with its traceback
        traceback.print_exc()
        sys.stderr.flush()
        return LOAD_FAILED
    sock = _connect(host, port, float(os.environ.get("CLIPPER_CONNECT_TIMEOUT", "30")))
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wire.send_frame(sock, {"type": "hello", "model": name, "version": version, "replica_id": replica_id,
                           "pid": os.getpid()})
    health.status = "ready"
    print(f"replica {name}:{version}#{replica_id} ready (pid {os.getpid()})", flush=True)
    serve(loaded, sock)
    health.status = "disconnected"
    return 0


if __name__ == "__main__":
    sys.exit(main())
