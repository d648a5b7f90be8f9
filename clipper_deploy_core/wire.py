"""The frontend <-> replica protocol over TCP.

A frame is a little-endian u32 header length, a JSON header, then ``header["nbytes"]`` bytes of
payload. Numeric batches travel as raw arrays (dtype, shape, bytes), as Clipper's RPC did, so
nothing is re-encoded as JSON on the way to the model; strings travel in the header, bytes as base64.

A link opens with the handshake of :mod:`.replica_auth` (frames capped at 64 KiB until it ends);
then, per batch, replica -> frontend ``{"type": "result", "id", "outputs": [...]}`` or
``{"type": "error", "id", "kind", "message"}``. Frontend -> replica: ``{"type": "batch", "id", ...}``,
one batch in flight per replica. Replica -> frontend ``{"type": "bye"}``: send no more batches, and hang up once the
one in flight is answered (the replica is leaving; see replica.links).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # the frontend's side only: a replica never imports asyncio
    import asyncio

HEADER = struct.Struct("<I")
# After the handshake, frames are capped near the query port's request cap: a batch is at most what the
# queries brought in, a reply about as much again. The cluster process hands its value to replicas.
MAX_FRAME_ENV = "CLIPPER_MAX_FRAME"
RPC_SOCKET_ENV = "CLIPPER_RPC_SOCKET"  # a replica on the cluster's host links through this Unix socket, if set
# The cluster's other frontend processes (``unix:/path`` or ``tcp:host:port``, comma-separated): see replica.links
EXTRA_FRONTENDS_ENV = "CLIPPER_EXTRA_FRONTENDS"
UNIX_PATH_MAX = 108  # sockaddr_un's sun_path on Linux, its terminating NUL included


def frame_cap_for(max_body: int) -> int:
    return 2 * max_body + 1024 * 1024


DEFAULT_MAX_FRAME = frame_cap_for(16 * 1024 * 1024)  # for the default max_request_bytes


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
    arrays = [x for x in inputs if not isinstance(x, RawQuery)]
    bodies = [x.body for x in inputs if isinstance(x, RawQuery)]
    kinds = "".join("r" if isinstance(x, RawQuery) else "a" for x in inputs)
    lengths = [len(x) for x in arrays]
    data = b""
    if arrays:  # unparsed bodies alone (what single queries send) need no numpy
        import numpy as np

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
    if not lengths:  # unparsed bodies only (what single queries send): no array to cut, no numpy
        cut, start = [], 0
        for size in msg["raw_lengths"]:
            cut.append(bytes(payload[start:start + size]))
            start += size
        return cut, len(cut), list(range(len(cut)))
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


class FrameTooLarge(ConnectionError):
    """A peer declared a frame over the cap: the link is closed before anything is buffered."""


def _check(n: int, limit: int) -> int:
    if n > limit:
        raise FrameTooLarge(f"frame part of {n} bytes exceeds the cap of {limit}")
    return n


def _header(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ConnectionError(f"malformed frame header: {e}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("nbytes", 0), int) or msg.get("nbytes", 0) < 0:
        raise ConnectionError("malformed frame header")
    return msg


async def read_frame(reader: asyncio.StreamReader, limit: int = DEFAULT_MAX_FRAME) -> tuple[dict[str, Any], bytes]:
    (n,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    msg = _header(await reader.readexactly(_check(n, limit)))
    nbytes = _check(int(msg.get("nbytes", 0)), limit - n)
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


def recv_frame(sock: socket.socket, limit: int = DEFAULT_MAX_FRAME) -> tuple[dict[str, Any], bytearray]:
    (n,) = HEADER.unpack(_recv_into(sock, HEADER.size))
    msg = _header(_recv_into(sock, _check(n, limit)))
    nbytes = _check(int(msg.get("nbytes", 0)), limit - n)
    return msg, (_recv_into(sock, nbytes) if nbytes else bytearray())


def send_frame(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(encode(msg))
