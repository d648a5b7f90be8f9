"""The frontend <-> replica protocol over TCP.

A frame is a little-endian u32 header length, a JSON header, then ``header["nbytes"]`` bytes of
payload. Numeric batches travel as raw arrays (dtype, shape, bytes), as Clipper's RPC did, so
nothing is re-encoded as JSON on the way to the model; strings travel in the header, bytes as base64.

Replica -> frontend: ``{"type": "hello", "model", "version", "replica_id", "pid"}`` once loaded,
then per batch ``{"type": "result", "id", "outputs": [...]}`` or
``{"type": "error", "id", "kind", "message"}``. Frontend -> replica: ``{"type": "batch", "id", ...}``,
one batch in flight per replica.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Sequence
from typing import Any

import orjson

HEADER = struct.Struct("<I")
MAX_FRAME = 1 << 30


def encode(msg: dict[str, Any], payload: bytes = b"") -> bytes:
    head = orjson.dumps({**msg, "nbytes": len(payload)})
    return HEADER.pack(len(head)) + head + payload


def encode_batch(msg_id: int, inputs: Sequence[Any]) -> bytes:
    """A batch of validated inputs: numpy arrays go as one raw buffer, anything else in the header."""
    first = inputs[0]
    if not hasattr(first, "dtype"):
        return encode({"type": "batch", "id": msg_id, "inputs": list(inputs)})
    import numpy as np

    lengths = [len(x) for x in inputs]
    data = np.concatenate(inputs) if len(set(lengths)) > 1 else np.stack(inputs)
    return encode({"type": "batch", "id": msg_id, "dtype": str(first.dtype), "lengths": lengths}, data.tobytes())


def decode_batch(msg: dict[str, Any], payload: bytearray) -> tuple[Any, int]:
    """The batch a predict function receives (see ``inputs``) and its size."""
    if "dtype" not in msg:
        return msg["inputs"], len(msg["inputs"])
    import numpy as np

    lengths = msg["lengths"]
    flat = np.frombuffer(payload, dtype=msg["dtype"])  # a bytearray keeps the array writable
    if len(set(lengths)) == 1:
        return flat.reshape(len(lengths), lengths[0]), len(lengths)
    offsets = np.cumsum([0, *lengths])
    return [flat[offsets[i]:offsets[i + 1]] for i in range(len(lengths))], len(lengths)


def _check(n: int) -> int:
    if n > MAX_FRAME:
        raise ConnectionError(f"frame part of {n} bytes exceeds {MAX_FRAME}")
    return n


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    (n,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    msg: dict[str, Any] = orjson.loads(await reader.readexactly(_check(n)))
    nbytes = _check(int(msg.get("nbytes", 0)))
    return msg, (await reader.readexactly(nbytes) if nbytes else b"")


def _recv_into(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise ConnectionError("connection closed")
        got += k
    return buf


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytearray]:
    (n,) = HEADER.unpack(_recv_into(sock, HEADER.size))
    msg: dict[str, Any] = orjson.loads(_recv_into(sock, _check(n)))
    nbytes = _check(int(msg.get("nbytes", 0)))
    return msg, (_recv_into(sock, nbytes) if nbytes else bytearray())


def send_frame(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(encode(msg))
