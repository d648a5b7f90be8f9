"""The frontend <-> replica protocol: length-prefixed JSON frames over TCP.

Replica -> frontend: ``{"type": "hello", "model", "version", "replica_id", "pid"}`` once loaded,
then ``{"type": "result", "id", "outputs": [...]}`` or ``{"type": "error", "id", "kind", "message"}``
per batch. Frontend -> replica: ``{"type": "batch", "id", "inputs": [...]}`` (inputs in wire form:
numbers lists, strings, base64 for bytes), one batch in flight per replica.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


def encode(msg: dict[str, Any]) -> bytes:
    body = json.dumps(msg, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    (n,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if n > MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes exceeds {MAX_FRAME}")
    msg: dict[str, Any] = json.loads(await reader.readexactly(n))
    return msg


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    (n,) = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    if n > MAX_FRAME:
        raise ConnectionError(f"frame of {n} bytes exceeds {MAX_FRAME}")
    msg: dict[str, Any] = json.loads(_recv_exactly(sock, n))
    return msg


def send_frame(sock: socket.socket, msg: dict[str, Any]) -> None:
    sock.sendall(encode(msg))
