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


class RawQuery:
    """A request body the frontend forwards unparsed: ``{"input": [numbers]}``, validated by the replica."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body


def encode_batch(msg_id: int, inputs: Sequence[Any]) -> bytes:
    """A batch: numpy arrays as one raw buffer, unparsed bodies after it, anything else in the header."""
    if not any(isinstance(x, RawQuery) or hasattr(x, "dtype") for x in inputs):
        return encode({"type": "batch", "id": msg_id, "inputs": list(inputs)})
    import numpy as np

    arrays = [x for x in inputs if not isinstance(x, RawQuery)]
    bodies = [x.body for x in inputs if isinstance(x, RawQuery)]
    kinds = "".join("r" if isinstance(x, RawQuery) else "a" for x in inputs)
    lengths = [len(x) for x in arrays]
    data = b""
    if arrays:
        data = (np.concatenate(arrays) if len(set(lengths)) > 1 else np.stack(arrays)).tobytes()
    msg = {"type": "batch", "id": msg_id, "kinds": kinds, "dtype": str(arrays[0].dtype) if arrays else None,
           "lengths": lengths, "raw_lengths": [len(b) for b in bodies]}
    return encode(msg, data + b"".join(bodies))


def decode_batch(msg: dict[str, Any], payload: bytearray) -> tuple[Any, int, list[int]]:
    """``(batch, n, raw)``: the batch a predict function receives (see ``inputs``), its size, and the
    positions of unparsed bodies (``bytes`` items the replica must still parse and validate)."""
    if "kinds" not in msg:
        return msg["inputs"], len(msg["inputs"]), []
    import numpy as np

    kinds, lengths = msg["kinds"], msg["lengths"]
    n_array = sum(lengths) * (np.dtype(msg["dtype"]).itemsize if msg["dtype"] else 0)
    # A bytearray payload keeps these views writable, so frameworks can wrap them without a copy.
    flat = np.frombuffer(payload, dtype=msg["dtype"] or "u1", count=sum(lengths))
    if "r" not in kinds and len(set(lengths)) == 1:
        return flat.reshape(len(lengths), lengths[0]), len(lengths), []
    offsets = np.cumsum([0, *lengths])
    arrays = iter(flat[offsets[i]:offsets[i + 1]] for i in range(len(lengths)))
    raw_offsets = np.cumsum([n_array, *msg["raw_lengths"]])
    bodies = iter(bytes(payload[raw_offsets[i]:raw_offsets[i + 1]]) for i in range(len(msg["raw_lengths"])))
    items = [next(bodies) if k == "r" else next(arrays) for k in kinds]
    return items, len(items), [i for i, k in enumerate(kinds) if k == "r"]


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
